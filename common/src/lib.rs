//! Shared by the mirror-sync master, slave and CLI: the wire types of the HTTP API, the
//! APScheduler-compatible schedules, fuzzy dates, rsync option rules and the one error body. Pure:
//! nothing here spawns a process, opens a socket or touches the file system.

/// Stores a type as TEXT in SQLite (its `Encode` and `Decode` say how). With `as_str`, it is also
/// written as what its `as_str()` returns.
#[cfg(feature = "sqlx")]
macro_rules! sqlite_text {
    ($name:ty, as_str) => {
        sqlite_text!($name);

        impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::sqlite::SqliteArgumentsBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Sqlite>>::encode(self.as_str(), buf)
            }
        }
    };
    ($name:ty) => {
        impl sqlx::Type<sqlx::Sqlite> for $name {
            fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
                <String as sqlx::Type<sqlx::Sqlite>>::type_info()
            }
            fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Sqlite>>::compatible(ty)
            }
        }
    };
}

/// Stores a serde type as JSON text in SQLite: written once, read back into the type (a row that
/// does not parse is a decode error, never a half-read value).
#[cfg(feature = "sqlx")]
macro_rules! sqlite_json {
    ($name:ty) => {
        sqlite_text!($name);

        impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for $name {
            fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Sqlite>>::decode(value)?;
                Ok(serde_json::from_str(text)?)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::sqlite::SqliteArgumentsBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<sqlx::Sqlite>>::encode(serde_json::to_string(self)?, buf)
            }
        }
    };
}

pub mod api;
pub mod cron;
pub mod dates;
pub mod depends;
pub mod document;
pub mod error;
pub mod guards;
pub mod names;
pub mod rsync_opts;
pub mod secret;
pub mod stages;
pub mod status;
pub mod targets;
pub mod time;
pub mod zoned;

#[cfg(feature = "sqlx")]
sqlite_json!(cron::ScheduleSpec);
#[cfg(feature = "sqlx")]
sqlite_json!(rsync_opts::RsyncOptions);
#[cfg(feature = "sqlx")]
sqlite_json!(targets::Targets);
#[cfg(feature = "sqlx")]
sqlite_json!(depends::DependsOn);
#[cfg(feature = "sqlx")]
sqlite_json!(guards::MaxDelete);
#[cfg(feature = "sqlx")]
sqlite_json!(stages::Stages);

pub use error::{ErrorBody, FieldError, JsonRejection, from_json_value, parse_json};
pub use secret::Secret;
