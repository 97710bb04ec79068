//! Shared by the mirror-sync master, slave and CLI: the wire types of the HTTP API, the
//! APScheduler-compatible schedules, fuzzy dates, rsync option rules and the one error body. Pure:
//! nothing here spawns a process, opens a socket or touches the file system.

pub mod api;
pub mod cron;
pub mod dates;
pub mod error;
pub mod rsync_opts;
pub mod secret;
pub mod status;

pub use error::{ErrorBody, FieldError};
pub use secret::Secret;
