//! GitHub and PagerDuty webhooks: sources as a resource, and real deliveries signed as the
//! providers sign them (GitHub's sample payloads from `../shared/data/webhooks/github/`,
//! PagerDuty v3 bodies built as its documentation describes), end to end through HTTP.

use serde_json::{json, Value};
use test_support::{github_signature, hmac_hex, Backend, TestApp};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

on_both_backends!(
    sources_keep_their_secrets_to_themselves,
    github_deliveries_become_items_only_when_signed,
    a_deployment_is_one_deploy_updated_by_its_statuses,
    bodies_up_to_25_mb_are_accepted,
    pagerduty_incidents_are_one_alert_each_whatever_the_rotation,
    suspects_of_a_paged_alert_are_the_merged_pr_and_its_deploy,
);

fn payload(path: &str) -> Value {
    let file = test_support::shared_dir().join("data/webhooks/github").join(path);
    serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))).unwrap()
}

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// `closed.payload.json` is of a PR closed without merging; this is the same PR merged.
fn merged_pull_request(merged_at: OffsetDateTime) -> Value {
    let mut p = payload("pull_request/closed.payload.json");
    p["pull_request"]["merged"] = json!(true);
    p["pull_request"]["merged_at"] = json!(at(merged_at));
    p["pull_request"]["merged_by"] = json!({"login": "alice", "id": 1, "type": "User"});
    p
}

async fn github_source(app: &TestApp, token: &str, body: Value) -> (String, String) {
    let (status, created) = app.post("/v1/sources", token, body).await;
    assert_eq!(status, 201, "{created}");
    (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap_or("").to_owned())
}

/// Sends a GitHub delivery; `signature` None signs it with `secret`.
async fn deliver_github(
    app: &TestApp,
    source_id: &str,
    secret: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(&format!("/hooks/github/{source_id}")))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", github_signature(secret, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn deliver_pagerduty(app: &TestApp, source_id: &str, signature: &str, id: &str, body: &[u8]) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(&format!("/hooks/pagerduty/{source_id}")))
        .header("content-type", "application/json")
        .header("x-webhook-id", id)
        .header("x-pagerduty-signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn timeline(app: &TestApp, token: &str, env: &str) -> Vec<Value> {
    let path = format!("/v1/environments/{env}/timeline?since=2000-01-01T00:00:00Z&limit=500");
    let (status, page) = app.get(&path, token).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn sources_keep_their_secrets_to_themselves(backend: Backend) {
    let app = app_or_skip!(backend, "sources_keep_their_secrets_to_themselves");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "production"})).await;
    let (status, created) = app
        .post(
            "/v1/sources",
            t,
            json!({"kind": "github", "name": "shop", "environments": ["production"],
        "service_map": {"acme/shop": "checkout-api"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().expect("a generated secret, shown once");
    assert!(secret.len() >= 32);
    assert_eq!(created["ingest_url"], format!("{}/hooks/github/{id}", app.base_url));
    let (_, shown) = app.get(&format!("/v1/sources/{id}"), t).await;
    assert!(!shown.to_string().contains(secret), "never returned again: {shown}");
    assert_eq!(shown["secrets"], 1);
    let (_, list) = app.get("/v1/sources", t).await;
    assert!(!list.to_string().contains(secret));
    let stored = test_support::stored_sources(&app.db.url).await;
    assert!(stored.contains("v1:") && !stored.contains(secret), "stored sealed, not in the clear: {stored}");

    let (status, p) = app.post("/v1/sources", t, json!({"kind": "pagerduty", "name": "pd"})).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("secret")), "PagerDuty's secret is given: {p}");
    let (status, p) =
        app.post("/v1/sources", t, json!({"kind": "github", "name": "x", "environments": ["staging"]})).await;
    assert_eq!(status, 422, "environments must exist: {p}");
    let (status, p) = app.post("/v1/sources", t, json!({"kind": "gitlab", "name": "x"})).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("kind")), "{p}");

    let (status, patched) =
        app.call("PATCH", &format!("/v1/sources/{id}"), Some(t), Some(json!({"name": "shop (main)"}))).await;
    assert_eq!((status, patched["name"].as_str(), patched["secrets"].as_i64()), (200, Some("shop (main)"), Some(1)));
    assert_eq!(app.call("DELETE", &format!("/v1/sources/{id}"), Some(t), None).await.0, 204);
    assert_eq!(app.get(&format!("/v1/sources/{id}"), t).await.0, 404);
    let (status, _) = deliver_github(&app, id, secret, "ping", "d-1", b"{}").await;
    assert_eq!(status, 401, "a deleted source's URL stops working");
}

async fn github_deliveries_become_items_only_when_signed(backend: Backend) {
    let app = app_or_skip!(backend, "github_deliveries_become_items_only_when_signed");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "production"})).await;
    let (id, secret) = github_source(
        &app,
        t,
        json!({"kind": "github", "name": "hello", "environments": ["production"],
        "service_map": {"Codertocat/Hello-World": "hello-api"}}),
    )
    .await;

    let ping = serde_json::to_vec(&payload("ping/payload.json")).unwrap();
    let (status, answer) = deliver_github(&app, &id, &secret, "ping", "ping-1", &ping).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("ignored")), "{answer}");

    let unmerged = serde_json::to_vec(&payload("pull_request/closed.payload.json")).unwrap();
    let (status, _) = deliver_github(&app, &id, &secret, "pull_request", "pr-closed", &unmerged).await;
    assert_eq!(status, 202, "closed without merging: nothing");
    let opened = serde_json::to_vec(&payload("pull_request/opened.payload.json")).unwrap();
    assert_eq!(deliver_github(&app, &id, &secret, "pull_request", "pr-opened", &opened).await.0, 202);
    assert!(timeline(&app, t, "production").await.is_empty());

    let merged_at = OffsetDateTime::now_utc() - time::Duration::minutes(10);
    let merged = serde_json::to_vec(&merged_pull_request(merged_at)).unwrap();
    // Forged, missing, or signed with another secret: 401 and nothing stored or recorded.
    for signature in [None, Some(github_signature("not the secret at all", &merged)), Some("sha256=00".into())] {
        let mut request = app
            .client
            .post(app.url(&format!("/hooks/github/{id}")))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", "forged");
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        let response = request.body(merged.clone()).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
    }
    let mut tampered = merged.clone();
    tampered.extend_from_slice(b" ");
    let response = app
        .client
        .post(app.url(&format!("/hooks/github/{id}")))
        .header("x-github-event", "pull_request")
        .header("x-hub-signature-256", github_signature(&secret, &merged))
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401, "the signature covers the raw bytes");
    assert!(timeline(&app, t, "production").await.is_empty());

    let (status, answer) = deliver_github(&app, &id, &secret, "pull_request", "pr-merged", &merged).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("stored")), "{answer}");
    // GitHub's redelivery keeps the delivery id: still one item.
    assert_eq!(deliver_github(&app, &id, &secret, "pull_request", "pr-merged", &merged).await.0, 200);
    let items = timeline(&app, t, "production").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let pr = &items[0];
    assert_eq!(pr["kind"], "pull_request");
    assert_eq!(
        pr["title"],
        "alice merged #2 Update the README with new information. into master (Codertocat/Hello-World)"
    );
    assert_eq!(pr["links"][0]["href"], "https://github.com/Codertocat/Hello-World/pull/2");
    assert_eq!(pr["labels"]["service"], "hello-api");
    assert_eq!(pr["labels"]["labels"], "bug");

    let release = serde_json::to_vec(&payload("release/published.payload.json")).unwrap();
    let (status, answer) = deliver_github(&app, &id, &secret, "release", "release-1", &release).await;
    assert_eq!(status, 200, "{answer}");
    let (_, event) = app.get(&format!("/v1/events/{}", answer["item_id"].as_str().unwrap()), t).await;
    assert_eq!(
        (event["kind"].as_str(), event["title"].as_str()),
        (Some("deploy"), Some("Codertocat released hello-api 0.0.1"))
    );
    let push = serde_json::to_vec(&payload("push/payload.json")).unwrap();
    let (status, answer) = deliver_github(&app, &id, &secret, "push", "push-1", &push).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("ignored")));

    let (_, log) = app.get(&format!("/v1/sources/{id}/deliveries"), t).await;
    let outcomes: Vec<(String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["delivery_id"].as_str().unwrap().to_owned(), d["outcome"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(outcomes.len(), 6, "one row per delivery id, none for the forged ones: {outcomes:?}");
    assert!(outcomes.contains(&("pr-merged".into(), "stored".into())));
    assert!(outcomes.contains(&("pr-closed".into(), "ignored".into())));
    assert!(!outcomes.iter().any(|(d, _)| d == "forged"));
}

async fn a_deployment_is_one_deploy_updated_by_its_statuses(backend: Backend) {
    let app = app_or_skip!(backend, "a_deployment_is_one_deploy_updated_by_its_statuses");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "prod"})).await;
    app.post("/v1/environments", t, json!({"name": "fallback"})).await;
    let (id, secret) = github_source(
        &app,
        t,
        json!({"kind": "github", "name": "hello", "environments": ["fallback"],
        "environment_map": {"production": "prod"}}),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let mut deployment = payload("deployment/payload.json");
    deployment["deployment"]["created_at"] = json!(at(now - time::Duration::minutes(5)));
    let body = serde_json::to_vec(&deployment).unwrap();
    let (status, answer) = deliver_github(&app, &id, &secret, "deployment", "dep-1", &body).await;
    assert_eq!(status, 200, "{answer}");
    // The last delivery is a late retry of the first status: it must not set the deploy back.
    for (state, minutes_ago, delivery, expected) in
        [("in_progress", 3, "st-1", 200), ("success", 1, "st-2", 200), ("in_progress", 3, "st-1-retried", 202)]
    {
        let mut status_payload = payload("deployment_status/payload.json");
        status_payload["deployment"] = deployment["deployment"].clone();
        status_payload["deployment_status"]["state"] = json!(state);
        status_payload["deployment_status"]["created_at"] = json!(at(now - time::Duration::minutes(minutes_ago)));
        let body = serde_json::to_vec(&status_payload).unwrap();
        let (status, answer) = deliver_github(&app, &id, &secret, "deployment_status", delivery, &body).await;
        assert_eq!(status, expected, "{delivery}: {answer}");
    }
    let items = timeline(&app, t, "prod").await;
    assert_eq!(items.len(), 1, "one deploy per deployment: {items:?}");
    assert_eq!(items[0]["kind"], "deploy");
    assert_eq!(items[0]["title"], "Codertocat deployed Hello-World master", "{}", items[0]);
    assert!(timeline(&app, t, "fallback").await.is_empty(), "production maps to prod");
}

async fn bodies_up_to_25_mb_are_accepted(backend: Backend) {
    let app = app_or_skip!(backend, "bodies_up_to_25_mb_are_accepted");
    let org = app.org("acme").await;
    let (id, secret) = github_source(&app, &org.admin_token, json!({"kind": "github", "name": "big"})).await;
    let mut push = payload("push/payload.json");
    let padding = "x".repeat(20 * 1024 * 1024);
    push["padding"] = json!(padding);
    let body = serde_json::to_vec(&push).unwrap();
    let (status, answer) = deliver_github(&app, &id, &secret, "push", "big-1", &body).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("ignored")), "20 MB: read and verified");
    // 30 MB is past GitHub's own maximum: refused from the declared length, before the body is
    // read (only the head is sent, so the answer can only come from the declared length).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.base_url.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /hooks/github/{id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\n\
         X-Hub-Signature-256: sha256=00\r\nContent-Length: {}\r\n\r\n{{",
        30 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let (status, _) =
        app.post("/v1/environments", &org.admin_token, json!({"name": "x".repeat(2 * 1024 * 1024)})).await;
    assert_eq!(status, 413, "the rest of the API keeps its own limit");
}

fn incident(event_type: &str, status: &str, created_at: OffsetDateTime, occurred_at: OffsetDateTime) -> Vec<u8> {
    serde_json::to_vec(&json!({"event": {
        "id": format!("evt-{event_type}"), "event_type": event_type, "resource_type": "incident",
        "occurred_at": at(occurred_at), "agent": null, "client": null,
        "data": {"id": "PINC42", "type": "incident", "number": 42, "title": "Checkout 5xx above 2%", "status": status,
                 "urgency": "high", "priority": null, "html_url": "https://acme.pagerduty.com/incidents/PINC42",
                 "incident_key": "checkout-5xx", "created_at": at(created_at),
                 "service": {"id": "PSVC1", "summary": "Checkout"}, "teams": [], "assignees": [],
                 "escalation_policy": {"id": "PEP1"}}}}))
    .unwrap()
}

async fn pagerduty_incidents_are_one_alert_each_whatever_the_rotation(backend: Backend) {
    let app = app_or_skip!(backend, "pagerduty_incidents_are_one_alert_each_whatever_the_rotation");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "production"})).await;
    let old = "pd-signing-secret-old-0001";
    let (status, created) = app
        .post(
            "/v1/sources",
            t,
            json!({"kind": "pagerduty", "name": "pd", "secret": old,
        "environments": ["production"], "service_map": {"Checkout": "checkout-api"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("secret").is_none(), "a given secret is not echoed");
    let id = created["id"].as_str().unwrap().to_owned();
    let now = OffsetDateTime::now_utc();
    let started = now - time::Duration::minutes(3);

    let triggered = incident("incident.triggered", "triggered", started, started);
    let (status, answer) =
        deliver_pagerduty(&app, &id, &format!("v1={}", hmac_hex(old, &triggered)), "w-1", &triggered).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("stored")), "{answer}");
    let (status, _) = deliver_pagerduty(
        &app,
        &id,
        &format!("v1={}", hmac_hex("someone-else-1234567", &triggered)),
        "w-x",
        &triggered,
    )
    .await;
    assert_eq!(status, 401);

    // Rotation: both secrets current, PagerDuty signs with each.
    let new = "pd-signing-secret-new-0002";
    let (status, _) =
        app.call("PATCH", &format!("/v1/sources/{id}"), Some(t), Some(json!({"secrets": [old, new]}))).await;
    assert_eq!(status, 200);
    let acked = incident("incident.acknowledged", "acknowledged", started, now - time::Duration::minutes(2));
    let both = format!("v1={},v1={}", hmac_hex(old, &acked), hmac_hex(new, &acked));
    assert_eq!(deliver_pagerduty(&app, &id, &both, "w-2", &acked).await.0, 200);
    // The old secret retired: a delivery signed only with it is refused.
    app.call("PATCH", &format!("/v1/sources/{id}"), Some(t), Some(json!({"secrets": [new]}))).await;
    let resolved = incident("incident.resolved", "resolved", started, now - time::Duration::minutes(1));
    let (status, _) = deliver_pagerduty(&app, &id, &format!("v1={}", hmac_hex(old, &resolved)), "w-3", &resolved).await;
    assert_eq!(status, 401, "a stale secret");
    let signed = format!("v1={}", hmac_hex(new, &resolved));
    assert_eq!(deliver_pagerduty(&app, &id, &signed, "w-3", &resolved).await.0, 200);
    assert_eq!(deliver_pagerduty(&app, &id, &signed, "w-3", &resolved).await.0, 200, "a retry of w-3");
    let other = serde_json::to_vec(
        &json!({"event": {"id": "e", "event_type": "service.updated", "resource_type": "service", "data": {}}}),
    )
    .unwrap();
    let (status, answer) = deliver_pagerduty(&app, &id, &format!("v1={}", hmac_hex(new, &other)), "w-4", &other).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("ignored")));

    let items = timeline(&app, t, "production").await;
    assert_eq!(items.len(), 1, "one alert per incident: {items:?}");
    let alert = &items[0];
    assert_eq!(alert["kind"], "alert");
    assert_eq!(alert["title"], "critical alert (resolved): Checkout 5xx above 2%");
    assert_eq!(alert["labels"]["service"], "checkout-api");
    assert_eq!(alert["links"][0]["href"], "https://acme.pagerduty.com/incidents/PINC42");
}

/// The whole story: a PR merged, deployed, then PagerDuty pages; the alert's suspects are the
/// deploy and the PR, with their reasons.
async fn suspects_of_a_paged_alert_are_the_merged_pr_and_its_deploy(backend: Backend) {
    let app = app_or_skip!(backend, "suspects_of_a_paged_alert_are_the_merged_pr_and_its_deploy");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "production"})).await;
    let services = json!({"Codertocat/Hello-World": "checkout-api", "Checkout": "checkout-api"});
    let (gh, gh_secret) = github_source(
        &app,
        t,
        json!({"kind": "github", "name": "gh", "environments": ["production"],
        "service_map": services}),
    )
    .await;
    let pd_secret = "pd-signing-secret-e2e-0001";
    let (_, pd) = app
        .post(
            "/v1/sources",
            t,
            json!({"kind": "pagerduty", "name": "pd", "secret": pd_secret,
        "environments": ["production"], "service_map": services}),
        )
        .await;
    let pd = pd["id"].as_str().unwrap().to_owned();
    // An unrelated change long before, which ranks below both.
    app.post(
        "/v1/changes",
        t,
        json!({"environments": ["production"], "summary": "Rotated a log bucket key",
        "occurred_at": at(OffsetDateTime::now_utc() - time::Duration::minutes(100))}),
    )
    .await;

    let now = OffsetDateTime::now_utc();
    let merged = serde_json::to_vec(&merged_pull_request(now - time::Duration::minutes(12))).unwrap();
    assert_eq!(deliver_github(&app, &gh, &gh_secret, "pull_request", "e2e-pr", &merged).await.0, 200);
    let mut deployment = payload("deployment/payload.json");
    deployment["deployment"]["created_at"] = json!(at(now - time::Duration::minutes(8)));
    let mut success = payload("deployment_status/payload.json");
    success["deployment"] = deployment["deployment"].clone();
    success["deployment_status"]["created_at"] = json!(at(now - time::Duration::minutes(7)));
    let body = serde_json::to_vec(&success).unwrap();
    assert_eq!(deliver_github(&app, &gh, &gh_secret, "deployment_status", "e2e-dep", &body).await.0, 200);
    let triggered = incident("incident.triggered", "triggered", now - time::Duration::minutes(2), now);
    let (status, answer) =
        deliver_pagerduty(&app, &pd, &format!("v1={}", hmac_hex(pd_secret, &triggered)), "e2e-pd", &triggered).await;
    assert_eq!(status, 200, "{answer}");
    let alert_id = answer["item_id"].as_str().unwrap();

    let (status, suspects) = app.get(&format!("/v1/alerts/{alert_id}/suspects"), t).await;
    assert_eq!(status, 200, "{suspects}");
    let ranked: Vec<&str> =
        suspects["items"].as_array().unwrap().iter().map(|s| s["item"]["kind"].as_str().unwrap()).collect();
    assert_eq!(&ranked[..2], ["deploy", "pull_request"], "{suspects}");
    let reasons = suspects["items"][1]["reasons"].to_string();
    assert!(reasons.contains("PR #2 merged into master 10 minutes before"), "{reasons}");
    assert!(reasons.contains("same service as the alert (checkout-api)"), "{reasons}");
}
