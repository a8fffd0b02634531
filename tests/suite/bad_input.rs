//! Malformed, hostile and oversized input gets a problem document that says what is wrong, and
//! never a 500.

use serde_json::{json, Value};
use test_support::{Backend, TestApp};

on_both_backends!(
    missing_or_bad_tokens_are_401,
    malformed_bodies_are_400_and_invalid_fields_422,
    oversized_bodies_are_413,
    bad_query_parameters,
    unknown_routes_and_methods_are_problems,
    timeline_parameters_are_checked,
    hostile_input_never_gets_a_500,
    health_docs_and_metrics,
);

async fn raw(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Value) {
    let mut request = app.client.request(method.parse().unwrap(), app.url(path)).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = response.bytes().await.unwrap();
    (status, content_type, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn assert_problem(status: u16, content_type: &str, problem: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["status"], expected_status);
    assert_eq!(problem["code"], code, "{problem}");
    assert!(!problem["detail"].as_str().unwrap_or("").is_empty(), "a problem says what is wrong: {problem}");
}

async fn missing_or_bad_tokens_are_401(backend: Backend) {
    let app = app_or_skip!(backend, "missing_or_bad_tokens_are_401");
    let response = app.client.get(app.url("/v1/environments")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    for header in
        ["Bearer ", "Bearer ct_not_a_real_token_at_all_000000000000", "Basic dXNlcjpwYXNz", "ct_token_without_scheme"]
    {
        let response =
            app.client.get(app.url("/v1/environments")).header("authorization", header).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{header}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "unauthorized");
    }
}

async fn malformed_bodies_are_400_and_invalid_fields_422(backend: Backend) {
    let app = app_or_skip!(backend, "malformed_bodies_are_400_and_invalid_fields_422");
    let org = app.org("acme").await;
    let t = Some(org.admin_token.as_str());
    let json = Some("application/json");

    let (s, ct, p) = raw(&app, "POST", "/v1/environments", t, json, b"{\"name\": ".to_vec()).await;
    assert_problem(s, &ct, &p, 400, "malformed_json");

    let (s, ct, p) =
        raw(&app, "POST", "/v1/environments", t, json, br#"{"name": "x", "colour": "red"}"#.to_vec()).await;
    assert_problem(s, &ct, &p, 422, "validation_failed");
    assert_eq!(p["errors"][0]["field"], "colour", "the unknown field is named: {p}");

    let (s, ct, p) = raw(&app, "POST", "/v1/environments", t, json, br#"{"name": 5}"#.to_vec()).await;
    assert_problem(s, &ct, &p, 422, "validation_failed");
    assert_eq!(p["errors"][0]["field"], "name");

    let (s, ct, p) = raw(&app, "POST", "/v1/environments", t, json, br#"{"slug": "prod"}"#.to_vec()).await;
    assert_problem(s, &ct, &p, 422, "validation_failed");
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("name"), "{p}");

    let (s, p) = app
        .post(
            "/v1/environments",
            org.admin_token.as_str(),
            json!({"name": "", "slug": "Not Valid", "description": "x".repeat(3000)}),
        )
        .await;
    assert_eq!(s, 422);
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "slug", "description"], "every invalid field at once: {p}");

    let (s, p) = app.post("/v1/environments", org.admin_token.as_str(), json!({"name": "n".repeat(101)})).await;
    assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("name")));

    let (s, ct, p) = raw(&app, "POST", "/v1/environments", t, Some("text/plain"), br#"{"name": "x"}"#.to_vec()).await;
    assert_problem(s, &ct, &p, 415, "unsupported_media_type");
    let (s, ct, p) = raw(&app, "POST", "/v1/environments", t, None, br#"{"name": "x"}"#.to_vec()).await;
    assert_problem(s, &ct, &p, 415, "unsupported_media_type");
}

async fn oversized_bodies_are_413(backend: Backend) {
    let settings = api::HttpSettings { body_limit_bytes: 4096, ..Default::default() };
    let aws = test_support::aws_access("http://127.0.0.1:9", None).await;
    let Some(app) = TestApp::spawn_with(backend, settings, aws).await else {
        return test_support::skipped("oversized_bodies_are_413");
    };
    let org = app.org("acme").await;
    let body = serde_json::to_vec(&json!({"name": "x", "description": "d".repeat(10_000)})).unwrap();
    let (s, ct, p) =
        raw(&app, "POST", "/v1/environments", Some(&org.admin_token), Some("application/json"), body).await;
    assert_problem(s, &ct, &p, 413, "payload_too_large");
    // Sent whole by a real client, a body far past the limit still gets its answer, every time:
    // the server reads out what it refused rather than closing the connection under the
    // client's writing, whose reset would lose the answer.
    let huge = serde_json::to_vec(&json!({"name": "x", "description": "d".repeat(3 * 1024 * 1024)})).unwrap();
    for attempt in 0..10 {
        let token = Some(org.admin_token.as_str());
        let (s, ct, p) = raw(&app, "POST", "/v1/environments", token, Some("application/json"), huge.clone()).await;
        assert_eq!(s, 413, "attempt {attempt}");
        assert_problem(s, &ct, &p, 413, "payload_too_large");
    }
}

async fn bad_query_parameters(backend: Backend) {
    let app = app_or_skip!(backend, "bad_query_parameters");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    for limit in ["0", "501", "-1"] {
        let (s, p) = app.get(&format!("/v1/environments?limit={limit}"), t).await;
        assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("limit")), "{limit}: {p}");
    }
    // A value of the wrong type is an invalid value like any other (#10.16): 422 naming it.
    for limit in ["many", ""] {
        let (s, p) = app.get(&format!("/v1/environments?limit={limit}"), t).await;
        assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("limit")), "{limit:?}: {p}");
    }
    let (s, p) = app.get("/v1/environments?cursor=bm90LWEtY3Vyc29y", t).await;
    assert_eq!((s, p["code"].as_str()), (400, Some("invalid_cursor")), "{p}");
}

async fn unknown_routes_and_methods_are_problems(backend: Backend) {
    let app = app_or_skip!(backend, "unknown_routes_and_methods_are_problems");
    let org = app.org("acme").await;
    let (s, ct, p) = raw(&app, "GET", "/v1/nothing-here", Some(&org.admin_token), None, vec![]).await;
    assert_problem(s, &ct, &p, 404, "not_found");
    let (s, ct, p) = raw(&app, "PUT", "/v1/environments", Some(&org.admin_token), None, vec![]).await;
    assert_problem(s, &ct, &p, 405, "method_not_allowed");
    for path in ["/v1/tokens/not-a-uuid", "/v1/tokens/00000000-0000-0000-0000-000000000000"] {
        let (s, ct, p) = raw(&app, "DELETE", path, Some(&org.admin_token), None, vec![]).await;
        assert_problem(s, &ct, &p, 404, "not_found");
    }
    for path in ["/v1/environments/UPPER", "/v1/environments/%00", "/v1/environments/%FF%FE", "/v1/environments/a%2Fb"]
    {
        let (s, ct, p) = raw(&app, "GET", path, Some(&org.admin_token), None, vec![]).await;
        assert!(s == 404 || s == 400, "{path}: {s} {p}");
        assert_eq!(ct, "application/problem+json", "{path}");
    }
}

/// Every operation of the OpenAPI document that takes a body gets a series of hostile bodies:
/// none may make the server fail.
async fn hostile_input_never_gets_a_500(backend: Backend) {
    let app = app_or_skip!(backend, "hostile_input_never_gets_a_500");
    let org = app.org("acme").await;
    let (_, env) = app.post("/v1/environments", &org.admin_token, json!({"name": "prod"})).await;
    assert!(env["id"].is_string());
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<Vec<u8>> = vec![
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"just a string\"".to_vec(),
        b"{}".to_vec(),
        deep.into_bytes(),
        br#"{"name": "\u0000", "slug": "a", "description": "\u0000"}"#.to_vec(),
        br#"{"name": "ok", "description": "nul \u0000 inside"}"#.to_vec(),
        br#"{"name": 1e400}"#.to_vec(),
        br#"{"name": "x", "name": "y"}"#.to_vec(),
        br#"{"name": "\ud800"}"#.to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        br#"{"name": ["a"], "scopes": "admin", "slug": {"$ne": null}}"#.to_vec(),
        format!(r#"{{"name": "{}"}}"#, "é".repeat(50_000)).into_bytes(),
        br#"{"name": "'; DROP TABLE environments; --", "scopes": ["read"]}"#.to_vec(),
    ];
    let document = api::openapi_document();
    let mut exercised = 0;
    for (path, item) in document.paths.paths.iter() {
        let operations = [("POST", &item.post), ("PUT", &item.put), ("PATCH", &item.patch)];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            if operation.request_body.is_none() {
                continue;
            }
            let path = path.replace("{env}", "prod").replace("{id}", &uuid::Uuid::now_v7().to_string());
            for body in &bodies {
                let (s, ct, p) =
                    raw(&app, method, &path, Some(&org.admin_token), Some("application/json"), body.clone()).await;
                assert!(
                    s < 500,
                    "{method} {path} with {:?} answered {s}: {p}",
                    String::from_utf8_lossy(&body[..body.len().min(60)])
                );
                // PutAuditEvents is AWS's API: its errors are AWS's JSON (`{"message"}`), which
                // the SDKs read; every other operation answers problem+json.
                let expected = if path == "/PutAuditEvents" { "application/json" } else { "application/problem+json" };
                if s >= 400 {
                    assert_eq!(ct, expected, "{method} {path}");
                }
            }
            exercised += 1;
        }
    }
    assert!(exercised >= 3, "the document lists the operations that take a body");
    assert_eq!(app.get("/readyz", &org.admin_token).await.0, 200, "and the server still answers");
}

async fn health_docs_and_metrics(backend: Backend) {
    let app = app_or_skip!(backend, "health_docs_and_metrics");
    let (s, body) = app.call("GET", "/healthz", None, None).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("ok")));
    let (s, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("ready")));
    let (s, doc) = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, serde_json::to_value(api::openapi_document()).unwrap(), "the served document is the generated one");

    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.contains("/v1/environments/{env}") && html.contains("problem-validation_failed"));
    assert!(!html.contains("<script"), "the reference needs no script and downloads nothing");

    let response = app.client.get(app.url("/healthz")).header("accept-encoding", "gzip").send().await.unwrap();
    assert!(response.headers().get("x-request-id").is_some());

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"http_requests_total{method="GET",route="/healthz",status="200"}"#), "{metrics}");
    assert!(metrics.contains("http_request_duration_seconds_bucket"), "latencies are histograms");
}

async fn timeline_parameters_are_checked(backend: Backend) {
    let app = app_or_skip!(backend, "timeline_parameters_are_checked");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    let (_, prod) = app.post("/v1/environments", t, json!({"name": "prod"})).await;
    app.post("/v1/environments", t, json!({"name": "staging"})).await;
    let base = "/v1/environments/prod/timeline";
    let (s, p) = app.get(&format!("{base}?since=2026-11-20T10:00:00Z&until=2026-11-20T09:00:00Z"), t).await;
    assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("since")), "{p}");
    let (s, p) = app.get(&format!("{base}?since=yesterday"), t).await;
    assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("since")), "{p}");
    for limit in ["0", "501"] {
        assert_eq!(app.get(&format!("{base}?limit={limit}"), t).await.0, 422);
    }
    let (s, p) = app.get(&format!("{base}?kind=incident"), t).await;
    assert_eq!((s, p["code"].as_str()), (422, Some("validation_failed")), "{p}");
    let prod_id: uuid::Uuid = prod["id"].as_str().unwrap().parse().unwrap();
    let now = domain::time_util::now();
    let position = domain::timeline::CursorPosition {
        since: now - time::Duration::days(1),
        until: now,
        occurred_at: now,
        id: uuid::Uuid::now_v7(),
    };
    let prod_cursor = domain::timeline::encode_cursor(&[prod_id], &position);
    let (s, p) = app.get(&format!("/v1/environments/staging/timeline?cursor={prod_cursor}"), t).await;
    assert_eq!((s, p["code"].as_str()), (400, Some("invalid_cursor")), "another environment's cursor: {p}");
    let (s, p) = app.get(&format!("{base}?cursor=dGwuZ2FyYmFnZQ"), t).await;
    assert_eq!((s, p["code"].as_str()), (400, Some("invalid_cursor")), "a tampered cursor: {p}");
    let (s, p) = app.get(&format!("{base}?cursor={prod_cursor}"), t).await;
    assert_eq!((s, p["items"].as_array().map(Vec::len)), (200, Some(0)), "{p}");
}
