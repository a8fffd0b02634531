//! A worker killed with SIGKILL in the middle of a backfill, then started again: the stored set
//! equals the expected set exactly. Real processes: the `changetrail worker` binary against a
//! real database (SQLite, and PostgreSQL when CHANGETRAIL_TEST_DATABASE_URL is set) and the AWS
//! stand-in, reached only through AWS_ENDPOINT_URL.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use domain::connection::ConnectionSettings;
use domain::ExternalId;
use test_support::{Backend, TestDb};
use time::OffsetDateTime;
use uuid::Uuid;

const ACCOUNT: &str = "222222222222";
const ROLE: &str = "arn:aws:iam::222222222222:role/changetrail-cloudtrail-reader";

fn worker(db_url: &str, aws_url: &str) -> Child {
    worker_with(db_url, aws_url, &[])
}

fn worker_with(db_url: &str, aws_url: &str, env: &[(&str, String)]) -> Child {
    test_support::changetrail_process(env!("CARGO_BIN_EXE_changetrail"), "worker", db_url, aws_url)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("CHANGETRAIL_IMPORT_LEASE", "3s")
        .spawn()
        .expect("start the worker")
}

/// An active connection whose backfill holds the real records' 574 changes, spread over the 7
/// days of the backfill so that it walks about 30 windows: (organisation, connection, the write
/// events' ids sorted, the backfill's end).
async fn backfill(db: &TestDb, standin: &aws_standin::RunningStandin) -> (Uuid, Uuid, Vec<String>, OffsetDateTime) {
    let store = db.store.clone();
    let org = store.create_organization("acme").await.unwrap();
    let settings = ConnectionSettings {
        name: "prod".into(),
        regions: vec!["us-east-1".into()],
        default_environment: None,
        environment_rules: vec![],
        lookback_days: 7,
        include_read_only: false,
        enabled: true,
        event_filter: domain::noise::EventFilter { exclude_session_noise: false, ..Default::default() },
        session_duration_seconds: 3600,
    };
    let connection = store.create_connection(org.id, &settings, &ExternalId::generate()).await.unwrap();
    let active = test_support::activate_connection(store.as_ref(), &standin.standin, &connection, ROLE).await;
    let plan = domain::import::JobPlan::for_connection(&active, domain::time_util::now()).unwrap();
    store.schedule_imports(org.id, connection.id, &plan).await.unwrap();

    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let now = OffsetDateTime::now_utc();
    let mut expected = Vec::new();
    let mut events = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let at = now - time::Duration::days(7) + time::Duration::minutes(10) + time::Duration::seconds(i as i64 * 200);
        let shift = at - test_support::record_time(record).unwrap();
        events.push(aws_standin::StandinEvent::from_record(record, shift, time::Duration::ZERO).unwrap());
        if record["readOnly"].as_bool() != Some(true) {
            expected.push(record["eventID"].as_str().unwrap().to_owned());
        }
    }
    expected.sort();
    standin.standin.add_events(ACCOUNT, "us-east-1", events);

    (org.id, connection.id, expected, now)
}

async fn killed_worker_resumes_exactly(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return test_support::skipped("killed_worker_resumes_exactly") };
    let standin = test_support::start_standin().await;
    let store = db.store.clone();
    let (org_id, connection_id, expected, now) = backfill(&db, &standin).await;
    let mut first = worker(&db.url, &standin.url());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = test_support::stored_source_keys(&db.url, org_id).await.len();
        if stored >= 100 {
            assert!(stored < expected.len(), "killed in the middle, not after the end");
            break;
        }
        assert!(Instant::now() < deadline, "the worker stored nothing in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap(); // SIGKILL: no chance to store or release anything
    first.wait().unwrap();

    let mut second = worker(&db.url, &standin.url());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = store.list_import_jobs(org_id, connection_id).await.unwrap().remove(0);
        if job.scanned_until >= now && job.walk.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted worker did not finish: {job:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Command::new("kill").arg("-TERM").arg(second.id().to_string()).status().unwrap();
    assert!(second.wait().unwrap().success(), "the worker stops cleanly on SIGTERM");
    assert_eq!(test_support::stored_source_keys(&db.url, org_id).await, expected, "nothing lost, nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_resumes_exactly_on_sqlite() {
    killed_worker_resumes_exactly(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_resumes_exactly_on_postgres() {
    killed_worker_resumes_exactly(Backend::Postgres).await;
}

/// A worker killed with SIGKILL after storing matches of rules and before PagerDuty accepted any
/// (its PagerDuty never answers), then one started against a PagerDuty that answers: every
/// match reaches PagerDuty, under distinct dedup keys, once each.
async fn killed_worker_loses_no_page(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return test_support::skipped("killed_worker_loses_no_page") };
    let standin = test_support::start_standin().await;
    let store = db.store.clone();
    let key = domain::secret_box::SecretKey::generate();
    let (org_id, connection_id, _, now) = backfill(&db, &standin).await;
    let mut rules = Vec::new();
    for preset in ["cis-aws-4", "cis-aws-13"] {
        let settings = domain::rule::RuleSettings {
            name: preset.into(),
            enabled: true,
            environment_ids: vec![],
            matcher: domain::rule::RuleMatch { preset: Some(preset.into()), ..Default::default() },
            action: domain::rule::RuleAction::PagerdutyAlert { severity: "critical".into() },
        };
        rules.push(store.create_rule(org_id, &settings, &key.seal("ROUTINGKEY000000")).await.unwrap());
    }
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let matches = records
        .iter()
        .filter(|r| r["readOnly"].as_bool() != Some(true))
        .map(|r| ["cis-aws-4", "cis-aws-13"].iter().filter(|p| domain::rule::preset(p).unwrap().matches(r)).count())
        .sum::<usize>();
    assert!(matches > 40, "{matches}");

    // A PagerDuty that takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let secret_key = key.to_base64();
    let env = |pd: &str| [("CHANGETRAIL_PAGERDUTY_URL", pd.to_owned()), ("CHANGETRAIL_SECRET_KEY", secret_key.clone())];
    let mut first = worker_with(&db.url, &standin.url(), &env(&silent_url));
    let deliveries = |rule: Uuid| {
        let store = store.clone();
        async move { store.list_rule_deliveries(org_id, rule, 500).await.unwrap() }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if deliveries(rules[1].id).await.len() >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the worker stored no match in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    drop(silent);

    // The PagerDuty that answers, and the next worker.
    let accepted: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let seen = accepted.clone();
    let router = axum::Router::new().route(
        "/v2/enqueue",
        axum::routing::post(move |axum::Json(event): axum::Json<serde_json::Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(event["dedup_key"].as_str().unwrap_or("").to_owned());
                (axum::http::StatusCode::ACCEPTED, axum::Json(serde_json::json!({"status": "success"})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pd_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut second = worker_with(&db.url, &standin.url(), &env(&pd_url));
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let job = store.list_import_jobs(org_id, connection_id).await.unwrap().remove(0);
        let done = job.scanned_until >= now && job.walk.is_none();
        if done && accepted.lock().unwrap().len() >= matches {
            break;
        }
        assert!(Instant::now() < deadline, "not everything was delivered: {}", accepted.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Command::new("kill").arg("-TERM").arg(second.id().to_string()).status().unwrap();
    assert!(second.wait().unwrap().success(), "the worker stops cleanly on SIGTERM");

    let mut stored_keys = std::collections::BTreeSet::new();
    for rule in &rules {
        for d in deliveries(rule.id).await {
            assert_eq!(d.status, domain::rule::delivery::DeliveryStatus::Delivered, "{d:?}");
            stored_keys.insert(domain::rule::delivery::dedup_key(rule.id, d.event_id));
        }
    }
    let seen: std::collections::BTreeSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    assert_eq!(stored_keys.len(), matches, "a delivery per match, none lost to the kill");
    assert_eq!(seen, stored_keys, "PagerDuty saw every match under its own dedup key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_loses_no_page_on_sqlite() {
    killed_worker_loses_no_page(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_loses_no_page_on_postgres() {
    killed_worker_loses_no_page(Backend::Postgres).await;
}
