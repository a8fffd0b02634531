//! Storage backends for changetrail, chosen from the database URL's scheme:
//! `sqlite://…` (embedded, the default) or `postgres://…`.
//!
//! One [`SqlStore`] serves both: every query is written once, in `sql/` (one file per
//! aggregate), and [`on_pool!`] runs it on whichever pool the URL opened. Migrations live in
//! `migrations/{sqlite,postgres}` at the workspace root and are applied by [`connect`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use domain::Store;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Runs `$body` once per backend: with `$pool` bound to that backend's pool and `$db` naming its
/// `sqlx::Database`. The body is ordinary code at its call site, so a compiler error points at
/// the line written there, not into a macro; it runs in an `async` block, so its `?` yields the
/// block's `sqlx::Error` (a transaction dropped on such an error rolls back).
macro_rules! on_pool {
    ($store:expr, |$pool:ident: $db:ident| $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                async { $body }.await
            }
            $crate::Pool::Postgres($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                async { $body }.await
            }
        }
    };
}

mod rows;
mod sql;

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// The store on SQLite (WAL mode) or PostgreSQL.
pub struct SqlStore {
    pool: Pool,
}

impl SqlStore {
    /// What a claim adds to its inner SELECT: PostgreSQL skips rows another worker is claiming;
    /// SQLite has one writer at a time, so the conditional UPDATE is enough there.
    fn claim_lock(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "",
            Pool::Postgres(_) => "FOR UPDATE OF j SKIP LOCKED",
        }
    }
}

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
    Ok(Arc::new(connect_sql(url).await?))
}

/// [`connect`], keeping the concrete store (for the benchmarks' plans and ceilings).
pub async fn connect_sql(url: &str) -> anyhow::Result<SqlStore> {
    let pool = match Backend::of_url(url)? {
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
            Pool::Sqlite(pool)
        }
        Backend::Postgres => {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .context("cannot connect to PostgreSQL")?;
            sqlx::migrate!("../../migrations/postgres").run(&pool).await.context("PostgreSQL migrations failed")?;
            Pool::Postgres(pool)
        }
    };
    Ok(SqlStore { pool })
}

/// The default database: an SQLite file in the data directory, which is created if missing.
pub fn default_sqlite_url(data_dir: &std::path::Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    Ok(format!("sqlite://{}", data_dir.join("changetrail.db").display()))
}
