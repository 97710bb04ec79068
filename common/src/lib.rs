//! Shared by the mirror-sync master, slave and CLI: the wire types of the HTTP API, the
//! APScheduler-compatible schedules, fuzzy dates, rsync option rules and the one error body. Pure:
//! nothing here spawns a process, opens a socket or touches the file system.

/// Stores a type as TEXT in SQLite (its `Encode` and `Decode` say how).
#[cfg(feature = "sqlx")]
macro_rules! sqlite_text {
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

pub mod api;
pub mod cron;
pub mod dates;
pub mod error;
pub mod names;
pub mod rsync_opts;
pub mod secret;
pub mod status;
pub mod time;

pub use error::{ErrorBody, FieldError, JsonRejection, from_json_value, parse_json};
pub use secret::Secret;
