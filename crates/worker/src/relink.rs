//! The re-link job: a connection's stored events get the environments its current rules name.

use domain::import::RelinkJob;
use domain::linking::LinkFacts;

use crate::{Importer, Stop};

impl Importer {
    /// Re-links a connection's stored events to the environments its current rules name, 500 at
    /// a time, each batch in its own transaction so the API is never blocked for long.
    pub(crate) async fn relink(&self, mut job: RelinkJob) {
        const BATCH: u32 = 500;
        let outcome: Result<(), Stop> = async {
            let Some(connection) = self.store.get_connection(job.org_id, job.connection_id).await? else {
                return Ok(());
            };
            let linker = self.linker(&connection).await?;
            loop {
                let events = self.store.linkable_events(&job, BATCH).await?;
                let done = events.len() < BATCH as usize;
                let links: Vec<_> = events
                    .into_iter()
                    .map(|e| {
                        let ids = linker.environment_ids(&LinkFacts::of_stored(&e));
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
            Err(Stop::Denied(e) | Stop::RegionDenied(e) | Stop::Failed(e)) => {
                tracing::warn!(connection = %job.connection_id, error = %e, "re-link failed; retried when its lease passes")
            }
        }
    }
}
