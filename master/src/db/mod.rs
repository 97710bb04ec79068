//! The only place with SQL. Free functions over the database, returning `FromRow` structs.
//!
//! Two backends, one behaviour: the embedded SQLite file (one machine) or a PostgreSQL server
//! (several master nodes). Each function's SQL is one text that both engines read (numbered
//! `$1` parameters, `TRUE`/`FALSE`, `ON CONFLICT`, `RETURNING`; PostgreSQL gets a `json_each`
//! SQL function in its first migration so that SQLite's JSON lists read the same); the body runs
//! against either through [`on!`], which hands it a connection of the right engine.

pub mod alerts;
pub mod commits;
pub mod copy;
pub mod feed;
pub mod flips;
pub mod nodes;
pub mod projects;
pub mod propagation;
pub mod runs;
pub mod sessions;
pub mod settings;
pub mod slaves;
pub mod targets;
pub mod transfer;
pub mod users;

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool};

/// Runs `$body` with `$c` bound to a `&mut` connection of whichever engine `$ex` (anything that
/// converts into an [`Ex`]: `&db.read`, `&db.write`, `&mut tx`) is on. The body is written once
/// and compiled for each engine; a `?` in it returns a `sqlx::Error`.
macro_rules! on {
    ($ex:expr, |$c:ident| $body:expr) => {{
        match $crate::db::Ex::from($ex).hold().await? {
            $crate::db::Held::Sqlite(mut held) => {
                let $c: &mut sqlx::SqliteConnection = &mut held;
                $body
            }
            $crate::db::Held::Postgres(mut held) => {
                let $c: &mut sqlx::PgConnection = &mut held;
                $body
            }
        }
    }};
}
pub(crate) use on;

/// A pool of either engine.
#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// The database. On SQLite: one connection for writes, a few for reads.
///
/// SQLite has one writer at a time. With writers spread over a pool, each `BEGIN IMMEDIATE` that
/// finds another one going waits in SQLite's busy handler, which sleeps in steps of up to 100 ms:
/// under many concurrent writes their latency went to a second. With one write connection the
/// writers queue, in order, for it (the pool's queue, no lock of ours held meanwhile) and each
/// runs at once when its turn comes. In WAL mode the readers never wait for the writer.
///
/// On PostgreSQL both are one pool; a write transaction ([`Db::begin`]) takes a transaction-level
/// advisory lock first, so that write transactions of every node follow one another as SQLite's
/// do, and the check-then-write rules (versions, overlapping dests) hold across nodes.
#[derive(Clone, Debug)]
pub struct Db {
    pub read: Pool,
    pub write: Pool,
}

/// A write transaction of either engine.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// The advisory lock key that orders write transactions on PostgreSQL ("mirror-w").
const WRITE_LOCK: i64 = 0x6d69_7272_6f72_2d77;

impl Tx {
    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }

    pub async fn rollback(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await,
            Tx::Postgres(t) => t.rollback().await,
        }
    }
}

/// Where a query runs: a pool, or a connection (a transaction's) that the caller holds.
pub enum Ex<'a> {
    Pool(&'a Pool),
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

impl<'a> From<&'a Pool> for Ex<'a> {
    fn from(p: &'a Pool) -> Ex<'a> {
        Ex::Pool(p)
    }
}

impl<'a> From<&'a mut Tx> for Ex<'a> {
    fn from(t: &'a mut Tx) -> Ex<'a> {
        match t {
            Tx::Sqlite(t) => Ex::Sqlite(t),
            Tx::Postgres(t) => Ex::Postgres(t),
        }
    }
}

impl<'a, 'b> From<&'a mut &'b mut Tx> for Ex<'a> {
    fn from(t: &'a mut &'b mut Tx) -> Ex<'a> {
        Ex::from(&mut **t)
    }
}

impl<'a, 'b> From<&'a mut Ex<'b>> for Ex<'a> {
    fn from(e: &'a mut Ex<'b>) -> Ex<'a> {
        match e {
            Ex::Pool(p) => Ex::Pool(p),
            Ex::Sqlite(c) => Ex::Sqlite(c),
            Ex::Postgres(c) => Ex::Postgres(c),
        }
    }
}

/// A connection taken from a pool for one call, or one the caller lent.
pub enum Conn<'a, DB: sqlx::Database> {
    Pooled(PoolConnection<DB>),
    Lent(&'a mut DB::Connection),
}

impl<DB: sqlx::Database> Deref for Conn<'_, DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        match self {
            Conn::Pooled(c) => c,
            Conn::Lent(c) => c,
        }
    }
}

impl<DB: sqlx::Database> DerefMut for Conn<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            Conn::Pooled(c) => c,
            Conn::Lent(c) => c,
        }
    }
}

/// What [`on!`] runs its body on.
pub enum Held<'a> {
    Sqlite(Conn<'a, Sqlite>),
    Postgres(Conn<'a, Postgres>),
}

impl<'a> Ex<'a> {
    pub async fn hold(self) -> sqlx::Result<Held<'a>> {
        Ok(match self {
            Ex::Pool(Pool::Sqlite(p)) => Held::Sqlite(Conn::Pooled(p.acquire().await?)),
            Ex::Pool(Pool::Postgres(p)) => Held::Postgres(Conn::Pooled(p.acquire().await?)),
            Ex::Sqlite(c) => Held::Sqlite(Conn::Lent(c)),
            Ex::Postgres(c) => Held::Postgres(Conn::Lent(c)),
        })
    }
}

/// Read connections (WAL readers run side by side with the writer and each other).
const READ_CONNECTIONS: u32 = 4;

/// Where the master keeps its state: a SQLite file, or a PostgreSQL server.
#[derive(Clone)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    /// Connection options (with the password, when one is given, set apart from the URL).
    Postgres(Box<PgConnectOptions>),
}

impl std::fmt::Debug for Location {
    /// Names the server and database, never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(o) => write!(
                f,
                "postgres://{}@{}:{}/{}",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("")
            ),
        }
    }
}

/// Connections a node keeps to PostgreSQL.
const PG_CONNECTIONS: u32 = 16;

/// Opens and migrates the database.
pub async fn open(location: &Location) -> anyhow::Result<Db> {
    match location {
        Location::Sqlite(path) => connect(path).await,
        Location::Postgres(options) => connect_postgres(options).await,
    }
}

/// Opens (creating it with mode 0600 when missing) and migrates a SQLite database.
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
    sqlx::migrate!("../migrations/sqlite").run(&write).await?;
    let read = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .test_before_acquire(false)
        .connect_with(options.read_only(true))
        .await?;
    Ok(Db { read: Pool::Sqlite(read), write: Pool::Sqlite(write) })
}

/// Connects to PostgreSQL and brings its schema up to date (sqlx's migrator holds an advisory
/// lock meanwhile: nodes starting together migrate once).
pub async fn connect_postgres(options: &PgConnectOptions) -> anyhow::Result<Db> {
    let pool = postgres_pool(options).await?;
    sqlx::migrate!("../migrations/postgres").run(&pool).await?;
    Ok(Db { read: Pool::Postgres(pool.clone()), write: Pool::Postgres(pool) })
}

/// A pool whose requests wait at most a few seconds for a connection: while the server is away
/// the API answers 503 rather than hanging (see `error.rs`).
pub async fn postgres_pool(options: &PgConnectOptions) -> sqlx::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(PG_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone())
        .await
}

impl Db {
    /// Closes both pools (at shutdown).
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    /// The same database through a small pool of its own (PostgreSQL), for what must not wait
    /// behind the requests: the heartbeat and the lease. On SQLite, the same pools.
    pub fn dedicated(&self, connections: u32) -> Db {
        match &self.write {
            Pool::Sqlite(_) => self.clone(),
            Pool::Postgres(p) => {
                let pool = PgPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(Duration::from_secs(2))
                    .connect_lazy_with((*p.connect_options()).clone());
                Db { read: Pool::Postgres(pool.clone()), write: Pool::Postgres(pool) }
            }
        }
    }

    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self.write, Pool::Postgres(_))
    }

    /// A write transaction; write transactions follow one another (see [`Db`]).
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        Ok(match &self.write {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITE_LOCK).execute(&mut *tx).await?;
                Tx::Postgres(tx)
            }
        })
    }
}

/// True when the error is a UNIQUE or PRIMARY KEY violation (a duplicate: 409 for the client).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// True when the error says the database cannot be reached now (no connection within the pool's
/// wait, a connection lost, PostgreSQL shutting down or starting up, SQLite busy past its wait),
/// rather than that the request is wrong: the API answers 503 with `Retry-After`.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // 08: connection exception; 57P01-57P03: shutting down, crashed, not yet accepting;
            // 40001/40P01: serialization failure or deadlock (retry); SQLite 5/6: busy, locked.
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
                || code == "5"
                || code == "6"
        }
        _ => false,
    }
}

/// [`is_unavailable`] for any error in an `anyhow` chain.
pub fn is_unavailable_chain(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.downcast_ref::<sqlx::Error>().is_some_and(is_unavailable))
}

/// An unsigned count for a BIGINT column (the rules keep them far below the limit).
pub fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn now() -> mirror_common::time::Timestamp {
    mirror_common::time::Timestamp::now()
}

/// A list of ids as the one JSON text a statement binds (read back with `json_each`).
pub(crate) fn json_list<T: serde::Serialize>(ids: &[T]) -> sqlx::Result<String> {
    serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(e.into()))
}

/// For the database layer's tests: each backend they run on.
#[cfg(test)]
pub mod testing {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::{Db, Location};

    /// A SQLite file in `dir`; and, when `MIRROR_TEST_POSTGRES` names a server
    /// (`postgres://postgres@127.0.0.1:PORT`, as `scripts/test.sh` sets it), a fresh database
    /// there. With `MIRROR_TEST_POSTGRES_REQUIRED` set, a missing server fails the test.
    pub async fn each_backend(dir: &std::path::Path) -> Vec<(&'static str, Db)> {
        let mut all = vec![("sqlite", super::connect(&dir.join("t.db")).await.unwrap())];
        if let Some(db) = fresh_postgres().await {
            all.push(("postgres", db));
        }
        all
    }

    /// A new, empty, migrated PostgreSQL database on the test server (`None`: no server given).
    pub async fn fresh_postgres() -> Option<Db> {
        let Ok(base) = std::env::var("MIRROR_TEST_POSTGRES") else {
            assert!(
                std::env::var_os("MIRROR_TEST_POSTGRES_REQUIRED").is_none(),
                "MIRROR_TEST_POSTGRES is not set but the PostgreSQL tests are required"
            );
            return None;
        };
        let name = format!("unit_{:016x}", rand::random::<u64>());
        let admin: sqlx::postgres::PgConnectOptions = format!("{base}/postgres").parse().unwrap();
        let pool = super::postgres_pool(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
        pool.close().await;
        let options = format!("{base}/{name}").parse().unwrap();
        Some(super::open(&Location::Postgres(Box::new(options))).await.unwrap())
    }

    /// Inserts a project `id` (from [`super::projects::sample`]) with `dest`.
    pub async fn add_project(db: &Db, id: &str, dest: &str) {
        let mut p = super::projects::sample();
        p.id = mirror_common::names::ProjectId::parse(id).unwrap();
        p.project = id.to_owned();
        p.dest = mirror_common::names::Dest::parse(dest).unwrap();
        super::projects::insert(&db.write, &p).await.unwrap();
    }
}
