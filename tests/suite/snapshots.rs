//! Snapshots (insta) of what clients read: the OpenAPI document and two representative answers.
//! A change to any of them shows up as a reviewable diff (`cargo insta review`, or the `.snap.new`
//! file insta writes beside the snapshot); CI fails until the snapshot is accepted.

use domain::cloudtrail::{normalize, RecordContext};
use serde_json::json;
use test_support::Backend;

#[test]
fn the_openapi_document() {
    let document = serde_json::to_value(api::openapi_document()).unwrap();
    insta::assert_json_snapshot!("openapi_document", document);
}

/// A real CloudTrail record (invictus-ir/aws_dataset, MIT) as `GET /v1/events/{id}` shows it: the
/// title, the typed details and the original record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudtrail_event_in_full() {
    let app = test_support::TestApp::spawn(Backend::Sqlite).await.expect("SQLite always runs");
    let org = app.org("acme").await;
    let record = test_support::cloudtrail_records("invictus-aws-dataset")
        .into_iter()
        .find(|r| r["eventName"] == "AuthorizeSecurityGroupIngress")
        .expect("the data set has a security group change");
    let connection = uuid::Uuid::nil();
    let context = RecordContext {
        connection_id: connection,
        account_id: "000000000000",
        region: record["awsRegion"].as_str().unwrap(),
        fallback_time: domain::time_util::now(),
    };
    let mut event = normalize(&record, &context).event;
    event.connection_id = None;
    let (id, _) = app.db.store.upsert_event(org.id, &event).await.unwrap();
    let (status, body) = app.get(&format!("/v1/events/{id}"), &org.admin_token).await;
    assert_eq!(status, 200, "{body}");
    insta::assert_json_snapshot!("cloudtrail_event_in_full", body, { ".id" => "[id]", ".ingested_at" => "[time]" });
}

/// A deploy with several invalid fields: one problem document naming each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_problem() {
    let app = test_support::TestApp::spawn(Backend::Sqlite).await.expect("SQLite always runs");
    let org = app.org("acme").await;
    let body = json!({"environment": "Not A Slug", "service": "", "version": "v1", "status": "done",
                      "started_at": "2026-11-20T14:03:00Z", "url": "ftp://example.com"});
    let (status, problem) = app.post("/v1/deploys", &org.admin_token, body).await;
    assert_eq!(status, 422);
    insta::assert_json_snapshot!("deploy_validation_problem", problem);
}
