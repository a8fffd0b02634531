//! Storage backends for changetrail, chosen from the database URL's scheme:
//! `sqlite://…` (embedded, the default) or `postgres://…`.
//!
//! One [`SqlStore`] serves both: every query is written once, in `sql/` (one file per
//! aggregate), and [`on_pool!`] runs it on whichever pool the URL opened. Migrations live in
//! `migrations/{sqlite,postgres}` at the workspace root and are applied by [`connect`].

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use domain::Store;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
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
    statement_timeout: Duration,
    /// Each organisation's enabled rules as last read, with the stamp they were read under.
    enabled_rules: sql::RuleCache,
    /// Committed writes that change what a timeline shows ([`domain::store::Events::timeline_writes`]).
    timeline_writes: AtomicU64,
}

/// How the store treats its database.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    /// A statement running longer than this is stopped by the database and fails with
    /// [`domain::StoreError::TimedOut`]: a request that timed out must not leave its query
    /// running. The server sets it to its request timeout.
    pub statement_timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings { statement_timeout: Duration::from_secs(30) }
    }
}

impl SqlStore {
    /// What a claim adds to its inner SELECT: PostgreSQL skips rows another worker is claiming;
    /// SQLite has one writer at a time, so the conditional UPDATE is enough there.
    fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    fn claim_lock(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "",
            Pool::Postgres(_) => "FOR UPDATE OF j SKIP LOCKED",
        }
    }
}

impl SqlStore {
    /// Called after a commit that changed items, links or environments.
    fn timeline_written(&self) {
        self.timeline_writes.fetch_add(1, Ordering::Release);
    }

    /// An SQLite connection whose statements are interrupted once the statement timeout has
    /// passed: SQLite's stand-in for PostgreSQL's `statement_timeout`, for reads that may be long.
    async fn sqlite_with_deadline(&self, pool: &sqlx::SqlitePool) -> Result<SqliteWithDeadline, sqlx::Error> {
        let mut connection = pool.acquire().await?;
        let deadline = std::time::Instant::now() + self.statement_timeout;
        let armed = Arc::new(AtomicBool::new(true));
        let handler_armed = armed.clone();
        // Called every thousand virtual-machine steps: a flag and a clock read are cheap against
        // that. It stays on the connection, disarmed, until the next deadline replaces it.
        connection.lock_handle().await?.set_progress_handler(1000, move || {
            !handler_armed.load(Ordering::Acquire) || std::time::Instant::now() < deadline
        });
        Ok(SqliteWithDeadline { connection, armed })
    }
}

/// A pooled SQLite connection under a deadline ([`SqlStore::sqlite_with_deadline`]), for as long as
/// this value lives. Dropping it disarms the deadline before the connection goes back to the pool,
/// however the read ended (a cancelled request's future is dropped too), so the connection's next
/// user is never interrupted by a deadline that was not its own. Disarming is a flag in this
/// process, where removing the handler would be a round trip to the connection's thread on every
/// release of every connection.
struct SqliteWithDeadline {
    connection: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    armed: Arc<AtomicBool>,
}

impl Drop for SqliteWithDeadline {
    fn drop(&mut self) {
        self.armed.store(false, Ordering::Release);
    }
}

impl std::ops::Deref for SqliteWithDeadline {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.connection
    }
}

impl std::ops::DerefMut for SqliteWithDeadline {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.connection
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

/// [`connect`] with settings other than the default ones.
pub async fn connect_with(url: &str, settings: StoreSettings) -> anyhow::Result<Arc<dyn Store>> {
    Ok(Arc::new(connect_sql_with(url, settings).await?))
}

/// [`connect`], keeping the concrete store (for the benchmarks' plans and ceilings).
pub async fn connect_sql(url: &str) -> anyhow::Result<SqlStore> {
    connect_sql_with(url, StoreSettings::default()).await
}

/// [`connect_with`], keeping the concrete store.
pub async fn connect_sql_with(url: &str, settings: StoreSettings) -> anyhow::Result<SqlStore> {
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
                // A file in this process has no connection to lose: the default test, a ping,
                // is a round trip to the connection's thread before every use.
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .context("cannot open the SQLite database")?;
            sqlx::migrate!("../../migrations/sqlite").run(&pool).await.context("SQLite migrations failed")?;
            Pool::Sqlite(pool)
        }
        Backend::Postgres => {
            let millis = settings.statement_timeout.as_millis().max(1);
            let options = PgConnectOptions::from_str(url)
                .context("invalid PostgreSQL URL")?
                // No parallel workers: every query of the service reads a page by an index and
                // stops, and starting workers cost more than that (a `q` page at 500 k items:
                // 9.5 ms with two workers, 2.4 ms without, BENCHMARKS.md).
                .options([
                    ("statement_timeout", format!("{millis}ms")),
                    ("max_parallel_workers_per_gather", "0".into()),
                ]);
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .context("cannot connect to PostgreSQL")?;
            // Migrations (index builds, backfills) may rightly take longer than a request.
            let mut migrating = pool.acquire().await.context("cannot connect to PostgreSQL")?.detach();
            sqlx::query("SET statement_timeout = 0").execute(&mut migrating).await?;
            lock_migrations(&mut migrating).await?;
            let mut migrator = sqlx::migrate!("../../migrations/postgres");
            migrator.set_locking(false);
            migrator.run(&mut migrating).await.context("PostgreSQL migrations failed")?;
            sqlx::Connection::close(migrating).await?;
            Pool::Postgres(pool)
        }
    };
    Ok(SqlStore {
        pool,
        statement_timeout: settings.statement_timeout,
        enabled_rules: Default::default(),
        timeline_writes: Default::default(),
    })
}

/// Takes the database's migration lock for this session (closing it releases the lock), by
/// asking for it until it is free. sqlx's own lock waits inside `pg_advisory_lock`, a statement
/// whose snapshot an index build of another process's migrations (`CREATE INDEX CONCURRENTLY`,
/// 0022) waits for in turn: two processes starting at once deadlocked. Asking in short statements
/// holds no snapshot between them. Advisory locks belong to one database, so one key serves all.
async fn lock_migrations(connection: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    const MIGRATIONS_LOCK: i64 = 0x6368_616e_6765_7472; // "changetr"
    loop {
        let (held,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATIONS_LOCK)
            .fetch_one(&mut *connection)
            .await
            .context("cannot take the migration lock")?;
        if held {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The default database: an SQLite file in the data directory, which is created if missing.
pub fn default_sqlite_url(data_dir: &std::path::Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    Ok(format!("sqlite://{}", data_dir.join("changetrail.db").display()))
}
