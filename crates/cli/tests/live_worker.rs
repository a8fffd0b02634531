//! A live timeline served by one process receives what a separate `changetrail worker` process
//! imports, and a stream resumed after its `changetrail serve` process restarts misses nothing and
//! repeats nothing: real processes, one database (SQLite, and PostgreSQL when
//! CHANGETRAIL_TEST_DATABASE_URL is set), the AWS stand-in reached only through AWS_ENDPOINT_URL.

use std::time::Duration;

use domain::connection::ConnectionSettings;
use domain::{ExternalId, NewEnvironment};
use test_support::sse::Stream;
use test_support::{Backend, TestApp, TestDb};
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
    let mut worker =
        test_support::changetrail_process(env!("CARGO_BIN_EXE_changetrail"), "worker", &app.db.url, &standin.url())
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

/// `changetrail serve` on `port` against `database_url`, answering once it is up.
async fn serve(database_url: &str, port: u16, data_dir: &std::path::Path) -> std::process::Child {
    let child = test_support::changetrail_process(
        env!("CARGO_BIN_EXE_changetrail"),
        "serve",
        database_url,
        "http://127.0.0.1:9",
    )
    .env("CHANGETRAIL_DATA_DIR", data_dir)
    .env("CHANGETRAIL_LISTEN", format!("127.0.0.1:{port}"))
    .env("CHANGETRAIL_AWS_PRINCIPAL_ARN", "arn:aws:iam::111111111111:role/changetrail")
    .spawn()
    .expect("start changetrail serve");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let client = reqwest::Client::new();
    while !client.get(format!("http://127.0.0.1:{port}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(std::time::Instant::now() < deadline, "changetrail serve did not become ready on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

async fn post_deploy(base: &str, token: &str, version: &str) -> String {
    let body = serde_json::json!({"environment": "prod", "service": "api", "version": version, "status": "succeeded",
                                  "started_at": "2026-11-30T10:00:00Z"});
    let response =
        reqwest::Client::new().post(format!("{base}/v1/deploys")).bearer_auth(token).json(&body).send().await;
    let answer: serde_json::Value = response.expect("post a deploy").json().await.expect("a JSON answer");
    answer["id"].as_str().unwrap_or_else(|| panic!("a deploy: {answer}")).to_owned()
}

async fn a_stream_resumed_after_its_server_restarts_gets_every_item_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return test_support::skipped("a_stream_resumed_after_its_server_restarts_gets_every_item_once");
    };
    let org = test_support::create_org(db.store.as_ref(), "acme").await;
    db.store.create_environment(org.id, &NewEnvironment::parse("prod", None, None).unwrap()).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let data_dir = std::env::temp_dir().join(format!("changetrail-serve-{}", Uuid::now_v7()));
    let (base, token) = (format!("http://127.0.0.1:{port}"), org.admin_token.as_str());
    let path = "/v1/environments/prod/timeline/stream";
    // Another server on the database, up while the first one is down.
    let other = TestApp::spawn_on(db).await;

    let mut server = serve(&other.db.url, port, &data_dir).await;
    let (status, mut stream) = Stream::open(&base, path, token, None).await;
    assert_eq!(status, 200);
    let first = post_deploy(&base, token, "v1").await;
    let (item, last_event_id) = stream.item(Duration::from_secs(5)).await.expect("the first deploy");
    assert_eq!(item["id"], first.as_str());

    server.kill().unwrap();
    server.wait().unwrap();
    drop(stream);
    let mut expected = Vec::new();
    for version in ["v2", "v3", "v4"] {
        expected.push(post_deploy(&other.base_url, token, version).await);
    }
    let mut server = serve(&other.db.url, port, &data_dir).await;
    let (status, mut stream) = Stream::open(&base, path, token, Some(&last_event_id)).await;
    assert_eq!(status, 200);
    expected.push(post_deploy(&base, token, "v5").await);
    let mut received = Vec::new();
    while received.len() < expected.len() {
        let Some((item, _)) = stream.item(Duration::from_secs(5)).await else { break };
        received.push(item["id"].as_str().unwrap().to_owned());
    }
    assert!(stream.next(Duration::from_millis(700)).await.is_none(), "nothing more");
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(received, expected, "everything stored after the last event received, once each, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_after_its_server_restarts_gets_every_item_once_on_sqlite() {
    a_stream_resumed_after_its_server_restarts_gets_every_item_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_after_its_server_restarts_gets_every_item_once_on_postgres() {
    a_stream_resumed_after_its_server_restarts_gets_every_item_once(Backend::Postgres).await;
}
