//! The change timeline end to end: CloudTrail events imported through the stand-in, deploys,
//! alerts and changes posted by integrators, read back as one timeline across pages; suspects.

use serde_json::{json, Value};
use test_support::Backend;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use worker::Importer;

use crate::importer::{setup, test_settings};

on_both_backends!(
    one_timeline_of_imports_deploys_and_alerts,
    posting_is_idempotent_and_batches_keep_good_items,
    suspects_are_ranked_with_reasons,
    filters_and_several_environments,
    changing_rules_relinks_stored_events,
    every_posted_item_reaches_the_subscribers,
    remembered_pages_are_the_organisations_own_and_end_at_a_write,
);

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

async fn walk(
    app: &test_support::TestApp,
    token: &str,
    env: &str,
    since: OffsetDateTime,
    limit: usize,
) -> (Vec<Value>, usize) {
    let base = format!(
        "/v1/environments/{env}/timeline?limit={limit}&since={}&kind=cloudtrail&kind=deploy&kind=alert&kind=custom",
        at(since)
    );
    let (mut items, mut pages, mut path) = (Vec::new(), 0, base.clone());
    loop {
        let (status, page) = app.get(&path, token).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("{base}&cursor={c}"),
            None => return (items, pages),
        }
    }
}

async fn one_timeline_of_imports_deploys_and_alerts(backend: Backend) {
    let Some(s) = setup(backend).await else {
        return test_support::skipped("one_timeline_of_imports_deploys_and_alerts");
    };
    let t = s.token.as_str();
    s.app.post("/v1/environments", t, json!({"name": "staging"})).await;
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let now = OffsetDateTime::now_utc();
    let imported = test_support::seed(
        &s.standin.standin,
        "222222222222",
        "us-east-1",
        &records,
        now - time::Duration::minutes(40),
        |_| time::Duration::ZERO,
    );
    Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings()).run_due_jobs_once().await;

    let deploy = json!({"environment": "production", "service": "checkout-api", "version": "v42", "status": "succeeded",
                        "started_at": at(now - time::Duration::minutes(20)), "actor": "ci", "external_id": "deploy-42"});
    assert_eq!(s.app.post("/v1/deploys", t, deploy).await.0, 201);
    let both = json!({"environments": ["production", "staging"], "service": "web", "version": "v7", "status": "started",
                      "started_at": at(now - time::Duration::minutes(10))});
    let (status, both_item) = s.app.post("/v1/deploys", t, both).await;
    assert_eq!(status, 201, "{both_item}");
    assert_eq!(both_item["environments"], json!(["production", "staging"]));
    let alert = json!({"environment": "production", "title": "checkout 5xx", "severity": "critical", "status": "triggered",
                       "started_at": at(now - time::Duration::minutes(5)), "source": "pagerduty", "external_id": "P123", "service": "checkout-api"});
    let (status, alert_item) = s.app.post("/v1/alerts", t, alert).await;
    assert_eq!(status, 201, "{alert_item}");

    let (items, pages) = walk(&s.app, t, "production", now - time::Duration::hours(3), 50).await;
    assert!(pages > 10, "several pages: {pages}");
    assert_eq!(items.len(), imported.len() + 3, "every import, both deploys and the alert, once each");
    let times: Vec<OffsetDateTime> =
        items.iter().map(|i| OffsetDateTime::parse(i["occurred_at"].as_str().unwrap(), &Rfc3339).unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let kinds: Vec<&str> = items.iter().take(3).map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["alert", "deploy", "deploy"], "the newest three are the posted ones");
    assert_eq!(items[1]["title"], "web v7: started");
    assert_eq!(items[2]["title"], "ci deployed checkout-api v42");
    assert!(items.iter().skip(3).all(|i| i["kind"] == "cloudtrail" && i["environments"] == json!(["production"])));

    let (staging, _) = walk(&s.app, t, "staging", now - time::Duration::hours(3), 50).await;
    assert_eq!(staging.iter().map(|i| i["id"].clone()).collect::<Vec<_>>(), vec![both_item["id"].clone()]);

    // One CloudTrail event in full, with its original record.
    let cloudtrail = items.iter().find(|i| i["kind"] == "cloudtrail").unwrap();
    let (status, full) = s.app.get(&format!("/v1/events/{}", cloudtrail["id"].as_str().unwrap()), t).await;
    assert_eq!(status, 200, "{full}");
    assert_eq!(full["original"]["eventID"], cloudtrail["details"]["event_id"]);
    assert_eq!(full["title"], cloudtrail["title"]);
}

async fn posting_is_idempotent_and_batches_keep_good_items(backend: Backend) {
    let Some(s) = setup(backend).await else {
        return test_support::skipped("posting_is_idempotent_and_batches_keep_good_items");
    };
    let t = s.token.as_str();
    let now = OffsetDateTime::now_utc();
    let deploy = |status: &str| json!({"environment": "production", "service": "api", "version": "v1", "status": status, "started_at": at(now), "external_id": "d-1"});
    let (s1, first) = s.app.post("/v1/deploys", t, deploy("started")).await;
    let (s2, second) = s.app.post("/v1/deploys", t, deploy("succeeded")).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(first["id"], second["id"], "a retried or updated POST never creates a second item");
    assert_eq!(second["details"]["status"], "succeeded");

    let alert = |status: &str| json!({"environment": "production", "title": "db down", "severity": "error", "status": status, "started_at": at(now), "source": "pagerduty", "external_id": "A-1"});
    let (_, a1) = s.app.post("/v1/alerts", t, alert("triggered")).await;
    let (status, a2) = s.app.post("/v1/alerts", t, alert("resolved")).await;
    assert_eq!((status, &a1["id"]), (200, &a2["id"]));
    assert!(a2["title"].as_str().unwrap().contains("resolved"));
    let other_tool = json!({"environment": "production", "title": "db down", "severity": "error", "status": "triggered", "started_at": at(now), "source": "grafana", "external_id": "A-1"});
    assert_eq!(s.app.post("/v1/alerts", t, other_tool).await.0, 201, "alerts are unique per (source, external_id)");

    let (status, p) = s.app.post("/v1/deploys", t, json!({"environment": "nowhere", "service": "a", "version": "1", "status": "started", "started_at": at(now)})).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("environments")), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("nowhere"));
    let (status, p) = s.app.post("/v1/deploys", t, json!({"environment": "production", "service": "a", "version": "1", "status": "done", "started_at": "yesterday"})).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("started_at")), "{p}");

    let items = json!({"items": [
        {"summary": "flag new-checkout on", "occurred_at": at(now), "environments": ["production"], "labels": {"flag": "new-checkout"}},
        {"summary": "", "occurred_at": at(now), "environments": ["production"]},
        {"summary": "config push", "occurred_at": "not a time", "environments": ["production"]},
        {"summary": "manual failover", "occurred_at": at(now), "environments": ["production"], "external_id": "f-1"},
    ]});
    let (status, batch) = s.app.post("/v1/changes/batch", t, items).await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!((batch["created"].as_u64(), batch["failed"].as_u64()), (Some(2), Some(2)), "{batch}");
    assert_eq!(batch["results"][1]["problem"]["errors"][0]["field"], "summary");
    assert_eq!(batch["results"][2]["problem"]["errors"][0]["field"], "occurred_at");
    assert_eq!(batch["results"][3]["status"], 201);
    let too_many = json!({"items": vec![json!({}); 501]});
    assert_eq!(s.app.post("/v1/changes/batch", t, too_many).await.0, 422);
}

async fn suspects_are_ranked_with_reasons(backend: Backend) {
    let Some(s) = setup(backend).await else { return test_support::skipped("suspects_are_ranked_with_reasons") };
    let t = s.token.as_str();
    let alert_at = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let old_change = json!({"summary": "rotated the logging bucket's keys", "occurred_at": at(alert_at - time::Duration::minutes(100)), "environments": ["production"]});
    assert_eq!(s.app.post("/v1/changes", t, old_change).await.0, 201);
    let deploy = json!({"environment": "production", "service": "checkout-api", "version": "v43", "status": "succeeded", "started_at": at(alert_at - time::Duration::minutes(5))});
    let (_, deploy) = s.app.post("/v1/deploys", t, deploy).await;
    let too_old = json!({"summary": "last week's change", "occurred_at": at(alert_at - time::Duration::minutes(200)), "environments": ["production"]});
    s.app.post("/v1/changes", t, too_old).await;
    let alert = json!({"environment": "production", "title": "checkout latency", "severity": "critical", "status": "triggered",
                       "started_at": at(alert_at), "source": "pagerduty", "service": "checkout-api"});
    let (_, alert) = s.app.post("/v1/alerts", t, alert).await;

    let (status, suspects) = s.app.get(&format!("/v1/alerts/{}/suspects", alert["id"].as_str().unwrap()), t).await;
    assert_eq!(status, 200, "{suspects}");
    let items = suspects["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "the change 200 minutes before is outside the default 120-minute window: {suspects}");
    assert_eq!(items[0]["item"]["id"], deploy["id"], "the deploy 5 minutes before ranks first");
    assert!(items[0]["score"].as_f64() > items[1]["score"].as_f64());
    let reasons: Vec<&str> = items[0]["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(reasons, ["deploy of checkout-api 5 minutes before", "same service as the alert (checkout-api)"]);
    assert_eq!(items[1]["reasons"], json!(["change 100 minutes before"]));

    let (status, wider) =
        s.app.get(&format!("/v1/alerts/{}/suspects?window_minutes=240", alert["id"].as_str().unwrap()), t).await;
    assert_eq!((status, wider["items"].as_array().unwrap().len()), (200, 3));
    let (status, _) = s.app.get(&format!("/v1/alerts/{}/suspects", deploy["id"].as_str().unwrap()), t).await;
    assert_eq!(status, 404, "a deploy is not an alert");
    let (status, p) =
        s.app.get(&format!("/v1/alerts/{}/suspects?window_minutes=0", alert["id"].as_str().unwrap()), t).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("window_minutes")));
}

fn titles(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap().to_owned()).collect()
}

async fn filters_and_several_environments(backend: Backend) {
    let Some(s) = setup(backend).await else { return test_support::skipped("filters_and_several_environments") };
    let t = s.token.as_str();
    s.app.post("/v1/environments", t, json!({"name": "staging"})).await;
    let now = OffsetDateTime::now_utc();
    let records: Vec<Value> = test_support::cloudtrail_records("invictus-aws-dataset").into_iter().take(400).collect();
    test_support::seed(
        &s.standin.standin,
        "222222222222",
        "us-east-1",
        &records,
        now - time::Duration::minutes(30),
        |_| time::Duration::ZERO,
    );
    Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings()).run_due_jobs_once().await;
    let app = &s.app;
    let post = |path: &'static str, body: Value| async move { assert_eq!(app.post(path, t, body).await.0, 201) };
    post("/v1/deploys", json!({"environment": "production", "service": "checkout-api", "version": "v1", "status": "succeeded", "started_at": at(now - time::Duration::minutes(3)), "actor": "ci"})).await;
    post("/v1/deploys", json!({"environment": "staging", "service": "web", "version": "v2", "status": "succeeded", "started_at": at(now - time::Duration::minutes(4))})).await;
    post("/v1/changes", json!({"summary": "flag new-checkout at 100%_ratio", "occurred_at": at(now - time::Duration::minutes(2)), "environments": ["production", "staging"], "labels": {"flag": "new-checkout"}})).await;
    post("/v1/changes", json!({"summary": "flag old at 1000 ratio", "occurred_at": at(now - time::Duration::minutes(1)), "environments": ["production"]})).await;

    let get = |query: String| async move {
        let (status, page) = app.get(&format!("/v1/environments/production/timeline?{query}"), t).await;
        assert_eq!(status, 200, "{query}: {page}");
        page
    };
    assert_eq!(titles(&get("actor=ci".into()).await), ["ci deployed checkout-api v1"]);
    assert_eq!(titles(&get("service=checkout-api".into()).await), ["ci deployed checkout-api v1"]);
    assert_eq!(titles(&get("label=flag:new-checkout".into()).await), ["flag new-checkout at 100%_ratio"]);
    assert_eq!(
        titles(&get("q=100%25_".into()).await),
        ["flag new-checkout at 100%_ratio"],
        "% and _ are literal, not wildcards"
    );
    assert_eq!(titles(&get("q=CHECKOUT&kind=deploy".into()).await), ["ci deployed checkout-api v1"]);
    assert_eq!(titles(&get("resource=checkout".into()).await), ["ci deployed checkout-api v1"]);
    assert_eq!(titles(&get("source=custom".into()).await).len(), 2);
    let ec2 = get("source=ec2.amazonaws.com&limit=500".into()).await;
    let ec2_items = ec2["items"].as_array().unwrap();
    assert!(!ec2_items.is_empty());
    assert!(ec2_items.iter().all(|i| i["details"]["event_source"] == "ec2.amazonaws.com"));
    let everything = get("limit=500".into()).await["items"].as_array().unwrap().len();
    assert!(ec2_items.len() < everything);
    let (status, p) = s.app.get("/v1/environments/production/timeline?label=nocolon", t).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("label[0]")));

    // Both environments at once: the change in both appears once; pages of one item.
    let base = format!(
        "/v1/timeline?environment=production&environment=staging&since={}&kind=deploy&kind=custom",
        at(now - time::Duration::hours(1))
    );
    let (mut seen, mut path) = (Vec::new(), format!("{base}&limit=1"));
    loop {
        let (status, page) = s.app.get(&path, t).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(titles(&page));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("{base}&limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "flag old at 1000 ratio",
            "flag new-checkout at 100%_ratio",
            "ci deployed checkout-api v1",
            "web v2: succeeded"
        ]
    );
    let single = get("limit=1".into()).await;
    let cursor = single["next_cursor"].as_str().unwrap();
    let (status, p) = s.app.get(&format!("{base}&cursor={cursor}"), t).await;
    assert_eq!((status, p["code"].as_str()), (400, Some("invalid_cursor")), "a cursor of another timeline");
    let (status, p) = s.app.get("/v1/timeline?environment=production&environment=nowhere", t).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("environment[1]")), "{p}");
    assert_eq!(s.app.get("/v1/timeline", t).await.0, 422);
}

async fn changing_rules_relinks_stored_events(backend: Backend) {
    let Some(s) = setup(backend).await else { return test_support::skipped("changing_rules_relinks_stored_events") };
    let t = s.token.as_str();
    s.app.post("/v1/environments", t, json!({"name": "identity"})).await;
    let records = test_support::cloudtrail_records("invictus-aws-dataset");
    let now = OffsetDateTime::now_utc();
    let expected = test_support::seed(
        &s.standin.standin,
        "222222222222",
        "us-east-1",
        &records,
        now - time::Duration::minutes(30),
        |_| time::Duration::ZERO,
    );
    let importer = Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings());
    importer.run_due_jobs_once().await;
    let iam: Vec<&str> = records
        .iter()
        .filter(|r| r["readOnly"] != Value::Bool(true) && r["eventSource"] == "iam.amazonaws.com")
        .map(|r| r["eventID"].as_str().unwrap())
        .collect();
    assert!(!iam.is_empty() && iam.len() < expected.len());

    let rules = json!({"environment_rules": [{"environment": "identity", "event_sources": ["iam.amazonaws.com"]}]});
    let (status, c) = s.app.call("PATCH", &format!("/v1/connections/{}", s.connection_id), Some(t), Some(rules)).await;
    assert_eq!(status, 200, "{c}");
    // Before the worker re-links, the timeline is as it was: consistent, just not yet moved.
    let (before, _) = walk(&s.app, t, "identity", now - time::Duration::hours(3), 500).await;
    assert!(before.is_empty());
    importer.run_due_jobs_once().await;

    let ids = |items: Vec<Value>| {
        let mut ids: Vec<String> =
            items.iter().map(|i| i["details"]["event_id"].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    let (identity, _) = walk(&s.app, t, "identity", now - time::Duration::hours(3), 200).await;
    let (production, _) = walk(&s.app, t, "production", now - time::Duration::hours(3), 200).await;
    let mut iam_sorted: Vec<String> = iam.iter().map(|s| s.to_string()).collect();
    iam_sorted.sort();
    assert_eq!(ids(identity), iam_sorted, "IAM changes moved to identity");
    let mut rest: Vec<String> = expected.iter().filter(|id| !iam.contains(&id.as_str())).cloned().collect();
    rest.sort();
    assert_eq!(ids(production), rest, "the rest stays with the default environment only");
}

/// The one posting path hands each stored item to whatever reacts to new items (the live
/// timeline and rules will subscribe): once per post, with whether it was new.
async fn every_posted_item_reaches_the_subscribers(backend: Backend) {
    let db = db_or_skip!(backend, "every_posted_item_reaches_the_subscribers");
    let org = test_support::create_org(db.store.as_ref(), "acme").await;
    let env = domain::NewEnvironment::parse("prod", None, None).unwrap();
    db.store.create_environment(org.id, &env).await.unwrap();
    let aws = test_support::aws_access("http://127.0.0.1:9", None).await;
    let app = api::AppState::new(
        db.store.clone(),
        aws,
        std::time::Duration::from_secs(1200),
        test_support::webhooks("http://127.0.0.1"),
    );
    let mut items = app.subscribe();
    let deploy = |status: &str| {
        domain::posted::deploy(domain::posted::DeployInput {
            environment: Some("prod"),
            environments: None,
            service: "api",
            version: "v1",
            status,
            started_at: domain::time_util::now(),
            finished_at: None,
            url: None,
            commit_sha: None,
            actor: None,
            external_id: Some("d-1"),
        })
        .unwrap()
    };
    let first = app.post(org.id, deploy("started")).await.unwrap();
    let second = app.post(org.id, deploy("succeeded")).await.unwrap();
    let (got_first, got_second) = (items.recv().await.unwrap(), items.recv().await.unwrap());
    assert_eq!((got_first.created, got_second.created), (true, false), "the second post updated the first");
    assert_eq!(got_first.item.id, first.item.id);
    assert_eq!(got_second.item, second.item);
    assert_eq!(got_second.org_id, org.id);
    assert_eq!(got_second.item.environments, ["prod"]);
    assert!(items.try_recv().is_err(), "one message per post");
}

/// `app::pages`: the same request read again within a second gets the page sent the first
/// time, but never another organisation's, never after this process wrote, and never for
/// longer than a second after another process wrote.
async fn remembered_pages_are_the_organisations_own_and_end_at_a_write(backend: Backend) {
    let Some(app) = test_support::TestApp::spawn(backend).await else {
        return test_support::skipped("remembered_pages_are_the_organisations_own_and_end_at_a_write");
    };
    let (a, b) = (app.org("a").await, app.org("b").await);
    for org in [&a, &b] {
        assert_eq!(app.post("/v1/environments", &org.admin_token, json!({"name": "production"})).await.0, 201);
    }
    let now = OffsetDateTime::now_utc();
    let deploy = |version: &str| {
        json!({"environment": "production", "service": "web", "version": version, "status": "succeeded",
               "started_at": at(now - time::Duration::minutes(1))})
    };
    let path = format!("/v1/environments/production/timeline?since={}", at(now - time::Duration::hours(1)));
    assert_eq!(app.post("/v1/deploys", &a.admin_token, deploy("a-1")).await.0, 201);
    let page = |token: String| {
        let (app, path) = (&app, &path);
        async move {
            let (status, page) = app.get(path, &token).await;
            assert_eq!(status, 200, "{page}");
            titles(&page)
        }
    };
    assert_eq!(page(a.admin_token.clone()).await, ["web a-1: succeeded"]);
    // The same path and query for another organisation: its own page, empty.
    assert!(page(b.admin_token.clone()).await.is_empty(), "b was sent a's page");
    assert_eq!(app.post("/v1/deploys", &b.admin_token, deploy("b-1")).await.0, 201);
    assert_eq!(page(b.admin_token.clone()).await, ["web b-1: succeeded"], "b's own write is on b's next read");
    assert_eq!(page(a.admin_token.clone()).await, ["web a-1: succeeded"]);

    // Another process writes (a store of its own on the same database): this process learns
    // of it within the second.
    let other = storage::connect(&app.db.url).await.unwrap();
    let read_at = std::time::Instant::now();
    assert_eq!(page(a.admin_token.clone()).await, ["web a-1: succeeded"]);
    let posted = domain::posted::deploy(domain::posted::DeployInput {
        environment: Some("production"),
        environments: None,
        service: "web",
        version: "a-2",
        status: "succeeded",
        started_at: now - time::Duration::minutes(1),
        finished_at: None,
        url: None,
        commit_sha: None,
        actor: None,
        external_id: None,
    })
    .unwrap();
    let other_app = app::App::new(
        other,
        test_support::aws_access("http://127.0.0.1:9", None).await,
        std::time::Duration::from_secs(20 * 60),
        test_support::webhooks(&app.base_url),
    );
    other_app.post(a.id, posted).await.unwrap();
    let soon = page(a.admin_token.clone()).await;
    if read_at.elapsed() < std::time::Duration::from_millis(800) {
        assert_eq!(soon, ["web a-1: succeeded"], "read again within the second: the page sent before");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(page(a.admin_token.clone()).await, ["web a-2: succeeded", "web a-1: succeeded"]);
}
