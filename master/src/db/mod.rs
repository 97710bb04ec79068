//! The only place with SQL. Free functions over the pool, returning `FromRow` structs.

pub mod alerts;
pub mod commits;
pub mod flips;
pub mod projects;
pub mod propagation;
pub mod runs;
pub mod settings;
pub mod slaves;
pub mod targets;
pub mod users;

use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The database: one connection for writes, a few for reads.
///
/// SQLite has one writer at a time. With writers spread over a pool, each `BEGIN IMMEDIATE` that
/// finds another one going waits in SQLite's busy handler, which sleeps in steps of up to 100 ms:
/// under many concurrent writes their latency went to a second. With one write connection the
/// writers queue, in order, for it (the pool's queue, no lock of ours held meanwhile) and each
/// runs at once when its turn comes. In WAL mode the readers never wait for the writer.
#[derive(Clone, Debug)]
pub struct Db {
    pub read: SqlitePool,
    pub write: SqlitePool,
}

/// Read connections (WAL readers run side by side with the writer and each other).
const READ_CONNECTIONS: u32 = 4;

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
    let write =
        SqlitePoolOptions::new().max_connections(1).test_before_acquire(false).connect_with(options.clone()).await?;
    sqlx::migrate!("../migrations").run(&write).await?;
    let read = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .test_before_acquire(false)
        .connect_with(options.read_only(true))
        .await?;
    Ok(Db { read, write })
}

impl Db {
    /// Closes both pools (at shutdown).
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// True when the error is a UNIQUE or PRIMARY KEY violation (a duplicate: 409 for the client).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub fn now() -> mirror_common::time::Timestamp {
    mirror_common::time::Timestamp::now()
}
