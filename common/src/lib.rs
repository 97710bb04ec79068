//! Shared by the mirror-sync master, slave and CLI: the wire types of the HTTP API, the
//! APScheduler-compatible schedules, fuzzy dates, rsync option rules and the one error body. Pure:
//! nothing here spawns a process, opens a socket or touches the file system.

/// Stores a type as TEXT (in SQLite and PostgreSQL alike: any database whose `String` is TEXT).
/// With `as_str`, it is also written as what its `as_str()` returns.
#[cfg(feature = "sqlx")]
macro_rules! sqlite_text {
    ($name:ty, as_str) => {
        sqlite_text!($name);

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            for<'a> &'a str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }
    };
    ($name:ty) => {
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> <DB as sqlx::Database>::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &<DB as sqlx::Database>::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }
    };
}

/// Reads a type stored as TEXT through `$parse` (text -> Result<Self, impl Into<BoxDynError>>).
#[cfg(feature = "sqlx")]
macro_rules! sql_decode_text {
    ($name:ty, |$text:ident| $parse:expr) => {
        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let $text = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
                Ok($parse?)
            }
        }
    };
}

/// Stores a serde type as JSON text: written once, read back into the type (a row that does not
/// parse is a decode error, never a half-read value).
#[cfg(feature = "sqlx")]
macro_rules! sqlite_json {
    ($name:ty) => {
        sqlite_text!($name);
        sql_decode_text!($name, |text| serde_json::from_str::<$name>(text));

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, DB>>::encode(serde_json::to_string(self)?, buf)
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
pub mod interval;
pub mod kinds;
pub mod names;
pub mod placement;
pub mod project;
pub mod rsync_opts;
pub mod secret;
pub mod stages;
pub mod status;
pub mod targets;
pub mod time;
pub mod timing;
pub mod zoned;

#[cfg(feature = "sqlx")]
sqlite_json!(cron::ScheduleSpec);
#[cfg(feature = "sqlx")]
sqlite_json!(interval::IntervalOptions);
#[cfg(feature = "sqlx")]
sqlite_json!(project::RunHooks);
#[cfg(feature = "sqlx")]
sqlite_json!(kinds::SourceSpec);
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
