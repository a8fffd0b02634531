//! The import job: one run over one (connection, region), window by window, page by page.

use std::time::Duration;

use aws::{CloudTrailReader, LookupError, LookupPage};
use domain::cloudtrail::{normalize_lookup, RecordContext};
use domain::connection::ConnectionProblem;
use domain::import::{ImportJob, Lease, PageProgress, RunOutcome, Walk};
use domain::linking::LinkFacts;
use domain::ConnectionStatus;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::{jitter, Importer, Stop};

/// Whether a connection's filter drops an imported or pushed event.
pub(crate) fn excluded(filter: &domain::noise::EventFilter, event: &domain::event::NewEvent) -> bool {
    let Some(details) = event.details.cloudtrail() else { return false };
    filter.excludes(&details.event_name, &details.event_source, event.actor.as_deref()).is_some()
}

fn to_std(d: time::Duration) -> Duration {
    d.try_into().unwrap_or_default()
}

impl Importer {
    pub(crate) async fn run_job(&self, job: ImportJob, shutdown: CancellationToken) {
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
            Err(Stop::RegionDenied(message)) => {
                metrics::counter!("changetrail_import_denied_total").increment(1);
                tracing::warn!(connection = %job.connection_id, region = %job.region, error = %message, "LookupEvents denied in this region");
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

    /// One run: windows until caught up, out of budget, or shut down. `Ok(true)` when caught up.
    async fn import(&self, job: &ImportJob, lease: &Lease, shutdown: &CancellationToken) -> Result<bool, Stop> {
        let Some(connection) = self.store.get_connection(job.org_id, job.connection_id).await? else { return Ok(true) };
        if connection.status != ConnectionStatus::Active || !connection.settings.enabled {
            return Ok(true);
        }
        let mut linker = self.linker(&connection).await?;
        let mut creds = self.credentials(&connection).await?;
        let mut reader = self.aws.cloudtrail_reader(&creds, &job.region);
        let started = std::time::Instant::now();
        // Caught up means: scanned to the moment this run began. (Comparing with a "now" that
        // moves on while the run walks would never be reached.)
        let run_start = domain::time_util::now();
        let mut scanned_until = job.scanned_until;
        let mut walk = job.walk.clone();
        let mut renewals = 0u32;
        // Until when this worker holds the job: claimed so, extended by every stored page, and
        // renewed only by a wait that would outlast it.
        let mut leased_until = job.leased_until.unwrap_or(run_start);
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
                // A long walk outlives a short session: renew the credentials before they expire
                // rather than let a call fail on them.
                if creds.expires_at <= std::time::SystemTime::now() + crate::credentials::CREDENTIAL_MARGIN {
                    creds = self.credentials(&connection).await?;
                    reader = self.aws.cloudtrail_reader(&creds, &job.region);
                }
                let include_read_only = connection.settings.include_read_only;
                let call =
                    LookupCall { reader: &reader, lease, walk: &current, token: token.clone(), include_read_only };
                let page = match self.lookup(call, job, &mut leased_until, shutdown).await {
                    Ok(Some(page)) => page,
                    // Shut down while waiting for a slot: nothing is half done.
                    Ok(None) => return Ok(false),
                    Err(LookupError::ExpiredCredentials) if renewals < 3 => {
                        renewals += 1;
                        self.credentials.forget(connection.id);
                        creds = self.credentials(&connection).await?;
                        reader = self.aws.cloudtrail_reader(&creds, &job.region);
                        continue;
                    }
                    Err(LookupError::InvalidToken) if token.is_some() => {
                        // The token outlived its walk: walk the window again from its first page.
                        token = None;
                        continue;
                    }
                    Err(LookupError::Denied(message)) => return Err(Stop::RegionDenied(message)),
                    Err(LookupError::Throttled) => return Err(Stop::Failed("throttled 50 times in a row".into())),
                    Err(LookupError::ExpiredCredentials) => {
                        return Err(Stop::Failed("the role's credentials expired again after renewal".into()))
                    }
                    Err(LookupError::InvalidToken) => {
                        return Err(Stop::Failed("LookupEvents refused a walk with no token".into()))
                    }
                    Err(LookupError::Transient(message) | LookupError::Failed(message)) => {
                        return Err(Stop::Failed(message))
                    }
                };
                let context = RecordContext {
                    connection_id: connection.id,
                    account_id: &job.account_id,
                    region: &job.region,
                    fallback_time: current.end,
                };
                let continue_walk = page.next_token.clone().map(|t| Walk { next_token: Some(t), ..current.clone() });
                let events: Vec<_> = page
                    .events
                    .iter()
                    .map(|e| {
                        let n = normalize_lookup(e, &context);
                        if !n.problems.is_empty() {
                            tracing::info!(connection = %connection.id, region = %job.region, problems = ?n.problems, "stored a flagged CloudTrail record");
                        }
                        n.event
                    })
                    .collect();
                // The connection's filter drops noise before linking; the page counts what it dropped.
                let (dropped, kept): (Vec<_>, Vec<_>) =
                    events.into_iter().partition(|e| excluded(&connection.settings.event_filter, e));
                let mut events = kept;
                let excluded_keys: Vec<String> = dropped.into_iter().map(|e| e.source_key).collect();
                // The rules may change while a run walks: a page linked under old ones is refused
                // by the store, and linked again under the new ones.
                let mut relinked = 0;
                let (inserted, progress) = loop {
                    for event in &mut events {
                        event.environment_ids = linker.environment_ids(&LinkFacts::of_event(event));
                    }
                    let progress = PageProgress {
                        continue_walk: continue_walk.clone(),
                        window_end: current.end,
                        lease_until: domain::time_util::now() + self.settings.lease,
                        links_version: linker.links_version,
                        excluded: excluded_keys.clone(),
                    };
                    match self.store.save_import_page(lease, &events, &progress).await {
                        Err(domain::StoreError::LinksChanged) if relinked < 3 => {
                            relinked += 1;
                            let Some(changed) = self.store.get_connection(job.org_id, job.connection_id).await? else {
                                return Ok(true);
                            };
                            linker = self.linker(&changed).await?;
                        }
                        saved => break (saved?, progress),
                    }
                };
                leased_until = progress.lease_until;
                metrics::counter!("changetrail_events_imported_total").increment(inserted.len() as u64);
                let stored_at = domain::time_util::now();
                for &i in &inserted {
                    let delay = (stored_at - events[i].occurred_at).as_seconds_f64().max(0.0);
                    metrics::histogram!("changetrail_ingest_delay_seconds", "via" => "poll").record(delay);
                }
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

    /// One LookupEvents page, paced by the account's shared budget, with retries of throttling
    /// and transient failures; every other outcome goes to the caller. Waits that would outlast
    /// the lease renew it first, so another worker never takes a job that is only waiting; a
    /// shutdown during a wait ends it (`Ok(None)`).
    async fn lookup(
        &self,
        call: LookupCall<'_>,
        job: &ImportJob,
        leased_until: &mut OffsetDateTime,
        shutdown: &CancellationToken,
    ) -> Result<Option<LookupPage>, LookupError> {
        let mut failures = 0u32;
        let mut throttles = 0u32;
        loop {
            let now = domain::time_util::now();
            let interval = self.settings.call_interval.as_micros() as i64;
            let slot = self
                .store
                .reserve_lookup_slot(&job.account_id, &job.region, now, interval)
                .await
                .map_err(|e| LookupError::Failed(e.to_string()))?;
            if slot > now && !self.wait(call.lease, leased_until, to_std(slot - now), shutdown).await? {
                return Ok(None);
            }
            let result = call.reader.lookup_page(call.walk, call.token.clone(), call.include_read_only).await;
            metrics::counter!("changetrail_lookup_calls_total").increment(1);
            let wait = match result {
                Err(LookupError::Throttled) if throttles < 50 => {
                    metrics::counter!("changetrail_lookup_throttled_total").increment(1);
                    throttles += 1;
                    jitter(Duration::from_millis(500 * 2u64.pow(throttles.min(5)))).min(Duration::from_secs(20))
                }
                Err(LookupError::Transient(_)) if failures < self.settings.max_retries => {
                    failures += 1;
                    metrics::counter!("changetrail_lookup_retries_total").increment(1);
                    jitter(Duration::from_millis(100 * 2u64.pow(failures.min(8))))
                }
                other => return other.map(Some),
            };
            if !self.wait(call.lease, leased_until, wait, shutdown).await? {
                return Ok(None);
            }
        }
    }

    /// Sleeps `wait` with the lease renewed to outlast it; false when shut down meanwhile.
    async fn wait(
        &self,
        lease: &Lease,
        leased_until: &mut OffsetDateTime,
        wait: Duration,
        shutdown: &CancellationToken,
    ) -> Result<bool, LookupError> {
        // Half a lease of margin: the renewal itself, and the call after the wait, take time.
        let wake = domain::time_util::now() + wait;
        if wake + self.settings.lease / 2 > *leased_until {
            let until = wake + self.settings.lease;
            self.store.renew_lease(lease, until).await.map_err(|e| match e {
                domain::StoreError::LeaseLost => LookupError::Failed("the lease on this job is lost".into()),
                other => LookupError::Failed(other.to_string()),
            })?;
            *leased_until = until;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(true),
            _ = shutdown.cancelled() => Ok(false),
        }
    }
}

/// What one LookupEvents call is for.
struct LookupCall<'a> {
    reader: &'a CloudTrailReader,
    lease: &'a Lease,
    walk: &'a Walk,
    token: Option<String>,
    include_read_only: bool,
}
