//! The only place with SQL. Free functions over the pool, returning `FromRow` structs.

pub mod projects;
pub mod propagation;
pub mod runs;
pub mod settings;
pub mod slaves;
pub mod users;

use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub type Db = SqlitePool;

/// Opens (creating it with mode 0600 when missing) and migrates the database.
pub async fn connect(path: &Path) -> anyhow::Result<Db> {
    // The database holds rsync passwords: create it readable by its owner only.
    if tokio::fs::metadata(path).await.is_err() {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).await?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    // A SQLite connection is a file handle: it cannot go stale, so no ping before each use (a ping
    // is one more round trip to the connection's thread on every query).
    let pool = SqlitePoolOptions::new().max_connections(8).test_before_acquire(false).connect_with(options).await?;
    sqlx::migrate!("../migrations").run(&pool).await?;
    Ok(pool)
}

/// True when the error is a UNIQUE or PRIMARY KEY violation (a duplicate: 409 for the client).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
