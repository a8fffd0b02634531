//! A live timeline served by one process receives what a separate `changetrail worker` process
//! imports: real processes, one database (SQLite, and PostgreSQL when
//! CHANGETRAIL_TEST_DATABASE_URL is set), the AWS stand-in reached only through AWS_ENDPOINT_URL.

use std::process::{Command, Stdio};
use std::time::Duration;

use domain::connection::ConnectionSettings;
use domain::{ExternalId, NewEnvironment};
use test_support::sse::Stream;
use test_support::{Backend, TestApp, TestDb, SERVICE_ACCESS_KEY, SERVICE_SECRET};
use time::OffsetDateTime;
use uuid::Uuid;

const ACCOUNT: &str = "222222222222";
const ROLE: &str = "arn:aws:iam::222222222222:role/changetrail-cloudtrail-reader";

async fn a_worker_process_import_reaches_an_api_process_stream(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return test_support::skipped("a_worker_process_import_reaches_an_api_process_stream");
    };
    let standin = test_support::start_standin().await;
    let store = db.store.clone();
    let org = test_support::create_org(store.as_ref(), "acme").await;
    let prod = store.create_environment(org.id, &NewEnvironment::parse("prod", None, None).unwrap()).await.unwrap();
    let settings = ConnectionSettings {
        name: "prod".into(),
        regions: vec!["us-east-1".into()],
        default_environment: Some(prod.slug.clone()),
        lookback_days: 1,
        event_filter: domain::noise::EventFilter { exclude_session_noise: false, ..Default::default() },
        ..ConnectionSettings::new_connection()
    };
    let connection = store.create_connection(org.id, &settings, &ExternalId::generate()).await.unwrap();
    test_support::activate_connection(store.as_ref(), &standin.standin, &connection, ROLE).await;
    // Ten changes of the real records, from the last hour.
    let records: Vec<serde_json::Value> = test_support::cloudtrail_records("invictus-aws-dataset")
        .into_iter()
        .filter(|r| r["readOnly"].as_bool() != Some(true))
        .take(10)
        .collect();
    let newest = OffsetDateTime::now_utc() - time::Duration::minutes(30);
    let expected =
        test_support::seed(&standin.standin, ACCOUNT, "us-east-1", &records, newest, |_| time::Duration::ZERO);
    assert_eq!(expected.len(), 10);

    // The API process's stream is open before the worker process starts.
    let app = TestApp::spawn_on(db).await;
    let (status, mut stream) =
        Stream::open(&app.base_url, "/v1/environments/prod/timeline/stream", &org.admin_token, None).await;
    assert_eq!(status, 200);
    let mut worker = Command::new(env!("CARGO_BIN_EXE_changetrail"))
        .arg("worker")
        .env_clear()
        .env("CHANGETRAIL_DATA_DIR", std::env::temp_dir().join(format!("changetrail-worker-{}", Uuid::now_v7())))
        .env("CHANGETRAIL_DATABASE_URL", &app.db.url)
        .env("CHANGETRAIL_LOG", "warn")
        .env("AWS_ENDPOINT_URL", standin.url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", SERVICE_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SERVICE_SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the worker");
    let mut received = Vec::new();
    while received.len() < expected.len() {
        let Some((item, _)) = stream.item(Duration::from_secs(60)).await else { break };
        assert_eq!(item["kind"], "cloudtrail");
        received.push(item["details"]["event_id"].as_str().unwrap_or_default().to_owned());
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    received.sort();
    assert_eq!(received, expected, "each imported change reached the stream once");
    assert!(stream.next(Duration::from_millis(700)).await.is_none(), "and nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_import_reaches_an_api_process_stream_on_sqlite() {
    a_worker_process_import_reaches_an_api_process_stream(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_import_reaches_an_api_process_stream_on_postgres() {
    a_worker_process_import_reaches_an_api_process_stream(Backend::Postgres).await;
}
