//! What rules cost: matching per stored item with the 15 presets and 100 custom rules enabled
//! (pure, and on the store's write path against the same path with no rules), and the outbox's
//! delivery rate against a PagerDuty stand-in, with a plain HTTP client's rate to the same
//! stand-in as the floor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::cloudtrail::{normalize, RecordContext};
use domain::event::NewEvent;
use domain::rule::{Rule, RuleAction, RuleMatch, RuleSettings, PRESETS};
use domain::Store;
use uuid::Uuid;

use crate::{records, temp_sqlite};

/// The importer stores pages of up to 50 events.
const PAGE: usize = 50;
const CONCURRENCY: usize = 16;

/// A mix of what people write: mostly a few event names, then name globs, a service with an
/// identity type, error codes and actors.
fn custom_rule(i: usize) -> RuleMatch {
    let mut m = RuleMatch::default();
    match i % 10 {
        0..=3 => m.event_names = vec![format!("Delete{i}Thing"), format!("Modify{i}Setting")],
        4 | 5 => m.event_names = vec![format!("Delete{i}*"), format!("*Bench{i}")],
        6 | 7 => {
            m.event_sources = vec![["ec2.amazonaws.com", "iam.amazonaws.com", "s3.amazonaws.com"][i % 3].into()];
            m.identity_types = vec!["Root".into()];
        }
        8 => m.error_codes = vec![format!("Bench{i}*")],
        _ => m.actor_patterns = vec![format!("arn:aws:iam::*:user/bench-{i}-*")],
    }
    m
}

fn settings(matcher: RuleMatch, n: usize) -> RuleSettings {
    RuleSettings {
        name: format!("rule {n}"),
        enabled: true,
        environment_ids: vec![],
        matcher,
        action: RuleAction::PagerdutyAlert { severity: "critical".into() },
    }
}

/// The 15 presets and 100 custom rules.
fn all_rules() -> Vec<RuleSettings> {
    let presets = PRESETS.iter().map(|p| RuleMatch { preset: Some(p.id.into()), ..RuleMatch::default() });
    presets.chain((0..100).map(custom_rule)).enumerate().map(|(n, m)| settings(m, n)).collect()
}

fn items(env: Uuid) -> anyhow::Result<Vec<NewEvent>> {
    let ctx = RecordContext {
        connection_id: Uuid::nil(),
        account_id: "218007301253",
        region: "us-east-1",
        fallback_time: domain::time_util::now(),
    };
    Ok(records()?
        .iter()
        .map(|r| {
            let mut e = normalize(r, &ctx).event;
            e.connection_id = None;
            e.environment_ids = vec![env];
            e
        })
        .collect())
}

/// Stores every item in pages, in a fresh organisation with `rules`; answers µs per item.
async fn store_all(store: &Arc<dyn Store>, rules: &[RuleSettings]) -> anyhow::Result<f64> {
    let org = store.create_organization("bench").await?;
    let env = store.create_environment(org.id, &domain::NewEnvironment::parse("prod", None, None).unwrap()).await?;
    for r in rules {
        store.create_rule(org.id, r, "sealed").await?;
    }
    let events = items(env.id)?;
    let started = Instant::now();
    for page in events.chunks(PAGE) {
        store.insert_events(org.id, page).await?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / events.len() as f64)
}

pub(crate) async fn rules(deliveries: usize) -> anyhow::Result<()> {
    let rules = all_rules();
    let events = items(Uuid::now_v7())?;
    let as_rules: Vec<Rule> = rules
        .iter()
        .map(|s| Rule {
            id: Uuid::now_v7(),
            org_id: Uuid::nil(),
            settings: s.clone(),
            created_at: domain::time_util::now(),
            updated_at: domain::time_util::now(),
        })
        .collect();
    let time_matching = |rules: &[Rule]| {
        let set = domain::rule::RuleSet::new(rules.to_vec());
        let reps = 20;
        let started = Instant::now();
        let mut hits = 0;
        for _ in 0..reps {
            for e in &events {
                hits += domain::rule::matches_of(&set, Uuid::nil(), e).len();
            }
        }
        (started.elapsed().as_secs_f64() * 1e9 / (reps * events.len()) as f64, hits / reps)
    };
    let (ns, hits) = time_matching(&as_rules);
    let (presets_ns, _) = time_matching(&as_rules[..PRESETS.len()]);
    let (custom_ns, _) = time_matching(&as_rules[PRESETS.len()..]);
    println!(
        "rules: {} rules (15 presets, 100 custom) over {} real records: {ns:.0} ns per item to match \
         (the presets alone {presets_ns:.0} ns, the custom rules alone {custom_ns:.0} ns), {hits} matches per pass",
        as_rules.len(),
        events.len(),
    );

    let mut urls = vec![("SQLite", temp_sqlite()?)];
    if let Ok(url) = std::env::var("CHANGETRAIL_BENCH_DATABASE_URL") {
        urls.push(("PostgreSQL", url));
    }
    for (name, url) in &urls {
        let store: Arc<dyn Store> = Arc::new(storage::connect_sql(url).await?);
        // Alternate the two so the machine's noise moves both; keep the best of three each.
        let (mut without, mut with) = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            without = without.min(store_all(&store, &[]).await?);
            with = with.min(store_all(&store, &rules).await?);
        }
        println!(
            "rules: {name}: storing pages of {PAGE}: {without:.1} µs per item with no rules, {with:.1} µs with 115 \
             enabled (+{:.1}%, matches' alerts and outbox rows included)",
            (with / without - 1.0) * 100.0
        );
    }

    // The outbox against a stand-in that accepts at once; the floor is the same number of
    // POSTs from one HTTP client at the same concurrency.
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let router = axum::Router::new().route(
        "/v2/enqueue",
        axum::routing::post(move |_: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                (axum::http::StatusCode::ACCEPTED, r#"{"status":"success","message":"Event processed"}"#)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let pd_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });

    let client = reqwest::Client::new();
    let body = serde_json::json!({"routing_key": "R", "event_action": "trigger", "dedup_key": "x",
        "payload": {"summary": "s", "source": "aws", "severity": "critical"}});
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, body, next, url) = (client.clone(), body.clone(), next.clone(), format!("{pd_url}/v2/enqueue"));
        senders.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < deliveries {
                let _ = client.post(&url).json(&body).send().await;
            }
        });
    }
    while senders.join_next().await.is_some() {}
    let floor = deliveries as f64 / started.elapsed().as_secs_f64();

    for (name, url) in &urls {
        let store: Arc<dyn Store> = Arc::new(storage::connect_sql(url).await?);
        let org = store.create_organization("bench").await?;
        let env = store.create_environment(org.id, &domain::NewEnvironment::parse("prod", None, None).unwrap()).await?;
        let key = domain::secret_box::SecretKey::generate();
        let everything =
            RuleMatch { event_sources: vec!["*".into(), "*.amazonaws.com".into()], ..RuleMatch::default() };
        store.create_rule(org.id, &settings(everything, 0), &key.seal("ROUTINGKEY")).await?;
        let mut events = items(env.id)?;
        let base = events.clone();
        let mut copy = 0;
        while events.len() < deliveries {
            copy += 1;
            events.extend(base.iter().cloned().map(|mut e| {
                e.source_key = format!("{}#{copy}", e.source_key);
                e
            }));
        }
        events.truncate(deliveries);
        for page in events.chunks(100) {
            store.insert_events(org.id, page).await?;
        }
        let mut settings = worker::DeliverySettings::new(key);
        settings.pagerduty_url = pd_url.clone();
        settings.concurrency = CONCURRENCY;
        let deliverer = worker::Deliverer::new(store.clone(), settings).map_err(anyhow::Error::msg)?;
        let before = accepted.load(Ordering::Relaxed);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(600);
        while accepted.load(Ordering::Relaxed) - before < deliveries && Instant::now() < deadline {
            if deliverer.deliver_due_once().await == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let rate = (accepted.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
        println!(
            "rules: {name}: outbox delivered {} in {:.1} s: {rate:.0} deliveries/s ({CONCURRENCY} at once; the floor, \
             a bare HTTP client at the same concurrency: {floor:.0}/s, ratio {:.2})",
            accepted.load(Ordering::Relaxed) - before,
            started.elapsed().as_secs_f64(),
            rate / floor
        );
    }
    Ok(())
}
