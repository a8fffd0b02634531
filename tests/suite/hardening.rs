//! What a hostile or careless client must not be able to do: grow the metrics without bound,
//! have answers sniffed or cached, lock an organisation out, send lists and instants past what
//! the server can hold, or lose items between pages. Each test is named after what it protects.

use std::sync::Arc;

use domain::TokenSecret;
use serde_json::json;
use test_support::Backend;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

on_both_backends!(
    metrics_stay_bounded_whatever_methods_clients_send,
    answers_are_not_sniffed_and_not_cached,
    the_last_admin_token_cannot_be_deleted,
    two_bootstraps_at_once_create_one_organization,
    repeatable_parameters_are_bounded,
    instants_outside_what_a_timeline_can_hold_are_refused,
    lists_and_error_lists_are_bounded,
    a_cursor_keeps_the_window_of_its_first_page,
    silent_slow_and_idle_clients_are_disconnected,
    connections_beyond_the_cap_wait_their_turn,
    an_environment_that_rules_name_is_neither_renamed_nor_deleted,
    a_timeline_of_many_environments_reads_a_page_of_each,
    a_query_past_the_statement_timeout_is_stopped,
    a_token_without_the_scope_is_refused_before_its_body_is_read,
    a_batch_item_that_is_not_an_object_fails_the_request,
    an_empty_list_of_environments_names_none,
);

/// An app that closes connections whose headers take over a second, serving `max` at once.
async fn strict_app(backend: Backend, max_connections: usize) -> Option<test_support::TestApp> {
    let settings = api::HttpSettings {
        header_read_timeout: std::time::Duration::from_secs(1),
        max_connections,
        ..api::HttpSettings::default()
    };
    test_support::TestApp::spawn_with(backend, settings, test_support::aws_access("http://127.0.0.1:9", None).await)
        .await
}

/// Reads until the server closes the connection; how long that took.
async fn closed_after(stream: &mut tokio::net::TcpStream) -> std::time::Duration {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open for 10 s"),
        }
    }
}

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

async fn metrics_stay_bounded_whatever_methods_clients_send(backend: Backend) {
    let app = app_or_skip!(backend, "metrics_stay_bounded_whatever_methods_clients_send");
    for i in 0..30 {
        let method = format!("BREW{i}{}", "X".repeat(i * 100));
        app.client.request(method.parse().unwrap(), app.url("/healthz")).send().await.unwrap();
        app.client.request(method.parse().unwrap(), app.url(&format!("/no/such/{i}"))).send().await.unwrap();
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("BREW"), "unknown methods get no series of their own");
    assert!(metrics.contains(r#"method="other""#), "they are counted together");
    assert!(!metrics.contains("/no/such/"), "unmatched paths share one label");
}

async fn answers_are_not_sniffed_and_not_cached(backend: Backend) {
    let app = app_or_skip!(backend, "answers_are_not_sniffed_and_not_cached");
    let org = app.org("acme").await;
    let created = app
        .client
        .post(app.url("/v1/tokens"))
        .bearer_auth(&org.admin_token)
        .json(&json!({"name": "ci", "scopes": ["write"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    for response in [created, app.client.get(app.url("/v1/environments")).send().await.unwrap()] {
        let headers = response.headers();
        assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(headers.get("cache-control").unwrap(), "no-store", "a new secret is never kept by a cache");
    }
}

async fn the_last_admin_token_cannot_be_deleted(backend: Backend) {
    let app = app_or_skip!(backend, "the_last_admin_token_cannot_be_deleted");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    let (_, tokens) = app.get("/v1/tokens", t).await;
    let only = tokens["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, problem) = app.call("DELETE", &format!("/v1/tokens/{only}"), Some(t), None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("last_admin_token")), "{problem}");
    assert_eq!(app.get("/v1/tokens", t).await.0, 200, "the organisation can still be administered");

    let (_, writer) = app.post("/v1/tokens", t, json!({"name": "ci", "scopes": ["write"]})).await;
    let writer_id = writer["id"].as_str().unwrap();
    assert_eq!(app.call("DELETE", &format!("/v1/tokens/{writer_id}"), Some(t), None).await.0, 204);
    let (_, second) = app.post("/v1/tokens", t, json!({"name": "second admin", "scopes": ["admin"]})).await;
    assert_eq!(app.call("DELETE", &format!("/v1/tokens/{only}"), Some(t), None).await.0, 204, "not the last one now");
    let second_secret = second["secret"].as_str().unwrap();
    assert_eq!(app.get("/v1/tokens", second_secret).await.0, 200);
}

async fn two_bootstraps_at_once_create_one_organization(backend: Backend) {
    let db = db_or_skip!(backend, "two_bootstraps_at_once_create_one_organization");
    let store: Arc<dyn domain::Store> = db.store.clone();
    let mut attempts = Vec::new();
    let secrets: Vec<TokenSecret> = (0..8).map(|_| TokenSecret::generate()).collect();
    for secret in &secrets {
        let (store, prefix, hash) = (store.clone(), secret.display_prefix(), secret.hash());
        attempts.push(tokio::spawn(async move { store.bootstrap_organization("default", &prefix, &hash).await }));
    }
    let mut created = Vec::new();
    for attempt in attempts {
        created.extend(attempt.await.unwrap().unwrap());
    }
    assert_eq!(created.len(), 1, "exactly one of eight concurrent bootstraps creates the organisation");
    let found: Vec<_> = orgs_of_tokens(&store, &secrets).await;
    assert_eq!(found.len(), 1, "and exactly one admin token");
    assert_eq!(found[0], created[0].id);
    let again = TokenSecret::generate();
    assert!(store.bootstrap_organization("default", &again.display_prefix(), &again.hash()).await.unwrap().is_none());
}

async fn orgs_of_tokens(store: &Arc<dyn domain::Store>, secrets: &[TokenSecret]) -> Vec<uuid::Uuid> {
    let mut orgs = Vec::new();
    for secret in secrets {
        orgs.extend(store.find_token(&secret.hash()).await.unwrap().map(|t| t.org_id));
    }
    orgs
}

async fn repeatable_parameters_are_bounded(backend: Backend) {
    let app = app_or_skip!(backend, "repeatable_parameters_are_bounded");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "prod"})).await;
    let labels: String = (0..1000).map(|i| format!("&label=k{i}:v")).collect();
    let (status, problem) = app.get(&format!("/v1/environments/prod/timeline?limit=5{labels}"), t).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("label")), "{problem}");
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("at most 20"));
    let kinds: String = (0..50).map(|_| "&kind=deploy").collect();
    let (status, problem) = app.get(&format!("/v1/environments/prod/timeline?limit=5{kinds}"), t).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("kind")), "{problem}");
    let scopes: Vec<&str> = vec!["read"; 1000];
    let (status, problem) = app.post("/v1/tokens", t, json!({"name": "many", "scopes": scopes})).await;
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!((status, fields), (422, vec!["scopes"]), "{problem}");
    for (query, field) in
        [("limit=", "limit"), ("limit=ten", "limit"), ("include_read_only=maybe", "include_read_only")]
    {
        let (status, problem) = app.get(&format!("/v1/environments/prod/timeline?{query}"), t).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some(field)), "{query}: {problem}");
    }
    let (status, problem) = app
        .post(
            "/v1/deploys",
            t,
            json!({"environment": "nowhere", "service": "api", "version": "v1",
        "status": "succeeded", "started_at": at(OffsetDateTime::now_utc())}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        problem["errors"][0]["message"], "no environment 'nowhere' in your organisation",
        "words, not Rust debug text"
    );
    let envs: String = (0..21).map(|_| "&environment=prod").collect();
    let (status, problem) = app.get(&format!("/v1/timeline?limit=5{envs}"), t).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("environment")), "{problem}");
}

async fn instants_outside_what_a_timeline_can_hold_are_refused(backend: Backend) {
    let app = app_or_skip!(backend, "instants_outside_what_a_timeline_can_hold_are_refused");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "prod"})).await;
    let deploy = |started_at: &str| json!({"environment": "prod", "service": "api", "version": "v1", "status": "succeeded", "started_at": started_at});
    let tomorrow_and_more = at(OffsetDateTime::now_utc() + time::Duration::hours(25));
    for bad in ["9999-12-31T23:00:00-01:00", "0001-01-01T00:00:00+23:59", "1969-12-31T23:59:59Z", &tomorrow_and_more] {
        let (status, problem) = app.post("/v1/deploys", t, deploy(bad)).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("started_at")), "{bad}: {problem}");
    }
    assert_eq!(app.post("/v1/deploys", t, deploy(&at(OffsetDateTime::now_utc()))).await.0, 201);
    for bad in ["since=0001-01-01T00:00:00%2B23:59", "until=9999-12-31T23:00:00-01:00"] {
        let (status, problem) = app.get(&format!("/v1/environments/prod/timeline?{bad}"), t).await;
        assert_eq!(status, 422, "{bad}: {problem}");
    }
    let (status, page) = app.get("/v1/environments/prod/timeline?since=0001-01-01T00:00:00Z", t).await;
    assert_eq!((status, page["items"].as_array().map(Vec::len)), (200, Some(1)), "the whole past is a valid window");
}

async fn lists_and_error_lists_are_bounded(backend: Backend) {
    let app = app_or_skip!(backend, "lists_and_error_lists_are_bounded");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "prod"})).await;
    let services: Vec<String> = (0..30_000).map(|i| format!("svc-{i}")).collect();
    let change = json!({"environments": ["prod"], "summary": "many", "occurred_at": at(OffsetDateTime::now_utc()),
                        "services": services});
    let (status, problem) = app.post("/v1/changes", t, change).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("services")), "{}", problem["detail"]);

    let regions: Vec<String> = (0..10_000).map(|i| format!("mars-{i}")).collect();
    let response = app
        .client
        .post(app.url("/v1/connections"))
        .bearer_auth(t)
        .json(&json!({"name": "x", "regions": regions}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let body = response.bytes().await.unwrap();
    assert!(body.len() < 8 * 1024, "the problem stays small: {} bytes", body.len());
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["errors"].as_array().unwrap().len(), 20);
    assert!(problem["detail"].as_str().unwrap().contains("10000 fields are invalid"), "{}", problem["detail"]);
}

async fn a_cursor_keeps_the_window_of_its_first_page(backend: Backend) {
    let app = app_or_skip!(backend, "a_cursor_keeps_the_window_of_its_first_page");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "prod"})).await;
    let now = OffsetDateTime::now_utc();
    for hours in [29, 30] {
        let deploy = json!({"environment": "prod", "service": "api", "version": format!("v{hours}"), "status": "succeeded",
                            "started_at": at(now - time::Duration::hours(hours))});
        assert_eq!(app.post("/v1/deploys", t, deploy).await.0, 201);
    }
    let since = at(now - time::Duration::hours(48)).replace('+', "%2B");
    let (_, first) = app.get(&format!("/v1/environments/prod/timeline?limit=1&since={since}"), t).await;
    assert_eq!(first["items"][0]["title"], "api v29: succeeded");
    let cursor = first["next_cursor"].as_str().expect("a second page");
    // Without since, the default window (the last 24 hours) would hold neither item.
    let (status, second) = app.get(&format!("/v1/environments/prod/timeline?limit=1&cursor={cursor}"), t).await;
    assert_eq!((status, second["items"][0]["title"].as_str()), (200, Some("api v30: succeeded")), "{second}");
    let other = at(now - time::Duration::hours(40)).replace('+', "%2B");
    let (status, problem) = app.get(&format!("/v1/environments/prod/timeline?cursor={cursor}&since={other}"), t).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_cursor")),
        "a cursor of another window: {problem}"
    );
}

async fn silent_slow_and_idle_clients_are_disconnected(backend: Backend) {
    use tokio::io::AsyncWriteExt;
    let Some(app) = strict_app(backend, 64).await else {
        return test_support::skipped("silent_slow_and_idle_clients_are_disconnected");
    };
    let address = app.base_url.trim_start_matches("http://").to_owned();

    let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
    assert!(closed_after(&mut silent).await < std::time::Duration::from_secs(5), "a client that sends nothing");

    // One header line every 300 ms never completes the headers within the second allowed.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let writer = async {
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        for i in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if slow.write_all(format!("X-Slow-{i}: y\r\n").as_bytes()).await.is_err() {
                return i;
            }
        }
        20
    };
    let lines = writer.await;
    assert!(lines < 20, "the server closed the connection of a client sending one header line at a time");

    // A keep-alive connection left idle after its request is closed too.
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(closed_after(&mut idle).await < std::time::Duration::from_secs(5), "an idle keep-alive connection");
    assert_eq!(app.call("GET", "/healthz", None, None).await.0, 200, "and the server still answers");
}

async fn connections_beyond_the_cap_wait_their_turn(backend: Backend) {
    let Some(app) = strict_app(backend, 1).await else {
        return test_support::skipped("connections_beyond_the_cap_wait_their_turn");
    };
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let _holder = tokio::net::TcpStream::connect(&address).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_millis(400)).build().unwrap();
    assert!(client.get(app.url("/healthz")).send().await.is_err(), "the only connection slot is taken");
    // The holder sends nothing, so its slot frees after the header timeout (1 s).
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let patient = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build().unwrap();
    let response = patient.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "served once a slot is free");
}

/// Renaming or deleting an environment that a connection's rules name would silently unlink
/// the connection's new events: refused, naming the connection.
async fn an_environment_that_rules_name_is_neither_renamed_nor_deleted(backend: Backend) {
    let app = app_or_skip!(backend, "an_environment_that_rules_name_is_neither_renamed_nor_deleted");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "prod"})).await;
    app.post("/v1/environments", t, json!({"name": "spare"})).await;
    let rules = json!([{"environment": "prod", "regions": ["eu-west-1"]}]);
    let (status, c) = app
        .post(
            "/v1/connections",
            t,
            json!({"name": "main account", "regions": ["eu-west-1"], "environment_rules": rules}),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    let (status, p) = app.call("PATCH", "/v1/environments/prod", Some(t), Some(json!({"slug": "production"}))).await;
    assert_eq!((status, p["code"].as_str()), (409, Some("environment_in_use")), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("main account"), "it names the connection: {p}");
    let (status, p) = app.call("DELETE", "/v1/environments/prod", Some(t), None).await;
    assert_eq!((status, p["code"].as_str()), (409, Some("environment_in_use")), "{p}");
    let (status, _) = app.call("PATCH", "/v1/environments/prod", Some(t), Some(json!({"name": "Production"}))).await;
    assert_eq!(status, 200, "a new name that keeps the slug is fine");
    assert_eq!(app.call("DELETE", "/v1/environments/spare", Some(t), None).await.0, 204, "an unused one goes");
}

/// A timeline of many environments over a long window must not read and sort every row of the
/// window before its LIMIT (seconds on a large store, and the work went on after the request
/// timed out): it is a merge of one short index scan per environment. PostgreSQL's plan says how
/// many rows each scan read; SQLite's that there is one index search per environment.
async fn a_timeline_of_many_environments_reads_a_page_of_each(backend: Backend) {
    let app = app_or_skip!(backend, "a_timeline_of_many_environments_reads_a_page_of_each");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    let now = OffsetDateTime::now_utc();
    let slugs: Vec<String> = (0..20).map(|n| format!("env-{n:02}")).collect();
    for slug in &slugs {
        assert_eq!(app.post("/v1/environments", t, json!({"name": slug})).await.0, 201);
    }
    // 100 changes in each environment, a minute apart, and one change shared by the first two.
    for chunk in (0..2000).collect::<Vec<i64>>().chunks(500) {
        let items: Vec<_> = chunk
            .iter()
            .map(|n| {
                json!({"environments": [slugs[(n % 20) as usize]], "summary": format!("change {n}"),
                       "occurred_at": at(now - time::Duration::minutes(n + 1))})
            })
            .collect();
        let (status, answer) = app.post("/v1/changes/batch", t, json!({"items": items})).await;
        assert_eq!((status, answer["failed"].as_i64()), (200, Some(0)), "{answer}");
    }
    let shared = json!({"environments": ["env-00", "env-01"], "summary": "shared", "occurred_at": at(now)});
    assert_eq!(app.post("/v1/changes", t, shared).await.0, 201);

    let all = slugs.iter().map(|s| format!("environment={s}")).collect::<Vec<_>>().join("&");
    let (status, page) = app.get(&format!("/v1/timeline?{all}&since=0001-01-01T00:00:00Z&limit=30"), t).await;
    assert_eq!(status, 200, "{page}");
    let titles: Vec<&str> = page["items"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap()).collect();
    let expected: Vec<String> =
        std::iter::once("shared".to_owned()).chain((0..29).map(|n| format!("change {n}"))).collect();
    assert_eq!(titles, expected, "newest first, the shared change once");

    let store = storage::connect_sql(&app.db.url).await.unwrap();
    let environment_ids: Vec<uuid::Uuid> = page_environment_ids(&app, t, &slugs).await;
    let params = domain::timeline::TimelineParams {
        since: Some("0001-01-01T00:00:00Z".into()),
        limit: Some(30),
        ..Default::default()
    };
    let query = domain::timeline::TimelineRequest::parse(params, now).unwrap().query(environment_ids).unwrap();
    let plan = store.explain_timeline(org.id, &query).await.unwrap();
    let plan_text = plan.join("\n");
    match backend {
        Backend::Postgres => {
            let scans: Vec<u64> = plan
                .iter()
                // (Not `event_environments_by_event`: each item's environment slugs, once per item.)
                .filter(|line| line.contains("Index") && line.contains("event_environments_pkey"))
                .map(|line| {
                    let rows = line.split("rows=").nth(1).and_then(|r| r.split(' ').next()).unwrap_or_default();
                    rows.parse().unwrap_or_else(|_| panic!("no row count in {line:?}"))
                })
                .collect();
            assert_eq!(scans.len(), 20, "one scan per environment:\n{plan_text}");
            assert!(scans.iter().all(|rows| *rows <= 31), "each scan stops at the page size:\n{plan_text}");
        }
        Backend::Sqlite => {
            let searches = plan.iter().filter(|line| line.starts_with("SEARCH l ")).count();
            assert_eq!(searches, 20, "one index search per environment:\n{plan_text}");
        }
    }
}

async fn page_environment_ids(app: &test_support::TestApp, token: &str, slugs: &[String]) -> Vec<uuid::Uuid> {
    let (_, list) = app.get("/v1/environments?limit=100", token).await;
    slugs
        .iter()
        .map(|slug| {
            let env = list["items"].as_array().unwrap().iter().find(|e| e["slug"] == slug.as_str()).unwrap();
            env["id"].as_str().unwrap().parse().unwrap()
        })
        .collect()
}

/// A request that timed out must not leave its query running: the database itself stops a
/// statement at the store's timeout (PostgreSQL's statement_timeout, an interrupt on SQLite), and
/// the store says so rather than failing vaguely. A search matching nothing in 10,000 items
/// takes milliseconds; the timeout here is one.
async fn a_query_past_the_statement_timeout_is_stopped(backend: Backend) {
    let app = app_or_skip!(backend, "a_query_past_the_statement_timeout_is_stopped");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    let (_, env) = app.post("/v1/environments", t, json!({"name": "prod"})).await;
    let now = OffsetDateTime::now_utc();
    for chunk in (0..10_000).collect::<Vec<i64>>().chunks(500) {
        let items: Vec<_> = chunk
            .iter()
            .map(|n| {
                json!({"environments": ["prod"], "summary": format!("change {n} to the load balancer"),
                       "occurred_at": at(now - time::Duration::seconds(n + 1))})
            })
            .collect();
        let (status, answer) = app.post("/v1/changes/batch", t, json!({"items": items})).await;
        assert_eq!((status, answer["failed"].as_i64()), (200, Some(0)), "{answer}");
    }
    let params = domain::timeline::TimelineParams {
        since: Some("0001-01-01T00:00:00Z".into()),
        q: Some("no such words".into()),
        ..Default::default()
    };
    let env_id: uuid::Uuid = env["id"].as_str().unwrap().parse().unwrap();
    let query = domain::timeline::TimelineRequest::parse(params, now).unwrap().query(vec![env_id]).unwrap();

    let patient = storage::connect_with(&app.db.url, storage::StoreSettings::default()).await.unwrap();
    assert_eq!(patient.timeline(org.id, &query).await.unwrap().len(), 0, "with time, the search finds nothing");
    let hasty = storage::StoreSettings { statement_timeout: std::time::Duration::from_millis(1) };
    let hasty = storage::connect_with(&app.db.url, hasty).await.unwrap();
    let stopped = hasty.timeline(org.id, &query).await;
    assert!(matches!(stopped, Err(domain::StoreError::TimedOut)), "{stopped:?}");
    // On SQLite the interrupt is a handler on the connection: the interrupted connection goes
    // back to the pool and serves the next queries. (PostgreSQL's timeout is per statement; a
    // 1 ms bound on a real query there would only measure this machine's noise.)
    if backend == Backend::Postgres {
        return;
    }
    // Its deadline is over, and only that read's: the connection's next users, here writes of 50
    // items (thousands of SQLite steps, each checked by whatever handler the connection was left
    // with), are not interrupted. Ten writes, as the pool hands out its idle connections in turn.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let ctx = domain::cloudtrail::RecordContext {
        connection_id: uuid::Uuid::nil(),
        account_id: "123456789012",
        region: "us-east-1",
        fallback_time: now,
    };
    for write in 0..10 {
        let items: Vec<_> = (0..50)
            .map(|n| {
                let record = json!({"eventID": format!("after-the-deadline-{write}-{n}"), "eventName": "RunInstances",
                                    "eventSource": "ec2.amazonaws.com", "eventTime": at(now), "readOnly": false,
                                    "awsRegion": "us-east-1"});
                let mut item = domain::cloudtrail::normalize(&record, &ctx).event;
                item.connection_id = None;
                item.environment_ids = vec![env_id];
                item
            })
            .collect();
        let written = hasty.insert_events(org.id, &items).await;
        assert_eq!(written.map(|w| w.len()).map_err(|e| e.to_string()), Ok(50), "write {write} after a stopped read");
    }
    let quick = domain::timeline::TimelineParams { limit: Some(1), ..Default::default() };
    let quick = domain::timeline::TimelineRequest::parse(quick, now).unwrap().query(vec![env_id]).unwrap();
    for _ in 0..10 {
        assert!(hasty.timeline(org.id, &quick).await.is_ok(), "a one-item page fits in the timeout");
    }
}

/// A token lacking the scope learns nothing from how its body would have been judged: 403 comes
/// before 400 (malformed JSON), 415 and 422.
async fn a_token_without_the_scope_is_refused_before_its_body_is_read(backend: Backend) {
    let app = app_or_skip!(backend, "a_token_without_the_scope_is_refused_before_its_body_is_read");
    let org = app.org("acme").await;
    let (_, created) = app.post("/v1/tokens", &org.admin_token, json!({"name": "reader", "scopes": ["read"]})).await;
    let reader = created["secret"].as_str().unwrap().to_owned();
    for (method, path) in [
        ("POST", "/v1/environments"),
        ("POST", "/v1/tokens"),
        ("POST", "/v1/deploys"),
        ("PATCH", "/v1/environments/prod"),
    ] {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth(&reader)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{method} {path}");
    }
    let (status, problem) = app.get("/v1/connections?limit=ten", &reader).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")), "before the query too: {problem}");
}

/// `[null, null]` is not a deploy: serde would read an array as the struct's fields in order.
/// The request is refused whole, naming the item, and nothing of it is stored.
async fn a_batch_item_that_is_not_an_object_fails_the_request(backend: Backend) {
    let app = app_or_skip!(backend, "a_batch_item_that_is_not_an_object_fails_the_request");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "prod"})).await;
    let good = json!({"environment": "prod", "service": "api", "version": "v1", "status": "succeeded",
                      "started_at": at(OffsetDateTime::now_utc())});
    let (status, problem) = app.post("/v1/deploys/batch", t, json!({"items": [good, ["prod", "api"]]})).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("items[1]")), "{problem}");
    let (_, timeline) = app.get("/v1/environments/prod/timeline", t).await;
    assert_eq!(timeline["items"].as_array().unwrap().len(), 0, "nothing of the refused batch");
}

/// `environments: []` names no environment; it is refused even beside `environment`, as the
/// schema's `minItems: 1` says.
async fn an_empty_list_of_environments_names_none(backend: Backend) {
    let app = app_or_skip!(backend, "an_empty_list_of_environments_names_none");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    app.post("/v1/environments", t, json!({"name": "prod"})).await;
    let deploy = json!({"environment": "prod", "environments": [], "service": "api", "version": "v1",
                        "status": "succeeded", "started_at": at(OffsetDateTime::now_utc())});
    let (status, problem) = app.post("/v1/deploys", t, deploy).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("environments")), "{problem}");
    // JSON has one number type: 7.0 days is 7 days.
    let (status, c) =
        app.post("/v1/connections", t, json!({"name": "main", "regions": ["us-east-1"], "lookback_days": 7.0})).await;
    assert_eq!((status, c["lookback_days"].as_i64()), (201, Some(7)), "{c}");
}
