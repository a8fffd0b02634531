//! Live timelines (Server-Sent Events) through HTTP: new items within a second, the timeline's
//! filters, and `Last-Event-ID` resuming on another server with nothing missed or repeated.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::sse::Stream;
use test_support::{Backend, TestApp};

on_both_backends!(
    a_live_timeline_gets_new_items_and_resumes_without_gaps_or_repeats,
    a_stream_outlives_the_request_timeout,
);

fn deploy(version: &str) -> Value {
    json!({"environment": "production", "service": "checkout-api", "version": version, "status": "succeeded",
           "started_at": "2026-11-30T10:00:00Z"})
}

/// Within a second, with room for a loaded CI machine.
const SOON: Duration = Duration::from_secs(2);

async fn a_live_timeline_gets_new_items_and_resumes_without_gaps_or_repeats(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return test_support::skipped("a_live_timeline_gets_new_items_and_resumes_without_gaps_or_repeats");
    };
    let org = app.org("acme").await;
    let token = org.admin_token.as_str();
    let (status, _) = app.post("/v1/environments", token, json!({"name": "Production", "slug": "production"})).await;
    assert_eq!(status, 201);
    let path = "/v1/environments/production/timeline/stream?kind=deploy";

    // Items stored before the stream opened are the timeline's, not the stream's.
    app.post("/v1/deploys", token, deploy("v0")).await;
    let (status, mut stream) = Stream::open(&app.base_url, path, token, None).await;
    assert_eq!(status, 200);
    assert_eq!(stream.response.headers()["content-type"], "text/event-stream");

    let posted = Instant::now();
    let (status, v1) = app.post("/v1/deploys", token, deploy("v1")).await;
    assert_eq!(status, 201, "{v1}");
    let (item, first_id) = stream.item(SOON).await.expect("the new deploy arrives");
    assert!(posted.elapsed() < SOON);
    assert_eq!(item["id"], v1["id"]);
    assert_eq!(item["kind"], "deploy");
    assert_eq!(item["environments"], json!(["production"]));

    // The filters apply: an alert is not a deploy.
    app.post(
        "/v1/alerts",
        token,
        json!({"environment": "production", "title": "5xx", "severity": "critical", "status": "triggered",
               "started_at": "2026-11-30T10:05:00Z", "source": "pagerduty"}),
    )
    .await;
    // Stored by another server (another process, for the stream's server): found all the same.
    let other = app.another_server().await;
    let (status, v2) = post(&other, "/v1/deploys", token, deploy("v2")).await;
    assert_eq!(status, 201);
    let (item, _) = stream.item(SOON).await.expect("an item stored elsewhere arrives");
    assert_eq!(item["id"], v2["id"], "the alert was filtered out");

    // Disconnected after v1: v2 and what is stored meanwhile come on resuming, on another
    // server (a restart), each once and in order, then new ones.
    drop(stream);
    let (_, v3) = app.post("/v1/deploys", token, deploy("v3")).await;
    let (_, v4) = app.post("/v1/deploys", token, deploy("v4")).await;
    let (status, mut resumed) = Stream::open(&other, path, token, Some(&first_id)).await;
    assert_eq!(status, 200);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(resumed.item(SOON).await.expect("resumed").0["id"].clone());
    }
    assert_eq!(got, [v2["id"].clone(), v3["id"].clone(), v4["id"].clone()]);
    let (_, v5) = app.post("/v1/deploys", token, deploy("v5")).await;
    assert_eq!(resumed.item(SOON).await.expect("new after the resume").0["id"], v5["id"], "nothing twice");
    assert!(resumed.next(Duration::from_millis(700)).await.is_none(), "nothing more");

    // A Last-Event-ID this server never sent, another organisation, no token.
    let (status, _) = Stream::open(&app.base_url, path, token, Some("not-an-id")).await;
    assert_eq!(status, 400);
    let other_org = app.org("other").await;
    let (status, _) = Stream::open(&app.base_url, path, &other_org.admin_token, None).await;
    assert_eq!(status, 404);
    let (status, _) = Stream::open(&app.base_url, "/v1/timeline/stream?environment=production", "nope", None).await;
    assert_eq!(status, 401);
    // Several environments at once.
    let (status, mut merged) =
        Stream::open(&app.base_url, "/v1/timeline/stream?environment=production", token, None).await;
    assert_eq!(status, 200);
    let (_, v6) = app.post("/v1/deploys", token, deploy("v6")).await;
    assert_eq!(merged.item(SOON).await.expect("merged stream").0["id"], v6["id"]);
}

async fn post(base: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new().post(format!("{base}{path}")).bearer_auth(token).json(&body).send().await;
    let response = response.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The request timeout bounds how long a response takes to begin, not how long a stream lasts.
async fn a_stream_outlives_the_request_timeout(backend: Backend) {
    let settings = api::HttpSettings { request_timeout: Duration::from_secs(1), ..Default::default() };
    let aws = test_support::aws_access("http://127.0.0.1:9", None).await;
    let Some(app) = TestApp::spawn_with(backend, settings, aws).await else {
        return test_support::skipped("a_stream_outlives_the_request_timeout");
    };
    let token = app.org("acme").await.admin_token;
    app.post("/v1/environments", &token, json!({"name": "Production", "slug": "production"})).await;
    let (status, mut stream) =
        Stream::open(&app.base_url, "/v1/environments/production/timeline/stream", &token, None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, posted) = app.post("/v1/deploys", &token, deploy("v1")).await;
    assert_eq!(stream.item(SOON).await.expect("still streaming").0["id"], posted["id"]);
}
