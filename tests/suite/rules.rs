//! Rules that page, end to end: rules made through the API, the real CloudTrail records of
//! `../shared/data/cloudtrail/` stored through the store's write paths, the outbox delivered by
//! the worker's `Deliverer` to a PagerDuty stand-in that speaks Events API v2 (and answers 429,
//! then 500, before 202), and webhooks checked with the Standard Webhooks algorithm.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Json;
use base64::Engine;
use domain::cloudtrail::{normalize, RecordContext};
use domain::event::NewEvent;
use hmac::Mac;
use serde_json::{json, Value};
use test_support::{Backend, TestApp};
use uuid::Uuid;

on_both_backends!(
    matches_are_delivered_exactly_once_after_retries,
    every_write_path_matches_new_items_only,
    webhooks_are_signed_as_standard_webhooks_and_private_targets_refused
);

/// What the PagerDuty stand-in saw: attempts per dedup key, and what it accepted.
#[derive(Default)]
struct PagerDuty {
    attempts: Mutex<BTreeMap<String, Vec<u16>>>,
    accepted: Mutex<Vec<Value>>,
    changes: Mutex<Vec<Value>>,
}

/// PagerDuty's Events API v2 as documented: 202 for a valid event, 400 for an invalid one; this
/// one also answers each dedup key's first try 429 and its second 500.
async fn enqueue(State(pd): State<Arc<PagerDuty>>, Json(event): Json<Value>) -> (StatusCode, Json<Value>) {
    let valid = event["routing_key"].as_str().is_some_and(|k| k.len() >= 8 && k != "REFUSEDKEY0000")
        && event["event_action"] == "trigger"
        && event["payload"]["summary"].as_str().is_some_and(|s| !s.is_empty() && s.len() <= 1024)
        && event["payload"]["source"].as_str().is_some_and(|s| !s.is_empty())
        && ["critical", "error", "warning", "info"].contains(&event["payload"]["severity"].as_str().unwrap_or(""))
        && event["dedup_key"].as_str().is_some_and(|k| k.len() <= 255);
    let key = event["dedup_key"].as_str().unwrap_or("").to_owned();
    if !valid {
        pd.attempts.lock().unwrap().entry(key).or_default().push(400);
        let answer = json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["bad"]});
        return (StatusCode::BAD_REQUEST, Json(answer));
    }
    let status = {
        let mut attempts = pd.attempts.lock().unwrap();
        let tries = attempts.entry(key.clone()).or_default();
        let status = match tries.len() {
            0 => 429,
            1 => 500,
            _ => 202,
        };
        tries.push(status);
        status
    };
    if status == 202 {
        pd.accepted.lock().unwrap().push(event);
        let answer = json!({"status": "success", "message": "Event processed", "dedup_key": key});
        return (StatusCode::ACCEPTED, Json(answer));
    }
    (StatusCode::from_u16(status).unwrap(), Json(json!({"status": "error"})))
}

async fn change_enqueue(State(pd): State<Arc<PagerDuty>>, Json(event): Json<Value>) -> StatusCode {
    pd.changes.lock().unwrap().push(event);
    StatusCode::ACCEPTED
}

async fn start_pagerduty() -> (String, Arc<PagerDuty>) {
    let pd = Arc::new(PagerDuty::default());
    let router = axum::Router::new()
        .route("/v2/enqueue", post(enqueue))
        .route("/v2/change/enqueue", post(change_enqueue))
        .with_state(pd.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, pd)
}

fn deliverer(app: &TestApp, pagerduty_url: &str, allow_private: bool) -> Arc<worker::Deliverer> {
    let mut settings = worker::DeliverySettings::new(app.secret_key.clone());
    settings.pagerduty_url = pagerduty_url.into();
    settings.allow_private_targets = allow_private;
    worker::Deliverer::new(app.db.store.clone(), settings).unwrap()
}

/// The real records as items of environment `env`, as a connection of their account stores them.
fn items(records: &[Value], env: Uuid) -> Vec<NewEvent> {
    let ctx = RecordContext {
        connection_id: Uuid::nil(),
        account_id: "218007301253",
        region: "us-east-1",
        fallback_time: time::OffsetDateTime::now_utc(),
    };
    records
        .iter()
        .map(|r| {
            let mut item = normalize(r, &ctx).event;
            item.connection_id = None;
            item.environment_ids = vec![env];
            item
        })
        .collect()
}

async fn create_env(app: &TestApp, token: &str) -> Uuid {
    let (status, env) = app.post("/v1/environments", token, json!({"name": "prod"})).await;
    assert_eq!(status, 201, "{env}");
    env["id"].as_str().unwrap().parse().unwrap()
}

async fn matches_are_delivered_exactly_once_after_retries(backend: Backend) {
    let (pd_url, pd) = start_pagerduty().await;
    let Some(app) = TestApp::spawn(backend).await else {
        return test_support::skipped("matches_are_delivered_exactly_once_after_retries");
    };
    let org = app.org("acme").await;
    let token = org.admin_token.as_str();
    let prod = create_env(&app, token).await;

    // A rule per preset, one more that is disabled and one whose key PagerDuty refuses.
    let (status, presets) = app.get("/v1/rules/presets", token).await;
    assert_eq!(status, 200);
    let presets = presets["items"].as_array().unwrap().clone();
    assert_eq!(presets.len(), 15);
    let mut rule_of_preset = BTreeMap::new();
    for (n, p) in presets.iter().enumerate() {
        let body = json!({"name": p["title"], "match": {"preset": p["id"]},
            "action": {"pagerduty_alert": {"routing_key": format!("ROUTINGKEY{n:04}"), "severity": "critical"}}});
        let (status, rule) = app.post("/v1/rules", token, body).await;
        assert_eq!(status, 201, "{rule}");
        assert!(!rule.to_string().contains("ROUTINGKEY"), "routing keys are never shown: {rule}");
        rule_of_preset.insert(p["id"].as_str().unwrap().to_owned(), rule["id"].as_str().unwrap().to_owned());
    }
    let disabled = json!({"name": "off", "enabled": false, "match": {"preset": "cis-aws-10"},
        "action": {"pagerduty_alert": {"routing_key": "DISABLEDKEY000", "severity": "warning"}}});
    let (status, disabled) = app.post("/v1/rules", token, disabled).await;
    assert_eq!(status, 201, "{disabled}");
    let refused = json!({"name": "refused", "match": {"preset": "cis-aws-5"},
        "action": {"pagerduty_alert": {"routing_key": "REFUSEDKEY0000", "severity": "error"}}});
    let (status, refused) = app.post("/v1/rules", token, refused).await;
    assert_eq!(status, 201, "{refused}");
    let refused_id = refused["id"].as_str().unwrap().to_owned();

    // Every real record, stored in batches through the store's write path; what each preset
    // should match is worked out from the records here.
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let events = items(&records, prod);
    let mut stored_ids = Vec::new();
    for chunk in events.chunks(100) {
        let answers = app.db.store.insert_events(org.id, chunk).await.unwrap();
        stored_ids.extend(answers.into_iter().map(|(id, new)| new.then_some(id)));
    }
    let mut expected = BTreeSet::new();
    for (record, id) in records.iter().zip(&stored_ids) {
        let Some(id) = id else { continue };
        for p in domain::rule::PRESETS {
            if p.matches(record) {
                expected.insert(format!("changetrail-{}-{id}", rule_of_preset[p.id]));
            }
        }
    }
    // Independently of the preset code: CloudTrail's own changes are exactly these names.
    let trail_changes: BTreeSet<String> = records
        .iter()
        .zip(&stored_ids)
        .filter(|(r, id)| {
            id.is_some()
                && ["CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging"]
                    .contains(&r["eventName"].as_str().unwrap_or(""))
        })
        .map(|(_, id)| format!("changetrail-{}-{}", rule_of_preset["cis-aws-5"], id.unwrap()))
        .collect();
    assert_eq!(trail_changes.len(), 13, "the data's CloudTrail changes");
    assert!(trail_changes.is_subset(&expected));
    assert!(expected.len() > 100, "the real data matches the presets {} times", expected.len());

    let (pending, oldest) = app.db.store.outbox_backlog().await.unwrap();
    assert_eq!(pending as usize, expected.len() + 13, "the outbox holds every match before delivery");
    assert!(oldest.is_some());

    // Deliver until PagerDuty has accepted as many as there are matches, retries and all.
    let deliverer = deliverer(&app, &pd_url, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while pd.accepted.lock().unwrap().len() < expected.len() && std::time::Instant::now() < deadline {
        deliverer.deliver_due_once().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    deliverer.deliver_due_once().await;
    let accepted: Vec<String> =
        pd.accepted.lock().unwrap().iter().map(|e| e["dedup_key"].as_str().unwrap().to_owned()).collect();
    let distinct: BTreeSet<String> = accepted.iter().cloned().collect();
    assert_eq!(distinct.len(), accepted.len(), "each match is accepted once");
    assert_eq!(distinct, expected, "every match, and nothing else, reached PagerDuty");
    let attempts = pd.attempts.lock().unwrap().clone();
    for key in &expected {
        assert_eq!(attempts[key], vec![429, 500, 202], "{key}: retried after 429 and 500");
    }
    assert!(
        pd.accepted.lock().unwrap().iter().all(|e| e["routing_key"] != "DISABLEDKEY000"),
        "a disabled rule sends nothing"
    );
    let sample = pd.accepted.lock().unwrap()[0].clone();
    assert_eq!(sample["payload"]["severity"], "critical");
    assert!(sample["payload"]["timestamp"].as_str().unwrap().ends_with('Z'));

    assert_eq!(app.db.store.outbox_backlog().await.unwrap(), (0, None), "nothing left pending");

    // The refused rule: each delivery failed at its first (400) attempt, never retried.
    let (status, deliveries) = app.get(&format!("/v1/rules/{refused_id}/deliveries?limit=500"), token).await;
    assert_eq!(status, 200, "{deliveries}");
    let deliveries = deliveries["items"].as_array().unwrap();
    assert_eq!(deliveries.len(), 13);
    for d in deliveries {
        assert_eq!(d["status"], "failed", "{d}");
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
        assert_eq!(d["attempts"][0]["http_status"], 400, "{d}");
        assert!(d["attempts"][0]["error"].as_str().unwrap().contains("invalid event"), "{d}");
    }
    let refused_attempts: usize =
        attempts.iter().filter(|(k, _)| k.contains(&refused_id)).map(|(_, tries)| tries.len()).sum();
    assert_eq!(refused_attempts, 13, "a 400 is not retried");

    // A delivered one shows its three attempts.
    let (_, deliveries) = app.get(&format!("/v1/rules/{}/deliveries", rule_of_preset["cis-aws-5"]), token).await;
    let first = &deliveries["items"][0];
    assert_eq!(first["status"], "delivered", "{first}");
    let statuses: Vec<i64> =
        first["attempts"].as_array().unwrap().iter().map(|a| a["http_status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, vec![429, 500, 202]);
    let (_, deliveries) = app.get(&format!("/v1/rules/{}/deliveries", disabled["id"].as_str().unwrap()), token).await;
    assert!(deliveries["items"].as_array().unwrap().is_empty(), "a disabled rule matches nothing: {deliveries}");

    // Each match also put an alert item on the timeline, linked to the matched change.
    let mut alerts = 0;
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let (status, page) = app
            .get(
                &format!("/v1/environments/prod/timeline?kind=alert&since=2020-01-01T00:00:00Z&limit=500{after}"),
                token,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["source"], "changetrail.rules");
            assert!(item["links"][0]["href"].as_str().unwrap().starts_with("/v1/events/"));
            alerts += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(alerts, expected.len() + 13, "an alert per match of every enabled rule");

    // Storing the same records again matches nothing new.
    for chunk in events.chunks(100) {
        app.db.store.insert_events(org.id, chunk).await.unwrap();
    }
    assert_eq!(deliverer.deliver_due_once().await, 0, "nothing new to deliver");
}

async fn webhooks_are_signed_as_standard_webhooks_and_private_targets_refused(backend: Backend) {
    let Some(app) = TestApp::spawn_allowing_private_targets(backend).await else {
        return test_support::skipped("webhooks_are_signed_as_standard_webhooks_and_private_targets_refused");
    };
    let org = app.org("acme").await;
    let token = org.admin_token.as_str();
    let prod = create_env(&app, token).await;

    // A receiver that keeps what it gets.
    type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;
    let received: Received = Arc::default();
    let router = axum::Router::new()
        .route(
            "/hook",
            post(|State(r): State<Received>, headers: HeaderMap, body: axum::body::Bytes| async move {
                r.lock().unwrap().push((headers, body.to_vec()));
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let body = json!({"name": "trail tampering", "environments": ["prod"], "match": {"event_names": ["StopLogging"]},
                      "action": {"webhook": {"url": hook_url}}});
    let (status, rule) = app.post("/v1/rules", token, body).await;
    assert_eq!(status, 201, "{rule}");
    let secret = rule["secret"].as_str().expect("a secret is made and shown once").to_owned();
    assert!(secret.starts_with("whsec_"));
    let rule_id = rule["id"].as_str().unwrap().to_owned();
    let (_, shown) = app.get(&format!("/v1/rules/{rule_id}"), token).await;
    assert!(shown.get("secret").is_none() && !shown.to_string().contains(&secret[6..]), "{shown}");
    assert_eq!(shown["action"]["webhook"]["url"], hook_url);
    // A URL whose path or query carries a token shows neither (it is sealed with the secret).
    let tokened = format!("{hook_url}/T0/B0/SECRETPATH?token=SECRETQUERY");
    let body =
        json!({"name": "tokened", "match": {"event_names": ["Nothing"]}, "action": {"webhook": {"url": tokened}}});
    let (status, tokened_rule) = app.post("/v1/rules", token, body).await;
    assert_eq!(status, 201, "{tokened_rule}");
    let (_, listed) = app.get("/v1/rules", token).await;
    for text in [tokened_rule.to_string(), listed.to_string()] {
        assert!(!text.contains("SECRETPATH") && !text.contains("SECRETQUERY"), "{text}");
    }
    assert_eq!(tokened_rule["action"]["webhook"]["url"], format!("{hook_url}/…"));

    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let stop = records.iter().find(|r| r["eventName"] == "StopLogging").unwrap().clone();
    let answers = app.db.store.insert_events(org.id, &items(&[stop], prod)).await.unwrap();
    let item_id = answers[0].0;
    assert_eq!(deliverer(&app, "http://127.0.0.1:9", true).deliver_due_once().await, 1);

    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    // Standard Webhooks: HMAC-SHA256 with the secret's bytes over "{id}.{timestamp}.{body}".
    let key = base64::engine::general_purpose::STANDARD.decode(&secret["whsec_".len()..]).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert!(header("webhook-signature").split(' ').any(|s| s == expected), "the signature verifies");
    let sent_at: i64 = timestamp.parse().unwrap();
    assert!((time::OffsetDateTime::now_utc().unix_timestamp() - sent_at).abs() < 60);
    let message: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(message["type"], "rule.matched");
    assert_eq!(message["data"]["item"]["id"], item_id.to_string());
    assert_eq!(message["data"]["rule"]["id"], rule_id);

    // A worker not allowed private targets refuses this one at delivery, and says why.
    let again = records.iter().filter(|r| r["eventName"] == "StopLogging").nth(1).unwrap().clone();
    app.db.store.insert_events(org.id, &items(&[again], prod)).await.unwrap();
    assert_eq!(deliverer(&app, "http://127.0.0.1:9", false).deliver_due_once().await, 1);
    assert_eq!(received.lock().unwrap().len(), 1, "nothing sent to a private address");
    let (_, deliveries) = app.get(&format!("/v1/rules/{rule_id}/deliveries"), token).await;
    let newest = &deliveries["items"][0];
    assert_eq!(newest["status"], "failed", "{newest}");
    assert!(newest["attempts"][0]["error"].as_str().unwrap().contains("refused"), "{newest}");

    // A worker with another sealing key cannot open the secret: the delivery waits, and says why.
    let third = records.iter().filter(|r| r["eventName"] == "StopLogging").nth(2).unwrap().clone();
    app.db.store.insert_events(org.id, &items(&[third], prod)).await.unwrap();
    let mut settings = worker::DeliverySettings::new(domain::secret_box::SecretKey::generate());
    settings.allow_private_targets = true;
    let other_key = worker::Deliverer::new(app.db.store.clone(), settings).unwrap();
    assert_eq!(other_key.deliver_due_once().await, 1);
    assert_eq!(received.lock().unwrap().len(), 1, "nothing sent without the secret");
    let (_, deliveries) = app.get(&format!("/v1/rules/{rule_id}/deliveries"), token).await;
    let newest = &deliveries["items"][0];
    assert_eq!(newest["status"], "pending", "{newest}");
    assert!(newest["attempts"][0]["error"].as_str().unwrap().contains("CHANGETRAIL_SECRET_KEY"), "{newest}");
    assert!(newest["next_attempt_at"].is_string(), "{newest}");

    // An app not allowed private targets refuses them when the rule is made.
    let Some(strict) = TestApp::spawn(backend).await else { return };
    let org = strict.org("strict").await;
    for url in [
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://localhost:8443/hook",
        "http://hooks.example.com/plain-http",
        "https://10.0.0.8/hook",
        "ftp://hooks.example.com/",
    ] {
        let body = json!({"name": "x", "match": {"preset": "cis-aws-1"}, "action": {"webhook": {"url": url}}});
        let (status, problem) = strict.post("/v1/rules", &org.admin_token, body).await;
        assert_eq!(status, 422, "{url}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "action.webhook.url", "{url}: {problem}");
    }
}

/// Posted items (`upsert_event`) and pushed events (`insert_connection_event`) are matched like
/// polled and channel ones; an update of a posted item is not new and matches nothing; the
/// alert's suspects start with the change it was made for.
async fn every_write_path_matches_new_items_only(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return test_support::skipped("every_write_path_matches_new_items_only");
    };
    let org = app.org("acme").await;
    let token = org.admin_token.as_str();
    let prod = create_env(&app, token).await;
    let body = json!({"name": "deploys by the release bot", "match": {"actor_patterns": ["release-*"]},
                      "action": {"pagerduty_change": {"routing_key": "ROUTINGKEY0000"}}});
    let (status, posted_rule) = app.post("/v1/rules", token, body).await;
    assert_eq!(status, 201, "{posted_rule}");
    let body = json!({"name": "trail", "environments": ["prod"], "match": {"preset": "cis-aws-5"},
                      "action": {"pagerduty_alert": {"routing_key": "ROUTINGKEY0000", "severity": "critical"}}});
    let (_, trail_rule) = app.post("/v1/rules", token, body).await;
    let app = &app;
    let deliveries = |rule: &Value| {
        let path = format!("/v1/rules/{}/deliveries", rule["id"].as_str().unwrap());
        async move { app.get(&path, token).await.1["items"].as_array().unwrap().clone() }
    };

    let deploy = json!({"environment": "prod", "service": "checkout", "version": "1.2.3", "status": "started",
                        "started_at": "2026-11-30T10:00:00Z", "actor": "release-bot", "external_id": "d-1"});
    let (status, item) = app.post("/v1/deploys", token, deploy.clone()).await;
    assert_eq!(status, 201, "{item}");
    let mut update = deploy.clone();
    update["status"] = json!("succeeded");
    assert_eq!(app.post("/v1/deploys", token, update).await.0, 200, "an update");
    let by_someone = json!({"environment": "prod", "service": "checkout", "version": "1.2.4", "status": "started",
                            "started_at": "2026-11-30T11:00:00Z", "actor": "alice"});
    assert_eq!(app.post("/v1/deploys", token, by_someone).await.0, 201);
    let posted = deliveries(&posted_rule).await;
    assert_eq!(posted.len(), 1, "the new deploy by the bot, not its update nor alice's: {posted:?}");
    assert_eq!(posted[0]["event_id"], item["id"]);

    // A pushed event, through the push's own write.
    let settings = domain::connection::ConnectionSettings {
        name: "prod".into(),
        regions: vec!["us-east-1".into()],
        default_environment: None,
        environment_rules: vec![],
        lookback_days: 7,
        include_read_only: false,
        enabled: true,
        event_filter: Default::default(),
        session_duration_seconds: 3600,
    };
    let connection = app.db.store.create_connection(org.id, &settings, &domain::ExternalId::generate()).await.unwrap();
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let stop = records.iter().find(|r| r["eventName"] == "StopLogging").unwrap();
    let mut event = items(std::slice::from_ref(stop), prod).remove(0);
    event.connection_id = Some(connection.id);
    let id = app.db.store.insert_connection_event(org.id, connection.id, connection.links_version, &event).await;
    let id = id.unwrap().expect("new");
    let again = app.db.store.insert_connection_event(org.id, connection.id, connection.links_version, &event).await;
    assert_eq!(again.unwrap(), None, "stored before");
    let trail = deliveries(&trail_rule).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0]["event_id"], id.to_string());

    // The alert it made ranks the change first among its suspects.
    let alert_id = trail[0]["alert_event_id"].as_str().unwrap();
    let (status, suspects) = app.get(&format!("/v1/alerts/{alert_id}/suspects"), token).await;
    assert_eq!(status, 200, "{suspects}");
    assert_eq!(suspects["items"][0]["item"]["id"], id.to_string(), "{suspects}");
}
