//! `mirror-master migrate`: everything a SQLite master holds, copied into an empty PostgreSQL
//! database in one transaction (projects and their versions, users, slaves with their tokens,
//! runs, alerts and their queue, the object-store memory, the event log, flips). Ids are kept,
//! and each table's numbering goes on after the highest one copied. The nodes and the leader's
//! lease are not copied: they are the running nodes' own.

use sqlx::{PgConnection, Row, SqlitePool};

use super::Db;

/// The tables, parents before children (foreign keys), with the column numbering each one.
const TABLES: &[(&str, Option<&str>)] = &[
    ("users", None),
    ("slaves", None),
    ("settings", None),
    ("projects", None),
    ("config_commits", Some("seq")),
    ("runs", Some("id")),
    ("propagation", None),
    ("flips", None),
    ("alert_states", None),
    ("alert_deliveries", Some("id")),
    ("event_log", Some("id")),
    ("target_pushes", Some("id")),
    ("target_objects", None),
];

/// Rows written per INSERT statement.
const BATCH: usize = 200;

/// How many rows of each table were copied.
pub type Copied = Vec<(&'static str, u64)>;

/// Copies `from` (a SQLite database, brought up to date first) into `to` (PostgreSQL, migrated
/// here), which must hold nothing yet. All or nothing.
pub async fn sqlite_to_postgres(from: &Db, to: &Db) -> anyhow::Result<Copied> {
    let (super::Pool::Sqlite(source), super::Pool::Postgres(target)) = (&from.read, &to.write) else {
        anyhow::bail!("migrate copies a SQLite database into a PostgreSQL one");
    };
    let mut tx = target.begin().await?;
    for (table, _) in TABLES {
        let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {table})")))
            .fetch_one(&mut *tx)
            .await?;
        anyhow::ensure!(!any, "the PostgreSQL database is not empty (table {table} has rows): nothing was copied");
    }
    let mut copied = Vec::new();
    for (table, numbered) in TABLES {
        let n = copy_table(source, &mut tx, table).await?;
        if let Some(column) = numbered {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                 COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            )))
            .execute(&mut *tx)
            .await?;
        }
        copied.push((*table, n));
    }
    tx.commit().await?;
    Ok(copied)
}

/// The PostgreSQL columns of `table` with their types, in order.
async fn columns(tx: &mut PgConnection, table: &str) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(tx)
    .await
}

async fn copy_table(source: &SqlitePool, tx: &mut PgConnection, table: &str) -> anyhow::Result<u64> {
    let columns = columns(tx, table).await?;
    anyhow::ensure!(!columns.is_empty(), "PostgreSQL has no table {table}");
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let list = names.join(", ");
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {list} FROM {table}"))).fetch_all(source).await?;
    for chunk in rows.chunks(BATCH) {
        let width = columns.len();
        let values: Vec<String> = (0..chunk.len())
            .map(|r| format!("({})", (1..=width).map(|c| format!("${}", r * width + c)).collect::<Vec<_>>().join(", ")))
            .collect();
        let sql = format!("INSERT INTO {table} ({list}) VALUES {}", values.join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            for (i, (name, kind)) in columns.iter().enumerate() {
                let at = || format!("{table}.{name}");
                query =
                    match kind.as_str() {
                        "bigint" | "integer" => {
                            query.bind(row.try_get::<Option<i64>, _>(i).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?)
                        }
                        "boolean" => {
                            query.bind(row.try_get::<Option<bool>, _>(i).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?)
                        }
                        "bytea" => query
                            .bind(row.try_get::<Option<Vec<u8>>, _>(i).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?),
                        "text" => query
                            .bind(row.try_get::<Option<String>, _>(i).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?),
                        other => anyhow::bail!("{}: no copy for the PostgreSQL type {other}", at()),
                    };
            }
        }
        query.execute(&mut *tx).await?;
    }
    Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
}
