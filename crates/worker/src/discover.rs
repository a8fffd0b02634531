//! The discovery of organisation connections' accounts: each active organisation connection is
//! leased in turn (the discovery columns of `connections`), its accounts listed, and its members
//! brought up to date by `App::discover_members`. Due again after the interval.

use std::sync::Arc;
use std::time::Duration;

use app::{App, AppError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a claimed discovery stays leased: a listing of hundreds of accounts and the
/// validation of each new member take a while.
const LEASE: Duration = Duration::from_secs(600);
/// A failed listing is tried again this soon (or at the interval, if that is sooner).
const RETRY: Duration = Duration::from_secs(300);

pub struct Discoverer {
    app: App,
    owner: String,
    /// How often each organisation's accounts are listed.
    interval: Duration,
    poll: Duration,
}

impl Discoverer {
    pub fn new(app: App, interval: Duration) -> Arc<Discoverer> {
        let owner = format!("discoverer-{}", Uuid::now_v7());
        Arc::new(Discoverer { app, owner, interval, poll: Duration::from_secs(5) })
    }

    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if self.run_due_once().await == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(self.poll) => {}
                }
            }
        }
    }

    /// Runs every due discovery once; returns how many ran. For tests and the loop above.
    pub async fn run_due_once(&self) -> usize {
        let mut ran = 0;
        loop {
            let now = domain::time_util::now();
            let claimed = self.app.store.claim_discovery(&self.owner, now, now + LEASE).await;
            let (org_id, id) = match claimed {
                Ok(Some(job)) => job,
                Ok(None) => return ran,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a discovery");
                    return ran;
                }
            };
            ran += 1;
            let outcome = self.app.discover_members(org_id, id).await;
            let now = domain::time_util::now();
            let (next, error) = match outcome {
                Ok(members) => {
                    tracing::info!(connection = %id, members = members.len(), "organisation accounts discovered");
                    (now + self.interval, None)
                }
                Err(AppError::Refused { detail, .. }) => (now + self.interval.min(RETRY), Some(detail)),
                Err(other) => (now + self.interval.min(RETRY), Some(other.to_string())),
            };
            if let Some(error) = &error {
                tracing::warn!(connection = %id, error = %error, "organisation discovery failed");
            }
            if let Err(e) = self.app.store.finish_discovery(org_id, id, &self.owner, next, error.as_deref()).await {
                tracing::warn!(error = %e, "cannot finish a discovery; its lease will pass");
            }
        }
    }
}
