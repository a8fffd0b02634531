//! changetrail's background worker: imports each active connection's CloudTrail management
//! events, region by region, through `LookupEvents`.
//!
//! Work comes from the lease table (`import_jobs`), one row per (connection, region), so any
//! number of workers on one database share it without importing a region twice at once. Each run
//! walks fixed time windows page by page; every page is stored with its progress in one
//! transaction, so a worker that dies loses at most the page it was fetching. Windows re-scan an
//! overlap behind the checkpoint because LookupEvents delivers late and out of order; storage
//! de-duplicates by EventId, so the overlap costs calls but never duplicates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws::aws_sdk_cloudtrail::error::{ProvideErrorMetadata, SdkError};
use aws::aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws::{Aws, TemporaryCredentials};
use domain::cloudtrail::{normalize, LookupEvent};
use domain::connection::ConnectionProblem;
use domain::event::Resource;
use domain::import::{ImportJob, Lease, PageProgress, RunOutcome, Walk};
use domain::linking::{LinkFacts, Linker};
use domain::{Connection, ConnectionStatus, EnvironmentSlug, PageRequest, Store, StoreError};
use rand::Rng;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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

/// Assumed-role credentials per connection, reused until shortly before they expire. Only in
/// memory: never logged, never stored.
#[derive(Default)]
struct CredentialCache(Mutex<HashMap<Uuid, TemporaryCredentials>>);

const CREDENTIAL_MARGIN: Duration = Duration::from_secs(300);
const SESSION: Duration = Duration::from_secs(3600);

impl CredentialCache {
    fn get(&self, connection_id: Uuid) -> Option<TemporaryCredentials> {
        let cache = self.0.lock().unwrap();
        let creds = cache.get(&connection_id)?;
        (creds.expires_at > std::time::SystemTime::now() + CREDENTIAL_MARGIN).then(|| creds.clone())
    }

    fn put(&self, connection_id: Uuid, creds: TemporaryCredentials) {
        self.0.lock().unwrap().insert(connection_id, creds);
    }

    fn forget(&self, connection_id: Uuid) {
        self.0.lock().unwrap().remove(&connection_id);
    }
}

/// One worker process's importer.
pub struct Importer {
    store: Arc<dyn Store>,
    aws: Aws,
    settings: ImportSettings,
    owner: String,
    credentials: CredentialCache,
}

/// Why a run stopped early.
enum Stop {
    /// The connection's role was denied: the connection is marked and retried slowly.
    Denied(String),
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

fn to_std(d: time::Duration) -> Duration {
    d.try_into().unwrap_or_default()
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

    /// Claims and runs due jobs until `shutdown` is cancelled; then lets every running job store
    /// its current page, and frees the leases.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, "importer started");
        let mut running: JoinSet<()> = JoinSet::new();
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            let free = self.settings.concurrency.saturating_sub(running.len()) as u32;
            let mut claimed = Vec::new();
            if free > 0 {
                let now = domain::time_util::now();
                match self.store.claim_import_jobs(&self.owner, now, now + self.settings.lease, free).await {
                    Ok(jobs) => claimed = jobs,
                    Err(e) => tracing::warn!(error = %e, "cannot claim import jobs"),
                }
            }
            let mut idle = claimed.is_empty();
            if running.len() < self.settings.concurrency {
                let importer = self.clone();
                if let Ok(Some(job)) = self.claim_relink().await {
                    idle = false;
                    running.spawn(async move { importer.relink(job).await });
                }
            }
            for job in claimed {
                let importer = self.clone();
                let shutdown = shutdown.clone();
                running.spawn(async move { importer.run_job(job, shutdown).await });
            }
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(self.settings.poll) => {}
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                }
            }
        }
        while running.join_next().await.is_some() {}
        if let Err(e) = self.store.release_leases(&self.owner).await {
            tracing::warn!(error = %e, "cannot release leases; they will pass on their own");
        }
        tracing::info!(owner = %self.owner, "importer stopped");
    }

    async fn claim_relink(&self) -> Result<Option<domain::import::RelinkJob>, StoreError> {
        let now = domain::time_util::now();
        self.store.claim_relink(&self.owner, now, now + self.settings.lease).await
    }

    /// Re-links a connection's stored events to the environments its current rules name, 500 at
    /// a time, each batch in its own transaction so the API is never blocked for long.
    async fn relink(&self, mut job: domain::import::RelinkJob) {
        const BATCH: u32 = 500;
        let outcome: Result<(), Stop> = async {
            let Some(connection) = self.store.get_connection(job.org_id, job.connection_id).await? else {
                return Ok(());
            };
            let linker =
                Linker::new(&connection.settings.environment_rules, connection.settings.default_environment.as_ref());
            let environments = self.environment_ids(job.org_id).await?;
            loop {
                let events = self.store.linkable_events(&job, BATCH).await?;
                let done = events.len() < BATCH as usize;
                let links: Vec<_> = events
                    .into_iter()
                    .map(|e| {
                        let facts = LinkFacts {
                            region: &e.region,
                            event_source: &e.event_source,
                            resources: e.resources.iter().map(String::as_str).collect(),
                            actor: e.actor.as_deref(),
                        };
                        let ids = linker
                            .environments(&facts)
                            .iter()
                            .filter_map(|slug| environments.get(slug).copied())
                            .collect();
                        (e, ids)
                    })
                    .collect();
                let lease_until = domain::time_util::now() + self.settings.lease;
                self.store.relink_batch(&job, &self.owner, &links, done, lease_until).await?;
                metrics::counter!("changetrail_events_relinked_total").increment(links.len() as u64);
                if done {
                    return Ok(());
                }
                job.after = links.last().map(|(e, _)| e.id);
            }
        }
        .await;
        match outcome {
            Ok(()) => tracing::info!(connection = %job.connection_id, version = job.version, "events re-linked"),
            Err(Stop::LeaseLost) => {
                tracing::info!(connection = %job.connection_id, "re-link superseded (rules changed again or lease lost)")
            }
            Err(Stop::Denied(e) | Stop::Failed(e)) => {
                tracing::warn!(connection = %job.connection_id, error = %e, "re-link failed; retried when its lease passes")
            }
        }
    }

    /// Runs every due job once, to completion of this run, and returns how many there were.
    /// For tests and benchmarks that drive the importer step by step.
    pub async fn run_due_jobs_once(self: &Arc<Self>) -> usize {
        while let Ok(Some(job)) = self.claim_relink().await {
            self.relink(job).await;
        }
        let now = domain::time_util::now();
        let jobs =
            self.store.claim_import_jobs(&self.owner, now, now + self.settings.lease, 10_000).await.unwrap_or_default();
        let count = jobs.len();
        let mut running = JoinSet::new();
        for job in jobs {
            let importer = self.clone();
            running.spawn(async move { importer.run_job(job, CancellationToken::new()).await });
        }
        while running.join_next().await.is_some() {}
        count
    }

    async fn run_job(&self, job: ImportJob, shutdown: CancellationToken) {
        let lease = Lease {
            org_id: job.org_id,
            connection_id: job.connection_id,
            region: job.region.clone(),
            owner: self.owner.clone(),
        };
        let outcome = self.import(&job, &lease, &shutdown).await;
        let now = domain::time_util::now();
        let outcome = match outcome {
            Ok(caught_up) => {
                let next = if caught_up && !shutdown.is_cancelled() { now + self.settings.interval } else { now };
                RunOutcome { next_run_at: next, error: None }
            }
            Err(Stop::LeaseLost) => {
                tracing::warn!(connection = %job.connection_id, region = %job.region, "lease lost; another worker has the job");
                return;
            }
            Err(Stop::Denied(message)) => {
                metrics::counter!("changetrail_import_denied_total").increment(1);
                let problem = ConnectionProblem { code: "access_denied".into(), message: message.clone(), at: now };
                let _ = self.store.record_connection_problem(job.org_id, job.connection_id, &problem, true).await;
                RunOutcome { next_run_at: now + self.settings.denied_retry, error: Some(message) }
            }
            Err(Stop::Failed(message)) => {
                let backoff = Duration::from_secs(30 * 2u64.pow(job.attempts.min(6)));
                tracing::warn!(connection = %job.connection_id, region = %job.region, error = %message, "import run failed");
                RunOutcome { next_run_at: now + jitter(backoff), error: Some(message) }
            }
        };
        if let Err(e) = self.store.finish_import_run(&lease, &outcome).await {
            tracing::warn!(error = %e, "cannot finish import run; its lease will pass");
        }
    }

    async fn credentials(&self, connection: &Connection) -> Result<TemporaryCredentials, Stop> {
        if let Some(creds) = self.credentials.get(connection.id) {
            return Ok(creds);
        }
        let role = connection
            .role_arn
            .as_deref()
            .and_then(|arn| domain::RoleArn::parse("role_arn", arn).ok())
            .ok_or_else(|| Stop::Failed("the connection has no valid role".into()))?;
        let session = aws::session_name(connection.id);
        match self.aws.assume_role(&role, Some(connection.external_id.as_str()), &session, SESSION).await {
            Ok((creds, _)) => {
                self.credentials.put(connection.id, creds.clone());
                Ok(creds)
            }
            Err(e) if aws::is_denied(e.as_service_error().and_then(|s| s.code())) => {
                Err(Stop::Denied(format!("AssumeRole on {role} was denied: {}", aws::describe(&e))))
            }
            Err(e) => Err(Stop::Failed(format!("AssumeRole failed: {}", aws::describe(&e)))),
        }
    }

    /// The org's environments by slug, for linking.
    async fn environment_ids(&self, org_id: Uuid) -> Result<HashMap<EnvironmentSlug, Uuid>, Stop> {
        let mut ids = HashMap::new();
        let mut page = PageRequest { limit: 500, after: None };
        loop {
            let envs = self.store.list_environments(org_id, page).await?;
            ids.extend(envs.items.iter().map(|e| (e.slug.clone(), e.id)));
            match envs.items.last() {
                Some(last) if envs.next_cursor.is_some() => page.after = Some(last.id),
                _ => return Ok(ids),
            }
        }
    }

    /// One run: windows until caught up, out of budget, or shut down. `Ok(true)` when caught up.
    async fn import(&self, job: &ImportJob, lease: &Lease, shutdown: &CancellationToken) -> Result<bool, Stop> {
        let Some(connection) = self.store.get_connection(job.org_id, job.connection_id).await? else { return Ok(true) };
        if connection.status != ConnectionStatus::Active || !connection.settings.enabled {
            return Ok(true);
        }
        let linker =
            Linker::new(&connection.settings.environment_rules, connection.settings.default_environment.as_ref());
        let environments = self.environment_ids(job.org_id).await?;
        let mut creds = self.credentials(&connection).await?;
        let mut client = self.aws.cloudtrail_for_import(&creds, &job.region);
        let started = std::time::Instant::now();
        // Caught up means: scanned to the moment this run began. (Comparing with a "now" that
        // moves on while the run walks would never be reached.)
        let run_start = domain::time_util::now();
        let mut scanned_until = job.scanned_until;
        let mut walk = job.walk.clone();
        loop {
            let now = domain::time_util::now();
            let current = match walk.take() {
                Some(w) => w,
                None => {
                    if scanned_until >= run_start {
                        return Ok(true);
                    }
                    let end = (scanned_until + self.settings.slice).min(now);
                    Walk { start: scanned_until - self.settings.overlap, end, next_token: None }
                }
            };
            let mut token = current.next_token.clone();
            loop {
                let page = match self.lookup(&client, job, &connection, &current, token.clone(), shutdown).await {
                    Ok(page) => page,
                    Err(LookupFailure::ExpiredCredentials) => {
                        self.credentials.forget(connection.id);
                        creds = self.credentials(&connection).await?;
                        client = self.aws.cloudtrail_for_import(&creds, &job.region);
                        continue;
                    }
                    Err(LookupFailure::InvalidToken) => {
                        // The token outlived its walk: walk the window again from its first page.
                        token = None;
                        continue;
                    }
                    Err(LookupFailure::Stop(stop)) => return Err(stop),
                };
                let events: Vec<_> = page
                    .events
                    .iter()
                    .map(|e| {
                        let mut n = normalize(e, connection.id, &job.account_id, &job.region, current.end);
                        let resources: Vec<&str> = n.event.resources.iter().map(|r| r.name.as_str()).collect();
                        let source = n.event.details["event_source"].as_str().unwrap_or("");
                        let facts = LinkFacts { region: &job.region, event_source: source, resources, actor: n.event.actor.as_deref() };
                        n.event.environment_ids = linker.environments(&facts).iter().filter_map(|slug| environments.get(slug).copied()).collect();
                        if !n.problems.is_empty() {
                            tracing::info!(connection = %connection.id, region = %job.region, problems = ?n.problems, "stored a flagged CloudTrail record");
                        }
                        n.event
                    })
                    .collect();
                let continue_walk = page.next_token.clone().map(|t| Walk { next_token: Some(t), ..current.clone() });
                let progress = PageProgress {
                    continue_walk: continue_walk.clone(),
                    window_end: current.end,
                    lease_until: domain::time_util::now() + self.settings.lease,
                };
                let inserted = self.store.save_import_page(lease, &events, &progress).await?;
                metrics::counter!("changetrail_events_imported_total").increment(inserted);
                if continue_walk.is_none() {
                    scanned_until = current.end;
                    let lag = (domain::time_util::now() - scanned_until).as_seconds_f64().max(0.0);
                    metrics::gauge!("changetrail_import_lag_seconds", "region" => job.region.clone()).set(lag);
                    break;
                }
                token = page.next_token;
                if shutdown.is_cancelled() || started.elapsed() > self.settings.run_budget {
                    return Ok(false);
                }
            }
            if shutdown.is_cancelled() || started.elapsed() > self.settings.run_budget {
                return Ok(scanned_until >= run_start);
            }
        }
    }

    /// One LookupEvents page, paced by the account's shared budget, with retries.
    async fn lookup(
        &self,
        client: &aws::aws_sdk_cloudtrail::Client,
        job: &ImportJob,
        connection: &Connection,
        walk: &Walk,
        token: Option<String>,
        shutdown: &CancellationToken,
    ) -> Result<LookupPage, LookupFailure> {
        let mut failures = 0u32;
        let mut throttles = 0u32;
        loop {
            let now = domain::time_util::now();
            let interval = self.settings.call_interval.as_micros() as i64;
            let slot = self
                .store
                .reserve_lookup_slot(&job.account_id, &job.region, now, interval)
                .await
                .map_err(|e| LookupFailure::Stop(e.into()))?;
            if slot > now {
                tokio::time::sleep(to_std(slot - now)).await;
            }
            let mut request = client
                .lookup_events()
                .start_time(aws::aws_sdk_cloudtrail::primitives::DateTime::from_secs(walk.start.unix_timestamp()))
                .end_time(aws::aws_sdk_cloudtrail::primitives::DateTime::from_secs(walk.end.unix_timestamp()))
                .max_results(50)
                .set_next_token(token.clone());
            if !connection.settings.include_read_only {
                let changes_only = LookupAttribute::builder()
                    .attribute_key(LookupAttributeKey::ReadOnly)
                    .attribute_value("false")
                    .build()
                    .expect("key and value are set");
                request = request.lookup_attributes(changes_only);
            }
            let result = request.send().await;
            metrics::counter!("changetrail_lookup_calls_total").increment(1);
            let error = match result {
                Ok(output) => {
                    return Ok(LookupPage {
                        events: output.events().iter().map(to_lookup_event).collect(),
                        next_token: output.next_token().map(str::to_owned),
                    })
                }
                Err(e) => e,
            };
            let code = error.as_service_error().and_then(|s| s.code()).map(str::to_owned);
            match code.as_deref() {
                Some("ThrottlingException") | Some("ThrottledException") | Some("TooManyRequestsException") => {
                    metrics::counter!("changetrail_lookup_throttled_total").increment(1);
                    throttles += 1;
                    if throttles > 50 {
                        return Err(LookupFailure::Stop(Stop::Failed("throttled 50 times in a row".into())));
                    }
                    let wait = jitter(Duration::from_millis(500 * 2u64.pow(throttles.min(5))));
                    tokio::time::sleep(wait.min(Duration::from_secs(20))).await;
                    continue;
                }
                Some("InvalidNextTokenException") => return Err(LookupFailure::InvalidToken),
                Some("ExpiredTokenException") => return Err(LookupFailure::ExpiredCredentials),
                c if aws::is_denied(c) => {
                    return Err(LookupFailure::Stop(Stop::Denied(format!(
                        "LookupEvents in {} was denied: {}",
                        job.region,
                        aws::describe(&error)
                    ))))
                }
                _ => {}
            }
            let retryable = match &error {
                SdkError::ServiceError(e) => e.raw().status().is_server_error(),
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
                _ => false,
            };
            if !retryable || failures >= self.settings.max_retries || shutdown.is_cancelled() {
                return Err(LookupFailure::Stop(Stop::Failed(format!(
                    "LookupEvents failed: {}",
                    aws::describe(&error)
                ))));
            }
            failures += 1;
            metrics::counter!("changetrail_lookup_retries_total").increment(1);
            tokio::time::sleep(jitter(Duration::from_millis(100 * 2u64.pow(failures.min(8))))).await;
        }
    }
}

struct LookupPage {
    events: Vec<LookupEvent>,
    next_token: Option<String>,
}

enum LookupFailure {
    InvalidToken,
    ExpiredCredentials,
    Stop(Stop),
}

fn to_lookup_event(e: &aws::aws_sdk_cloudtrail::types::Event) -> LookupEvent {
    LookupEvent {
        event_id: e.event_id().map(str::to_owned),
        event_name: e.event_name().map(str::to_owned),
        read_only: e.read_only().map(str::to_owned),
        event_time: e.event_time().and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok()),
        event_source: e.event_source().map(str::to_owned),
        username: e.username().map(str::to_owned),
        resources: e
            .resources()
            .iter()
            .filter_map(|r| {
                Some(Resource {
                    resource_type: r.resource_type().map(str::to_owned),
                    name: r.resource_name()?.to_owned(),
                })
            })
            .collect(),
        cloudtrail_event: e.cloud_trail_event().map(str::to_owned),
    }
}
