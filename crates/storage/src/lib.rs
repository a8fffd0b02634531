//! Storage backends for changetrail, chosen from the database URL's scheme:
//! `sqlite://…` (embedded, the default) or `postgres://…`.
//!
//! Both backends run the same SQL (see [`sql_store`]): only the pool type differs. Migrations
//! live in `migrations/{sqlite,postgres}` at the workspace root and are applied by [`connect`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use domain::Store;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

mod rows;

pub use rows::{push_event, EVENT_COLUMNS};
#[macro_use]
mod sql_store;

/// The PostgreSQL backend.
pub struct PostgresStore {
    pool: sqlx::PgPool,
}

/// The embedded SQLite backend (WAL mode).
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
}

// PostgreSQL skips jobs another worker is claiming; SQLite has one writer at a time, so the
// conditional UPDATE is enough there.
sql_store!(PostgresStore, sqlx::Postgres, "FOR UPDATE OF j SKIP LOCKED");
sql_store!(SqliteStore, sqlx::Sqlite, "");

/// Which backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> anyhow::Result<Backend> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => anyhow::bail!("unsupported database URL scheme {scheme:?}: use sqlite://PATH or postgres://…"),
        }
    }
}

/// Opens the database the URL names, creating an SQLite file if needed, and applies pending
/// migrations. The database password, if any, is never logged.
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    match Backend::of_url(url)? {
        Backend::Sqlite => {
            let options = SqliteConnectOptions::from_str(url)
                .context("invalid SQLite URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL is durable across application crashes in WAL mode; only a power loss can
                // lose the last transactions, which a re-import recovers.
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await
                .context("cannot open the SQLite database")?;
            sqlx::migrate!("../../migrations/sqlite").run(&pool).await.context("SQLite migrations failed")?;
            Ok(Arc::new(SqliteStore { pool }))
        }
        Backend::Postgres => {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .context("cannot connect to PostgreSQL")?;
            sqlx::migrate!("../../migrations/postgres").run(&pool).await.context("PostgreSQL migrations failed")?;
            Ok(Arc::new(PostgresStore { pool }))
        }
    }
}

/// The default database: an SQLite file in the data directory, which is created if missing.
pub fn default_sqlite_url(data_dir: &std::path::Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    Ok(format!("sqlite://{}", data_dir.join("changetrail.db").display()))
}
