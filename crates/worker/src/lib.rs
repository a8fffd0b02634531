//! changetrail's background worker.
//!
//! The CloudTrail importer, which this crate exists for, arrives with AWS connections; until
//! then the worker has no kind of work to claim and only waits for shutdown.

use std::future::Future;
use std::sync::Arc;

use domain::Store;

pub async fn run(store: Arc<dyn Store>, shutdown: impl Future<Output = ()>) {
    let _ = store;
    tracing::info!("worker started: no import work is defined yet");
    shutdown.await;
    tracing::info!("worker stopped");
}
