//! Near-real-time CloudTrail through EventBridge: real records pushed as an API destination sends
//! them, on the timeline at once; the poll that returns the same events later adds nothing; every
//! push that does not prove itself or does not fit the connection is refused with nothing stored.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use test_support::Backend;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use worker::Importer;

use crate::importer::{setup, test_settings, Setup};

on_both_backends!(
    pushed_events_are_on_the_timeline_at_once_and_the_poll_adds_nothing,
    pushes_that_do_not_prove_or_fit_the_connection_are_refused_with_nothing_stored,
    the_setup_documents_create_the_api_destination_and_forward_other_regions,
);

const ACCOUNT: &str = "222222222222";
const HEADER: &str = "X-Changetrail-Push-Secret";

macro_rules! setup_or_skip {
    ($backend:expr, $test:expr) => {
        match setup($backend).await {
            Some(s) => s,
            None => return test_support::skipped($test),
        }
    };
}

/// Real write records of the data set, as changes in `ACCOUNT`'s us-east-1, the newest a minute
/// old, one second apart.
pub(crate) fn recent_changes(count: usize, skip: usize) -> Vec<Value> {
    let now = OffsetDateTime::now_utc();
    test_support::cloudtrail_records("invictus-aws-dataset")
        .into_iter()
        .filter(|r| r["readOnly"] == json!(false) && r["eventID"].is_string())
        .skip(skip)
        .take(count)
        .enumerate()
        .map(|(i, mut r)| {
            let at = now - time::Duration::minutes(1) - time::Duration::seconds(i as i64);
            r["eventTime"] = json!(at.format(&Rfc3339).unwrap());
            r["recipientAccountId"] = json!(ACCOUNT);
            r["awsRegion"] = json!("us-east-1");
            r
        })
        .collect()
}

/// The event an API destination posts for a record.
pub(crate) fn envelope(record: &Value) -> Value {
    let service = record["eventSource"].as_str().unwrap().trim_end_matches(".amazonaws.com");
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "AWS API Call via CloudTrail",
        "source": format!("aws.{service}"), "account": ACCOUNT, "time": record["eventTime"],
        "region": record["awsRegion"], "resources": [], "detail": record,
    })
}

pub(crate) async fn push(s: &Setup, connection: &str, secret: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut request = s
        .app
        .client
        .post(s.app.url(&format!("/hooks/eventbridge/{connection}")))
        .header("content-type", "application/json; charset=utf-8");
    if let Some(secret) = secret {
        request = request.header(HEADER, secret);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn push_secret(s: &Setup) -> Value {
    let (status, answer) = s.app.post(&format!("/v1/connections/{}/push", s.connection_id), &s.token, json!({})).await;
    assert_eq!(status, 201, "{answer}");
    answer
}

async fn timeline(s: &Setup) -> Vec<Value> {
    let since = (OffsetDateTime::now_utc() - time::Duration::hours(1)).format(&Rfc3339).unwrap();
    let (status, page) =
        s.app.get(&format!("/v1/environments/production/timeline?limit=500&since={since}"), &s.token).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn pushed_events_are_on_the_timeline_at_once_and_the_poll_adds_nothing(backend: Backend) {
    let s = setup_or_skip!(backend, "pushed_events_are_on_the_timeline_at_once_and_the_poll_adds_nothing");
    let answer = push_secret(&s).await;
    let connection = s.connection_id.to_string();
    assert_eq!(answer["url"], s.app.url(&format!("/hooks/eventbridge/{connection}")));
    assert_eq!(answer["header_name"], HEADER);
    let secret = answer["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 43, "a secret of 256 bits: {secret}");
    let (_, shown) = s.app.get(&format!("/v1/connections/{connection}"), &s.token).await;
    assert!(!shown.to_string().contains(&secret), "the secret is never shown again");

    let pushed = recent_changes(40, 0);
    for record in &pushed {
        let before = OffsetDateTime::now_utc();
        let (status, answer) = push(&s, &connection, Some(&secret), envelope(record).to_string().into_bytes()).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("stored")), "{answer}");
        // Right after the 2xx, the item is on the environment's timeline.
        let item_id = answer["item_id"].as_str().unwrap();
        let (status, item) = s.app.get(&format!("/v1/events/{item_id}"), &s.token).await;
        assert_eq!(status, 200);
        assert_eq!(item["details"]["event_id"], record["eventID"]);
        assert_eq!(item["environments"], json!(["production"]), "linked by the connection's rules");
        assert_eq!(item["ingested_via"], "push");
        let ingested = OffsetDateTime::parse(item["ingested_at"].as_str().unwrap(), &Rfc3339).unwrap();
        assert!(ingested >= before - time::Duration::seconds(1), "stored by this push: {ingested} vs {before}");
    }
    let on_timeline: BTreeSet<String> =
        timeline(&s).await.iter().map(|i| i["details"]["event_id"].as_str().unwrap().to_owned()).collect();
    let pushed_ids: BTreeSet<String> = pushed.iter().map(|r| r["eventID"].as_str().unwrap().to_owned()).collect();
    assert_eq!(on_timeline, pushed_ids);

    // EventBridge retries: the same event again stores nothing new.
    let (status, again) = push(&s, &connection, Some(&secret), envelope(&pushed[0]).to_string().into_bytes()).await;
    assert_eq!((status, again["status"].as_str()), (200, Some("already_stored")), "{again}");

    // Later the poll returns the same events, and some the push never brought (best effort).
    let missed = recent_changes(10, 40);
    let mut all = pushed.clone();
    all.extend(missed.iter().cloned());
    let newest = all.iter().filter_map(test_support::record_time).max().unwrap();
    let expected = test_support::seed(&s.standin.standin, ACCOUNT, "us-east-1", &all, newest, |_| time::Duration::ZERO);
    let importer = Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings());
    importer.run_due_jobs_once().await;
    let stored = test_support::stored_source_keys(&s.app.db.url, s.org_id).await;
    assert_eq!(stored, expected, "each event once, whichever path brought it first");
    let items = timeline(&s).await;
    assert_eq!(items.len(), 50);
    for item in &items {
        let id = item["details"]["event_id"].as_str().unwrap();
        let via = if pushed_ids.contains(id) { "push" } else { "poll" };
        assert_eq!(item["ingested_via"], via, "{id}");
    }
    let (_, imports) = s.app.get(&format!("/v1/connections/{connection}/imports"), &s.token).await;
    assert_eq!(imports["items"][0]["events_imported"], 10, "the poll stored only what the push missed");
    assert_eq!(imports["push"]["enabled"], true);
    assert_eq!(imports["push"]["events_last_hour"], 40, "{imports}");
    assert!(imports["push"]["last_received_at"].is_string());

    let metrics = s.app.client.get(s.app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let counter = |outcome: &str| {
        let prefix = format!("changetrail_push_events_total{{connection=\"{connection}\",outcome=\"{outcome}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    };
    assert_eq!(counter("received").as_deref(), Some("41"), "{metrics}");
    assert_eq!(counter("stored").as_deref(), Some("40"));
    assert_eq!(counter("duplicate").as_deref(), Some("1"));
    assert!(metrics.contains("changetrail_ingest_delay_seconds_bucket{via=\"push\""), "freshness per path");
    assert!(metrics.contains("changetrail_ingest_delay_seconds_bucket{via=\"poll\""));
}

async fn pushes_that_do_not_prove_or_fit_the_connection_are_refused_with_nothing_stored(backend: Backend) {
    let s = setup_or_skip!(backend, "pushes_that_do_not_prove_or_fit_the_connection_are_refused_with_nothing_stored");
    let connection = s.connection_id.to_string();
    let record = recent_changes(1, 0).remove(0);
    let good = envelope(&record).to_string().into_bytes();

    // No push secret yet: nobody can push.
    let (status, p) = push(&s, &connection, Some("anything"), good.clone()).await;
    assert_eq!((status, p["code"].as_str()), (401, Some("invalid_push_secret")), "{p}");

    let first = push_secret(&s).await["secret"].as_str().unwrap().to_owned();
    for (secret, target) in [
        (None, connection.clone()),
        (Some("wrong"), connection.clone()),
        (Some(first.as_str()), uuid::Uuid::now_v7().to_string()),
        (Some(first.as_str()), "not-a-uuid".to_owned()),
    ] {
        let (status, p) = push(&s, &target, secret, good.clone()).await;
        assert_eq!((status, p["code"].as_str()), (401, Some("invalid_push_secret")), "{secret:?} {target}: {p}");
        assert_eq!(p["status"], 401);
    }

    let refusals: Vec<(&str, Value, &str)> = vec![
        (
            "another account",
            {
                let mut e = envelope(&record);
                e["account"] = json!("333333333333");
                e
            },
            "account",
        ),
        (
            "another region",
            {
                let mut r = record.clone();
                r["awsRegion"] = json!("eu-west-1");
                envelope(&r)
            },
            "region",
        ),
        (
            "an unknown detail-type",
            {
                let mut e = envelope(&record);
                e["detail-type"] = json!("EC2 Instance State-change Notification");
                e
            },
            "detail-type",
        ),
        (
            "no detail",
            {
                let mut e = envelope(&record);
                e.as_object_mut().unwrap().remove("detail");
                e
            },
            "detail",
        ),
        (
            "a record without its id",
            {
                let mut e = envelope(&record);
                e["detail"].as_object_mut().unwrap().remove("eventID");
                e
            },
            "detail.eventID",
        ),
        ("not an object", json!(["an", "array"]), "body"),
    ];
    for (what, body, field) in refusals {
        let (status, p) = push(&s, &connection, Some(&first), body.to_string().into_bytes()).await;
        assert_eq!(status, 422, "{what}: {p}");
        let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&field), "{what}: {p}");
    }
    let (status, p) = push(&s, &connection, Some(&first), b"{\"detail-type\": ".to_vec()).await;
    assert_eq!((status, p["code"].as_str()), (400, Some("malformed_json")), "{p}");
    // EventBridge matches no event over 256 KB.
    let mut huge = envelope(&record);
    huge["detail"]["requestParameters"] = json!({"padding": "x".repeat(300 * 1024)});
    let (status, p) = push(&s, &connection, Some(&first), huge.to_string().into_bytes()).await;
    assert_eq!(status, 413, "{p}");
    let mut read_only = record.clone();
    read_only["readOnly"] = json!(true);
    read_only["eventID"] = json!(uuid::Uuid::new_v4().to_string());
    let (status, p) = push(&s, &connection, Some(&first), envelope(&read_only).to_string().into_bytes()).await;
    assert_eq!((status, p["status"].as_str()), (202, Some("ignored")), "the connection keeps changes only: {p}");
    // The connection's event filter applies to pushes too, and counts what it drops.
    let path = format!("/v1/connections/{connection}");
    let filter = json!({"event_filter": {"exclude_event_names": [record["eventName"]]}});
    assert_eq!(s.app.call("PATCH", &path, Some(&s.token), Some(filter)).await.0, 200);
    let (status, p) = push(&s, &connection, Some(&first), envelope(&record).to_string().into_bytes()).await;
    assert_eq!((status, p["status"].as_str()), (202, Some("ignored")), "the filter drops it: {p}");
    assert_eq!(s.app.get(&path, &s.token).await.1["events_excluded"], 1);
    let keep_all = json!({"event_filter": {"exclude_session_noise": false}});
    assert_eq!(s.app.call("PATCH", &path, Some(&s.token), Some(keep_all)).await.0, 200);
    assert!(test_support::stored_source_keys(&s.app.db.url, s.org_id).await.is_empty(), "nothing of any of them");

    // Rotation: the old secret stops working at once, the new one works.
    let second = push_secret(&s).await["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(push(&s, &connection, Some(&first), good.clone()).await.0, 401);
    let (status, p) = push(&s, &connection, Some(&second), good.clone()).await;
    assert_eq!((status, p["status"].as_str()), (200, Some("stored")), "{p}");
    assert_eq!(test_support::stored_source_keys(&s.app.db.url, s.org_id).await, [record["eventID"].as_str().unwrap()]);

    // A connection without a working role accepts nothing, even with its secret.
    let (_, pending) = s
        .app
        .post(
            "/v1/connections",
            &s.token,
            json!({"name": "later", "regions": ["eu-west-1"], "default_environment": "production"}),
        )
        .await;
    let pending_id = pending["id"].as_str().unwrap();
    let (status, answer) = s.app.post(&format!("/v1/connections/{pending_id}/push"), &s.token, json!({})).await;
    assert_eq!(status, 201, "a secret can be made before the role, so the setup is done in one go: {answer}");
    let (status, p) = push(&s, pending_id, answer["secret"].as_str(), good).await;
    assert_eq!((status, p["code"].as_str()), (409, Some("not_active")), "{p}");
}

async fn the_setup_documents_create_the_api_destination_and_forward_other_regions(backend: Backend) {
    let s = setup_or_skip!(backend, "the_setup_documents_create_the_api_destination_and_forward_other_regions");
    let path = format!("/v1/connections/{}", s.connection_id);
    let (status, p) = s
        .app
        .call("PATCH", &path, Some(&s.token), Some(json!({"regions": ["us-east-1", "eu-west-1", "ap-south-1"]})))
        .await;
    assert_eq!(status, 200, "{p}");
    let (status, setup) = s.app.get(&format!("{path}/setup"), &s.token).await;
    assert_eq!(status, 200, "{setup}");
    let url = s.app.url(&format!("/hooks/eventbridge/{}", s.connection_id));

    let template = setup["eventbridge_cloudformation"].as_str().unwrap();
    assert!(!template.contains("CHANGETRAIL_"), "every placeholder is filled in");
    assert!(template.contains(&format!("Default: {url}")));
    assert!(template.contains("Default: us-east-1"), "the first region is the home region");
    assert!(template.contains(&format!("ApiKeyName: {HEADER}")));
    assert!(template.contains("NoEcho: true"));
    for resource in ["AWS::Events::Connection", "AWS::Events::ApiDestination", "AWS::SQS::Queue", "AWS::Events::Rule"] {
        assert!(template.contains(resource), "{resource}");
    }
    assert!(template.contains("State: !If [WithReadOnly, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS, ENABLED]"));
    assert!(template.contains("Default: \"false\""), "changes only, as the connection");
    crate::setup_tools::cfn_lint(template);

    let terraform = setup["eventbridge_terraform"].as_str().unwrap();
    assert!(!terraform.contains("CHANGETRAIL_"));
    let body: hcl::Body = hcl::from_str(terraform).expect("the Terraform configuration parses as HCL");
    let rules: Vec<String> = body
        .blocks()
        .filter(|b| b.identifier() == "resource" && b.labels()[0].as_str() == "aws_cloudwatch_event_rule")
        .map(|b| b.labels()[1].as_str().to_owned())
        .collect();
    assert_eq!(rules, ["changetrail", "changetrail_eu_west_1", "changetrail_ap_south_1"]);
    assert!(body.blocks().any(|b| b.identifier() == "variable"
        && b.labels()[0].as_str() == "push_secret"
        && hcl::to_string(b).unwrap().contains("sensitive")));
    assert!(terraform.contains(&url));
}
