//! `changetrail-bench normalize [PASSES]`: what normalising one CloudTrail event costs (parse
//! the `CloudTrailEvent` string, the actor, resources, summary and title), over every record of
//! the Invictus set as LookupEvents returns it, `PASSES` times. The figure to compare with the
//! importer's per-event time of `throughput` (BENCHMARKS.md, "Normalisation").

use std::time::Instant;

use domain::cloudtrail::{normalize_lookup, LookupEvent, RecordContext};
use uuid::Uuid;

pub fn normalize(passes: usize) -> anyhow::Result<()> {
    let records = crate::records()?;
    let now = time::OffsetDateTime::now_utc();
    let lookups: Vec<LookupEvent> = records
        .iter()
        .map(|record| LookupEvent {
            event_id: record["eventID"].as_str().map(str::to_owned),
            event_name: record["eventName"].as_str().map(str::to_owned),
            read_only: record["readOnly"].as_bool().map(|b| b.to_string()),
            event_time: Some(now),
            event_source: record["eventSource"].as_str().map(str::to_owned),
            username: None,
            resources: vec![],
            cloudtrail_event: Some(record.to_string()),
        })
        .collect();
    let context = RecordContext {
        connection_id: Uuid::nil(),
        account_id: "123456789012",
        region: "us-east-1",
        fallback_time: now,
    };
    let mut best = f64::INFINITY;
    let mut resources = 0;
    for _ in 0..passes.max(1) {
        let started = Instant::now();
        resources = 0;
        for event in &lookups {
            let n = normalize_lookup(event, &context);
            resources += usize::from(!n.event.resources.is_empty());
        }
        best = best.min(started.elapsed().as_secs_f64() / lookups.len() as f64);
    }
    println!(
        "normalise: {} records, best of {passes} passes: {:.2} µs per event ({resources} name a resource)",
        lookups.len(),
        best * 1e6
    );
    Ok(())
}
