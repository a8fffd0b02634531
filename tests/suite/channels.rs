//! CloudTrail Lake-compatible channels, driven by AWS's own Rust SDK client for cloudtrail-data
//! (`aws-sdk-cloudtraildata`), pointed at the server and signing with the channel's keys:
//! whole batches, mixed batches, and every refusal AWS would answer.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudtraildata::error::ProvideErrorMetadata;
use aws_sdk_cloudtraildata::types::AuditEvent;
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;
use test_support::{Backend, TestApp};

on_both_backends!(
    an_sdk_client_puts_100_events_onto_the_timeline_once,
    a_mixed_batch_fails_only_its_bad_events,
    calls_that_do_not_prove_or_fit_a_channel_are_refused_as_aws_would,
);

struct Channel {
    arn: String,
    id: String,
    key: String,
    secret: String,
}

async fn channel(app: &TestApp, token: &str, body: Value) -> Channel {
    let (status, c) = app.post("/v1/channels", token, body).await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["endpoint"], app.base_url);
    Channel {
        arn: c["channel_arn"].as_str().unwrap().to_owned(),
        id: c["id"].as_str().unwrap().to_owned(),
        key: c["access_key_id"].as_str().unwrap().to_owned(),
        secret: c["secret_access_key"].as_str().unwrap().to_owned(),
    }
}

/// The SDK's client for the server, signing as `key`/`secret` at `clock` (now when `None`).
fn client(app: &TestApp, key: &str, secret: &str, clock: Option<SystemTime>) -> aws_sdk_cloudtraildata::Client {
    let mut config = aws_sdk_cloudtraildata::Config::builder()
        .behavior_version(aws_sdk_cloudtraildata::config::BehaviorVersion::latest())
        .endpoint_url(&app.base_url)
        .region(aws_sdk_cloudtraildata::config::Region::new("eu-west-1"))
        .credentials_provider(aws_credential_types::Credentials::new(key, secret, None, None, "test"))
        .retry_config(aws_sdk_cloudtraildata::config::retry::RetryConfig::disabled());
    if let Some(at) = clock {
        config = config.time_source(aws_smithy_async::time::StaticTimeSource::new(at));
    }
    aws_sdk_cloudtraildata::Client::from_conf(config.build())
}

/// An event in the integrations schema, as an identity provider's integration sends one.
fn event_data(uid: &str, name: &str) -> Value {
    json!({
        "version": "1.0",
        "userIdentity": {"type": "User", "principalId": "00u1abcd", "details": {"name": "alice@example.com"}},
        "userAgent": "okta-integration/2.1", "eventSource": "okta.example.com", "eventName": name,
        "eventTime": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
        "UID": uid, "requestParameters": {"groupName": "admins"}, "recipientAccountId": "123456789012",
        "sourceIPAddress": "203.0.113.7"
    })
}

fn audit(id: &str, data: &Value) -> AuditEvent {
    AuditEvent::builder().id(id).event_data(data.to_string()).build().unwrap()
}

async fn items(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, page) = app.get("/v1/environments/identity/timeline?kind=custom&limit=500", token).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn an_sdk_client_puts_100_events_onto_the_timeline_once(backend: Backend) {
    let app = app_or_skip!(backend, "an_sdk_client_puts_100_events_onto_the_timeline_once");
    let org = app.org("acme").await;
    app.post("/v1/environments", &org.admin_token, json!({"name": "identity"})).await;
    let c =
        channel(&app, &org.admin_token, json!({"name": "Okta", "source": "okta", "environments": ["identity"]})).await;
    let sdk = client(&app, &c.key, &c.secret, None);

    let batch: Vec<AuditEvent> =
        (0..100).map(|i| audit(&format!("e{i}"), &event_data(&format!("uid-{i}"), "AddUserToGroup"))).collect();
    let answer = sdk.put_audit_events().channel_arn(&c.arn).set_audit_events(Some(batch.clone())).send().await.unwrap();
    assert_eq!(answer.successful().len(), 100, "{answer:?}");
    assert!(answer.failed().is_empty());
    let on_timeline = items(&app, &org.admin_token).await;
    assert_eq!(on_timeline.len(), 100);
    let first = on_timeline.iter().find(|i| i["id"] == answer.successful()[0].event_id()).expect("eventID is the item");
    assert_eq!(first["source"], "okta.example.com");
    assert_eq!(first["actor"], "alice@example.com");
    assert_eq!(first["ingested_via"], "channel");
    assert_eq!(first["title"], "alice@example.com added user to group admins (okta.example.com)");
    let (_, full) = app.get(&format!("/v1/events/{}", first["id"].as_str().unwrap()), &org.admin_token).await;
    assert_eq!(full["original"]["UID"], "uid-0", "the whole eventData is the original record: {full}");

    // The integration retries the whole batch (new request ids, the same UIDs): nothing doubles.
    let again: Vec<AuditEvent> =
        (0..100).map(|i| audit(&format!("retry-{i}"), &event_data(&format!("uid-{i}"), "AddUserToGroup"))).collect();
    let answer2 = sdk.put_audit_events().channel_arn(&c.arn).set_audit_events(Some(again)).send().await.unwrap();
    assert_eq!(answer2.successful().len(), 100);
    assert_eq!(answer2.successful()[0].event_id(), answer.successful()[0].event_id(), "the same item");
    assert_eq!(items(&app, &org.admin_token).await.len(), 100);

    let (_, shown) = app.get(&format!("/v1/channels/{}", c.id), &org.admin_token).await;
    assert_eq!(shown["accepted"], 200, "{shown}");
    assert!(shown["last_event_at"].is_string());
    // The list reads every channel's tallies at once, each its own.
    let quiet =
        channel(&app, &org.admin_token, json!({"name": "quiet", "source": "x", "environments": ["identity"]})).await;
    let (_, list) = app.get("/v1/channels", &org.admin_token).await;
    let listed = |id: &str| list["items"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone();
    assert_eq!(listed(&c.id)["accepted"], 200, "{list}");
    assert_eq!(listed(&quiet.id)["accepted"], 0, "{list}");
    assert!(listed(&quiet.id)["last_event_at"].is_null(), "{list}");
    assert!(!shown.to_string().contains(&c.secret), "the secret is never shown again");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = format!("changetrail_channel_events_total{{channel=\"{}\",outcome=\"accepted\"}} 200", c.id);
    assert!(metrics.contains(&line), "{line}");
}

async fn a_mixed_batch_fails_only_its_bad_events(backend: Backend) {
    let app = app_or_skip!(backend, "a_mixed_batch_fails_only_its_bad_events");
    let org = app.org("acme").await;
    app.post("/v1/environments", &org.admin_token, json!({"name": "identity"})).await;
    let c =
        channel(&app, &org.admin_token, json!({"name": "Okta", "source": "okta", "environments": ["identity"]})).await;
    let sdk = client(&app, &c.key, &c.secret, None);

    let good = event_data("good", "DeleteGroup");
    let checksum = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(good.to_string().as_bytes()));
    let mut no_uid = event_data("x", "DeleteGroup");
    no_uid.as_object_mut().unwrap().remove("UID");
    let mut long_name = event_data("long", "DeleteGroup");
    long_name["eventName"] = json!("x".repeat(5000));
    let batch = vec![
        AuditEvent::builder().id("good").event_data(good.to_string()).event_data_checksum(checksum).build().unwrap(),
        AuditEvent::builder()
            .id("tampered")
            .event_data(event_data("tampered", "DeleteGroup").to_string())
            .event_data_checksum("bm90IHRoZSBzdW0=")
            .build()
            .unwrap(),
        audit("no-uid", &no_uid),
        audit("long-name", &long_name),
        AuditEvent::builder().id("not-json").event_data("{\"version\": ").build().unwrap(),
        audit("also-good", &event_data("also-good", "CreateGroup")),
    ];
    let answer = sdk.put_audit_events().channel_arn(&c.arn).set_audit_events(Some(batch)).send().await.unwrap();
    let mut ok: Vec<&str> = answer.successful().iter().map(|s| s.id()).collect();
    ok.sort();
    assert_eq!(ok, ["also-good", "good"]);
    let failed: Vec<(&str, &str)> = answer.failed().iter().map(|f| (f.id(), f.error_code())).collect();
    assert_eq!(
        failed,
        [
            ("tampered", "InvalidChecksum"),
            ("no-uid", "FieldNotFound"),
            ("long-name", "FieldTooLong"),
            ("not-json", "InvalidData")
        ]
    );
    assert!(answer.failed().iter().all(|f| !f.error_message().is_empty()));
    assert_eq!(items(&app, &org.admin_token).await.len(), 2);
    let (_, shown) = app.get(&format!("/v1/channels/{}", c.id), &org.admin_token).await;
    assert_eq!(shown["accepted"], 2);
    assert_eq!(shown["failed"], json!({"FieldNotFound": 1, "FieldTooLong": 1, "InvalidChecksum": 1, "InvalidData": 1}));
}

async fn calls_that_do_not_prove_or_fit_a_channel_are_refused_as_aws_would(backend: Backend) {
    let app = app_or_skip!(backend, "calls_that_do_not_prove_or_fit_a_channel_are_refused_as_aws_would");
    let org = app.org("acme").await;
    app.post("/v1/environments", &org.admin_token, json!({"name": "identity"})).await;
    let c = channel(
        &app,
        &org.admin_token,
        json!({"name": "Okta", "source": "okta", "environments": ["identity"], "external_id": "acme-okta-7f3a"}),
    )
    .await;
    let other = app.org("globex").await;
    app.post("/v1/environments", &other.admin_token, json!({"name": "identity"})).await;
    let theirs =
        channel(&app, &other.admin_token, json!({"name": "x", "source": "x", "environments": ["identity"]})).await;
    let one = vec![audit("e1", &event_data("u1", "DeleteGroup"))];
    let sdk = client(&app, &c.key, &c.secret, None);

    let code = |r: Result<_, aws_sdk_cloudtraildata::error::SdkError<_, _>>| -> String {
        let e: aws_sdk_cloudtraildata::error::SdkError<
            aws_sdk_cloudtraildata::operation::put_audit_events::PutAuditEventsError,
            _,
        > = r.map(|_: aws_sdk_cloudtraildata::operation::put_audit_events::PutAuditEventsOutput| ()).unwrap_err();
        e.code().unwrap_or("no code").to_owned()
    };
    let put = |sdk: &aws_sdk_cloudtraildata::Client, arn: &str, external: Option<&str>, events: Vec<AuditEvent>| {
        sdk.put_audit_events()
            .channel_arn(arn)
            .set_external_id(external.map(str::to_owned))
            .set_audit_events(Some(events))
            .send()
    };
    let ext = Some("acme-okta-7f3a");
    assert_eq!(code(put(&sdk, &c.arn, None, one.clone()).await), "ChannelInsufficientPermission", "no external ID");
    assert_eq!(code(put(&sdk, &c.arn, Some("guess"), one.clone()).await), "ChannelInsufficientPermission");
    let dup = vec![audit("same", &event_data("a", "X")), audit("same", &event_data("b", "X"))];
    assert_eq!(code(put(&sdk, &c.arn, ext, dup).await), "DuplicatedAuditEventId");
    let many: Vec<_> = (0..101).map(|i| audit(&format!("e{i}"), &event_data(&format!("m{i}"), "X"))).collect();
    assert_eq!(code(put(&sdk, &c.arn, ext, many).await), "ValidationException");
    let mut big = event_data("big", "X");
    big["requestParameters"] = json!({"padding": "x".repeat(200 * 1024)});
    let huge: Vec<_> = (0..6).map(|i| audit(&format!("b{i}"), &big)).collect();
    assert_eq!(code(put(&sdk, &c.arn, ext, huge).await), "ValidationException", "over 1 MB");
    let missing = domain::channel::channel_arn(uuid::Uuid::now_v7());
    assert_eq!(code(put(&sdk, &missing, ext, one.clone()).await), "ChannelNotFound");
    assert_eq!(
        code(put(&sdk, &theirs.arn, ext, one.clone()).await),
        "ChannelNotFound",
        "another organisation's channel"
    );
    assert_eq!(code(put(&sdk, "not-an-arn", ext, one.clone()).await), "InvalidChannelARN");
    let their_sdk = client(&app, &theirs.key, &theirs.secret, None);
    assert_eq!(code(put(&their_sdk, &c.arn, ext, one.clone()).await), "ChannelNotFound", "their key on our channel");
    let forged = client(&app, &c.key, "a-secret-that-is-not-the-channels-own-key", None);
    assert_eq!(code(put(&forged, &c.arn, ext, one.clone()).await), "InvalidSignatureException");
    let unknown = client(&app, "CTCHAAAAAAAAAAAAAAAA", &c.secret, None);
    assert_eq!(code(put(&unknown, &c.arn, ext, one.clone()).await), "UnrecognizedClientException");
    let stale = client(&app, &c.key, &c.secret, Some(SystemTime::now() - Duration::from_secs(16 * 60)));
    let expired = put(&stale, &c.arn, ext, one.clone()).await.unwrap_err();
    assert_eq!(expired.code(), Some("InvalidSignatureException"));
    assert!(expired.message().unwrap_or_default().contains("expired"), "{expired:?}");
    let within = client(&app, &c.key, &c.secret, Some(SystemTime::now() - Duration::from_secs(10 * 60)));
    let (status, p) = app.call("POST", &format!("/PutAuditEvents?channelArn={}", c.arn), None, Some(json!({}))).await;
    assert_eq!((status, p["message"].as_str()), (403, Some("Missing Authentication Token")), "unsigned: {p}");
    assert!(items(&app, &org.admin_token).await.is_empty(), "nothing stored by any refused call");

    // Within the 15 minutes, with the external ID: accepted.
    let answer = put(&within, &c.arn, ext, one).await.unwrap();
    assert_eq!(answer.successful().len(), 1, "{answer:?}");
    let (_, shown) = app.get(&format!("/v1/channels/{}", theirs.id), &other.admin_token).await;
    assert_eq!(shown["accepted"], 0, "nothing reached the other organisation's channel");
}
