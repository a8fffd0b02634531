//! The runner: claims due jobs of every kind and runs them, up to the configured concurrency.

use std::sync::Arc;

use domain::import::RelinkJob;
use domain::StoreError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Importer;

impl Importer {
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

    async fn claim_relink(&self) -> Result<Option<RelinkJob>, StoreError> {
        let now = domain::time_util::now();
        self.store.claim_relink(&self.owner, now, now + self.settings.lease).await
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
}
