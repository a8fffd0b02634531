//! A worker killed with SIGKILL in the middle of a backfill, then started again: the stored set
//! equals the expected set exactly. Real processes: the `changetrail worker` binary against a
//! real database (SQLite, and PostgreSQL when CHANGETRAIL_TEST_DATABASE_URL is set) and the AWS
//! stand-in, reached only through AWS_ENDPOINT_URL.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use domain::connection::ConnectionSettings;
use domain::{ExternalId, RegisteredRole};
use test_support::{Backend, TestDb, SERVICE_ACCESS_KEY, SERVICE_PRINCIPAL, SERVICE_SECRET};
use time::OffsetDateTime;

const ACCOUNT: &str = "222222222222";
const ROLE: &str = "arn:aws:iam::222222222222:role/changetrail-cloudtrail-reader";

fn worker(db_url: &str, aws_url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_changetrail"))
        .arg("worker")
        .env_clear()
        .env("CHANGETRAIL_DATABASE_URL", db_url)
        .env("CHANGETRAIL_IMPORT_LEASE", "3s")
        .env("CHANGETRAIL_LOG", "warn")
        .env("AWS_ENDPOINT_URL", aws_url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", SERVICE_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SERVICE_SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the worker")
}

async fn killed_worker_resumes_exactly(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return test_support::skipped("killed_worker_resumes_exactly") };
    let standin = test_support::start_standin().await;
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
    };
    let connection = store.create_connection(org.id, &settings, &ExternalId::generate()).await.unwrap();
    standin.standin.add_role(aws_standin::RoleSpec {
        arn: ROLE.into(),
        trusted_principal: SERVICE_PRINCIPAL.into(),
        required_external_id: Some(connection.external_id.as_str().into()),
        allow_lookup_events: true,
        reports_session_as: None,
        external_id_like: None,
        lookup_denied_regions: vec![],
    });
    let role = RegisteredRole {
        role_arn: ROLE.into(),
        account_id: ACCOUNT.into(),
        assumed_role_arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/changetrail-cloudtrail-reader/x"),
        validated_at: domain::time_util::now(),
    };
    let active = store.register_role(org.id, connection.id, &role).await.unwrap().unwrap();
    let plan = domain::import::JobPlan::for_connection(&active, domain::time_util::now()).unwrap();
    store.schedule_imports(org.id, connection.id, &plan).await.unwrap();

    // The 574 changes of the real records, spread over the 7 days of the backfill so that it
    // walks about 30 windows.
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

    let mut first = worker(&db.url, &standin.url());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = test_support::stored_source_keys(&db.url, org.id).await.len();
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
        let job = store.list_import_jobs(org.id, connection.id).await.unwrap().remove(0);
        if job.scanned_until >= now && job.walk.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted worker did not finish: {job:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Command::new("kill").arg("-TERM").arg(second.id().to_string()).status().unwrap();
    assert!(second.wait().unwrap().success(), "the worker stops cleanly on SIGTERM");
    assert_eq!(test_support::stored_source_keys(&db.url, org.id).await, expected, "nothing lost, nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_resumes_exactly_on_sqlite() {
    killed_worker_resumes_exactly(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_resumes_exactly_on_postgres() {
    killed_worker_resumes_exactly(Backend::Postgres).await;
}
