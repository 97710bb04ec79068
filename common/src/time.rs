//! One timestamp type for every instant the API, the database and the slaves exchange: UTC, kept to
//! the millisecond, written as RFC 3339 with three decimals and a `Z` (`2026-11-24T09:11:15.123Z`).
//! One precision and one form: two stamps compare the same as their texts do, in SQL as in Rust.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = DateTime))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(Utc::now())
    }

    /// Reads any RFC 3339 instant (any offset, any precision), kept to the millisecond.
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| Timestamp::from(t.with_timezone(&Utc)))
            .map_err(|e| format!("'{}' is not an RFC 3339 time: {e}", text.escape_debug()))
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// The written form: `2026-11-24T09:11:15.123Z`.
    pub fn to_text(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Timestamp {
        Timestamp(t.trunc_subsecs(3))
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(t: Timestamp) -> DateTime<Utc> {
        t.0
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "sqlx")]
sqlite_text!(Timestamp);

#[cfg(feature = "sqlx")]
sql_decode_text!(Timestamp, |text| Timestamp::parse(text));

#[cfg(feature = "sqlx")]
impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Timestamp
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, DB>>::encode(self.to_text(), buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_form_to_the_millisecond() {
        let t = Timestamp::parse("2026-11-24T10:11:15.123456+01:00").unwrap();
        assert_eq!(t.to_text(), "2026-11-24T09:11:15.123Z");
        assert_eq!(Timestamp::parse("2026-11-24T09:11:15Z").unwrap().to_text(), "2026-11-24T09:11:15.000Z");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2026-11-24T09:11:15.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>("\"2026-11-24T09:11:15.123Z\"").unwrap(), t);
        assert!(Timestamp::parse("yesterday").is_err());
        // The texts sort as the instants do.
        let a = Timestamp::parse("2026-11-24T09:11:15Z").unwrap();
        let b = Timestamp::parse("2026-11-24T09:11:15.001Z").unwrap();
        assert!(a < b && a.to_text() < b.to_text());
    }
}
