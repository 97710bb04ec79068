//! A secret string (password, token) whose `Debug` never shows it.

use serde::Deserialize;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the strings differ (the length may show).
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// Stored as TEXT (the master keeps upstream rsync passwords in its 0600 database).
#[cfg(feature = "sqlx")]
mod sql {
    use sqlx::{Database, Decode, Encode, Type};

    use super::Secret;

    impl<DB: Database> Type<DB> for Secret
    where
        String: Type<DB>,
    {
        fn type_info() -> DB::TypeInfo {
            <String as Type<DB>>::type_info()
        }
        fn compatible(ty: &DB::TypeInfo) -> bool {
            <String as Type<DB>>::compatible(ty)
        }
    }

    impl<'r, DB: Database> Decode<'r, DB> for Secret
    where
        String: Decode<'r, DB>,
    {
        fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
            <String as Decode<'r, DB>>::decode(value).map(Secret)
        }
    }

    impl<'q, DB: Database> Encode<'q, DB> for Secret
    where
        String: Encode<'q, DB>,
    {
        fn encode_by_ref(
            &self,
            buf: &mut DB::ArgumentBuffer,
        ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
            <String as Encode<'q, DB>>::encode(self.0.clone(), buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn matching_and_redaction() {
        let s = Secret::new("token-123");
        assert!(s.matches("token-123"));
        assert!(!s.matches("token-124") && !s.matches("token-12") && !s.matches(""));
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
    }
}

/// Writes a secret out, for the one place that must send it: a request body a client builds.
/// Named on each field that uses it, so that no type serializes a secret by accident.
pub mod reveal {
    use serde::Serializer;

    use super::Secret;

    pub fn secret<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }

    pub fn option<S: Serializer>(s: &Option<Secret>, ser: S) -> Result<S::Ok, S::Error> {
        match s {
            Some(s) => ser.serialize_some(s.expose()),
            None => ser.serialize_none(),
        }
    }

    /// `Some(None)`: `null` (removed); `None` is skipped by the field's `skip_serializing_if`.
    pub fn option_option<S: Serializer>(s: &Option<Option<Secret>>, ser: S) -> Result<S::Ok, S::Error> {
        option(&s.clone().flatten(), ser)
    }
}
