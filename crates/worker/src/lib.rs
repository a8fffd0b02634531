//! changetrail's background worker: a runner of leased job kinds. Today those are the CloudTrail
//! import ([`import`]: each active connection's management events, region by region, through
//! LookupEvents) and the re-link of stored events after a rule change ([`relink`]).
//!
//! Work comes from lease tables (`import_jobs`, and the re-link columns of `connections`), so any
//! number of workers on one database share it without doing a unit twice at once. Each import
//! run walks fixed time windows page by page; every page is stored with its progress in one
//! transaction, so a worker that dies loses at most the page it was fetching. Windows re-scan an
//! overlap behind the checkpoint because LookupEvents delivers late and out of order; storage
//! de-duplicates by EventId, so the overlap costs calls but never duplicates.

use std::sync::Arc;
use std::time::Duration;

use aws::Aws;
use domain::linking::ConnectionLinker;
use domain::Store;
use domain::{Connection, StoreError};
use rand::Rng;
use uuid::Uuid;

mod credentials;
mod deliver;
mod discover;
mod import;
mod relink;
mod runner;

use credentials::CredentialCache;
pub use deliver::{Deliverer, DeliverySettings};
pub use discover::Discoverer;

/// How the importer paces and schedules itself.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// How often a caught-up region is brought up to date.
    pub interval: Duration,
    /// How far behind its checkpoint each run re-scans, for late deliveries.
    pub overlap: Duration,
    /// The longest window of one page walk, so a backfill commits progress often.
    pub slice: Duration,
    /// How long a claimed job stays leased without a page stored.
    pub lease: Duration,
    /// Jobs one worker runs at once.
    pub concurrency: usize,
    /// Retries of a call answered 5xx or lost on the network.
    pub max_retries: u32,
    /// The longest one run holds a job before letting others have a turn.
    pub run_budget: Duration,
    /// Time between two LookupEvents calls of one account and region (AWS allows 2 per second).
    pub call_interval: Duration,
    /// How long a role that AWS denies is left before trying again.
    pub denied_retry: Duration,
    /// How often an idle worker looks for due jobs.
    pub poll: Duration,
}

impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            interval: Duration::from_secs(300),
            overlap: Duration::from_secs(20 * 60),
            slice: Duration::from_secs(6 * 3600),
            lease: Duration::from_secs(60),
            concurrency: 16,
            max_retries: 10,
            run_budget: Duration::from_secs(60),
            // 2 per second is the limit; 10 ms of margin absorbs network jitter between slots.
            call_interval: Duration::from_millis(510),
            denied_retry: Duration::from_secs(15 * 60),
            poll: Duration::from_secs(1),
        }
    }
}

/// One worker process's runner of background jobs.
pub struct Importer {
    store: Arc<dyn Store>,
    aws: Aws,
    settings: ImportSettings,
    owner: String,
    credentials: CredentialCache,
}

/// Why a job stopped early.
enum Stop {
    /// The connection's role was denied: the connection is marked and retried slowly.
    Denied(String),
    /// LookupEvents was denied in this region only (a service control policy, say): this
    /// region's job reports it and is retried slowly; the connection's other regions go on.
    RegionDenied(String),
    /// Retries ran out or something else failed; retried with backoff.
    Failed(String),
    /// Another worker holds the job now.
    LeaseLost,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LeaseLost => Stop::LeaseLost,
            other => Stop::Failed(other.to_string()),
        }
    }
}

fn jitter(base: Duration) -> Duration {
    let extra = rand::thread_rng().gen_range(0..=base.as_millis().max(1) as u64 / 2);
    base + Duration::from_millis(extra)
}

impl Importer {
    pub fn new(store: Arc<dyn Store>, aws: Aws, settings: ImportSettings) -> Arc<Importer> {
        let owner = format!("worker-{}", Uuid::now_v7());
        Arc::new(Importer { store, aws, settings, owner, credentials: CredentialCache::default() })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    async fn linker(&self, connection: &Connection) -> Result<ConnectionLinker, Stop> {
        Ok(ConnectionLinker::load(self.store.as_ref(), connection).await?)
    }
}
