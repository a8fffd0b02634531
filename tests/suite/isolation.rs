//! Organisations never see each other's data: a token of organisation B walks every endpoint of
//! the API against A's resources. The walk is checked against the OpenAPI document, so an
//! endpoint added without joining the walk fails this test.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use test_support::Backend;

on_both_backends!(another_organisation_sees_and_touches_nothing);

fn ids(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

async fn another_organisation_sees_and_touches_nothing(backend: Backend) {
    let standin = test_support::start_standin().await;
    let aws = test_support::aws_access(&standin.url(), None).await;
    let Some(app) = test_support::TestApp::spawn_with(backend, api::HttpSettings::default(), aws).await else {
        return test_support::skipped("another_organisation_sees_and_touches_nothing");
    };
    let a = app.org("a").await;
    let b = app.org("b").await;
    let (_, a_env) = app.post("/v1/environments", &a.admin_token, json!({"name": "prod", "description": "A's"})).await;
    let a_env_id = a_env["id"].as_str().unwrap().to_owned();
    let (_, a_token) = app.post("/v1/tokens", &a.admin_token, json!({"name": "a reader", "scopes": ["read"]})).await;
    let a_token_id = a_token["id"].as_str().unwrap().to_owned();
    let missing = uuid::Uuid::now_v7().to_string();
    let (status, a_conn) = app
        .post(
            "/v1/connections",
            &a.admin_token,
            json!({"name": "A's account", "regions": ["us-east-1"], "default_environment": "prod"}),
        )
        .await;
    assert_eq!(status, 201, "{a_conn}");
    let a_conn_id = a_conn["id"].as_str().unwrap().to_owned();
    let a_external_id = a_conn["external_id"].as_str().unwrap().to_owned();
    let a_role = "arn:aws:iam::222222222222:role/a-reader";
    standin.standin.add_role(aws_standin::RoleSpec::reader(
        a_role,
        test_support::SERVICE_PRINCIPAL,
        Some(a_external_id.clone()),
    ));
    let (status, a_conn) = app
        .call(
            "PUT",
            &format!("/v1/connections/{a_conn_id}/role"),
            Some(&a.admin_token),
            Some(json!({"role_arn": a_role})),
        )
        .await;
    assert_eq!(status, 200, "{a_conn}");

    let mut walked: BTreeSet<(String, String)> = BTreeSet::new();
    let mut walk = |method: &str, template: &str| {
        walked.insert((method.to_owned(), template.to_owned()));
    };
    let bt = b.admin_token.as_str();

    // Reads of A's resources: 404, exactly as for a resource that does not exist.
    let (_, missing_problem) = app.get(&format!("/v1/environments/{missing}"), bt).await;
    for path in [format!("/v1/environments/{a_env_id}"), "/v1/environments/prod".to_owned()] {
        let (status, problem) = app.get(&path, bt).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(problem["detail"], missing_problem["detail"], "nothing tells A's resource from a missing one");
    }
    walk("GET", "/v1/environments/{env}");
    assert_eq!(app.get(&format!("/v1/environments/{a_env_id}/timeline"), bt).await.0, 404);
    walk("GET", "/v1/environments/{env}/timeline");
    let (status, p) = app.get(&format!("/v1/timeline?environment={a_env_id}"), bt).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("environment[0]")), "{p}");
    walk("GET", "/v1/timeline");
    // B cannot follow A's environment live either (a 200 here would be an endless stream).
    assert_eq!(app.get(&format!("/v1/environments/{a_env_id}/timeline/stream"), bt).await.0, 404);
    walk("GET", "/v1/environments/{env}/timeline/stream");
    let (status, p) = app.get(&format!("/v1/timeline/stream?environment={a_env_id}"), bt).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("environment[0]")), "{p}");
    walk("GET", "/v1/timeline/stream");

    let (status, _) =
        app.call("PATCH", &format!("/v1/environments/{a_env_id}"), Some(bt), Some(json!({"name": "mine now"}))).await;
    assert_eq!(status, 404);
    walk("PATCH", "/v1/environments/{env}");
    assert_eq!(app.call("DELETE", &format!("/v1/environments/{a_env_id}"), Some(bt), None).await.0, 404);
    walk("DELETE", "/v1/environments/{env}");
    assert_eq!(app.call("DELETE", &format!("/v1/tokens/{a_token_id}"), Some(bt), None).await.0, 404);
    walk("DELETE", "/v1/tokens/{id}");

    let conn = format!("/v1/connections/{a_conn_id}");
    assert_eq!(app.get(&conn, bt).await.0, 404);
    walk("GET", "/v1/connections/{id}");
    assert_eq!(app.get(&format!("{conn}/setup"), bt).await.0, 404, "B never sees A's external ID");
    walk("GET", "/v1/connections/{id}/setup");
    assert_eq!(app.call("PATCH", &conn, Some(bt), Some(json!({"enabled": false}))).await.0, 404);
    walk("PATCH", "/v1/connections/{id}");
    assert_eq!(app.call("PUT", &format!("{conn}/role"), Some(bt), Some(json!({"role_arn": a_role}))).await.0, 404);
    walk("PUT", "/v1/connections/{id}/role");
    assert_eq!(app.post(&format!("{conn}/validate"), bt, json!({})).await.0, 404);
    walk("POST", "/v1/connections/{id}/validate");
    assert_eq!(app.get(&format!("{conn}/imports"), bt).await.0, 404);
    walk("GET", "/v1/connections/{id}/imports");
    assert_eq!(app.post(&format!("{conn}/sync"), bt, json!({})).await.0, 404);
    walk("POST", "/v1/connections/{id}/sync");
    assert_eq!(app.post(&format!("{conn}/reimport"), bt, json!({})).await.0, 404);
    walk("POST", "/v1/connections/{id}/reimport");
    assert_eq!(app.get(&format!("{conn}/members"), bt).await.0, 404);
    walk("GET", "/v1/connections/{id}/members");
    assert_eq!(app.post(&format!("{conn}/push"), bt, json!({})).await.0, 404, "B cannot rotate A's push secret");
    walk("POST", "/v1/connections/{id}/push");
    // B's own push secret does not open A's push URL.
    let (status, b_push) = app.post("/v1/connections", bt, json!({"name": "b", "regions": ["eu-west-1"]})).await;
    assert_eq!(status, 201);
    let b_conn_id = b_push["id"].as_str().unwrap();
    let (_, b_secret) = app.post(&format!("/v1/connections/{b_conn_id}/push"), bt, json!({})).await;
    let response = app
        .client
        .post(app.url(&format!("/hooks/eventbridge/{a_conn_id}")))
        .header("x-changetrail-push-secret", b_secret["secret"].as_str().unwrap())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(app.call("DELETE", &format!("/v1/connections/{b_conn_id}"), Some(bt), None).await.0, 204);
    assert_eq!(app.call("DELETE", &conn, Some(bt), None).await.0, 404);
    walk("DELETE", "/v1/connections/{id}");

    // The confused deputy: B registers A's role on a connection of its own. The role requires
    // A's external ID, which B's connection does not have, so AWS refuses.
    let (status, b_conn) = app.post("/v1/connections", bt, json!({"name": "not mine", "regions": ["us-east-1"]})).await;
    assert_eq!(status, 201);
    walk("POST", "/v1/connections");
    assert_ne!(b_conn["external_id"], a_external_id.as_str());
    let b_conn_id = b_conn["id"].as_str().unwrap();
    let (status, problem) = app
        .call("PUT", &format!("/v1/connections/{b_conn_id}/role"), Some(bt), Some(json!({"role_arn": a_role})))
        .await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("assume_role_denied")), "{problem}");
    let (_, list) = app.get("/v1/connections", bt).await;
    assert_eq!(ids(&list), vec![b_conn_id.to_owned()]);
    assert!(!list.to_string().contains(&a_external_id));
    walk("GET", "/v1/connections");

    // Items posted by A: B cannot read them, nor post into A's environments, nor update them.
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    let (status, a_alert) = app
        .post(
            "/v1/alerts",
            &a.admin_token,
            json!({"environment": "prod", "title": "A down", "severity": "critical", "status": "triggered",
              "started_at": now, "source": "pagerduty", "external_id": "a-1"}),
        )
        .await;
    assert_eq!(status, 201, "{a_alert}");
    let a_alert_id = a_alert["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/v1/events/{a_alert_id}"), bt).await.0, 404);
    walk("GET", "/v1/events/{id}");
    assert_eq!(app.get(&format!("/v1/alerts/{a_alert_id}/suspects"), bt).await.0, 404);
    walk("GET", "/v1/alerts/{id}/suspects");
    let b_alert = json!({"environment": "prod", "title": "mine", "severity": "info", "status": "resolved", "started_at": now, "source": "pagerduty", "external_id": "a-1"});
    let (status, p) = app.post("/v1/alerts", bt, b_alert.clone()).await;
    assert_eq!(status, 422, "B has no environment prod yet: {p}");
    walk("POST", "/v1/alerts");
    let (status, _) = app.post("/v1/alerts/batch", bt, json!({"items": [b_alert]})).await;
    assert_eq!(status, 200);
    walk("POST", "/v1/alerts/batch");
    let deploy = json!({"environment": "prod", "service": "s", "version": "1", "status": "started", "started_at": now});
    assert_eq!(app.post("/v1/deploys", bt, deploy.clone()).await.0, 422);
    walk("POST", "/v1/deploys");
    assert_eq!(app.post("/v1/deploys/batch", bt, json!({"items": [deploy]})).await.1["failed"], 1);
    walk("POST", "/v1/deploys/batch");
    let change = json!({"summary": "x", "occurred_at": now, "environments": ["prod"]});
    assert_eq!(app.post("/v1/changes", bt, change.clone()).await.0, 422);
    walk("POST", "/v1/changes");
    assert_eq!(app.post("/v1/changes/batch", bt, json!({"items": [change]})).await.1["failed"], 1);
    walk("POST", "/v1/changes/batch");

    // A's webhook source: B can neither see nor change it, and B's own source's hook URL posts
    // into B only (the source id decides the organisation, whoever signs).
    let (status, a_source) = app
        .post("/v1/sources", &a.admin_token, json!({"kind": "github", "name": "A's repo", "environments": ["prod"]}))
        .await;
    assert_eq!(status, 201, "{a_source}");
    let a_source_id = a_source["id"].as_str().unwrap().to_owned();
    let source = format!("/v1/sources/{a_source_id}");
    assert_eq!(app.get(&source, bt).await.0, 404);
    walk("GET", "/v1/sources/{id}");
    assert_eq!(app.get(&format!("{source}/deliveries"), bt).await.0, 404);
    walk("GET", "/v1/sources/{id}/deliveries");
    assert_eq!(app.call("PATCH", &source, Some(bt), Some(json!({"secrets": ["b-chosen-secret-123"]}))).await.0, 404);
    walk("PATCH", "/v1/sources/{id}");
    assert_eq!(app.call("DELETE", &source, Some(bt), None).await.0, 404);
    walk("DELETE", "/v1/sources/{id}");
    let (status, b_source) = app
        .post("/v1/sources", bt, json!({"kind": "github", "name": "B's repo", "secret": "b-chosen-secret-123"}))
        .await;
    assert_eq!(status, 201, "{b_source}");
    walk("POST", "/v1/sources");
    let (_, list) = app.get("/v1/sources", bt).await;
    assert_eq!(ids(&list), vec![b_source["id"].as_str().unwrap().to_owned()]);
    walk("GET", "/v1/sources");
    // B signs a delivery with its own secret and sends it to A's hook URL: refused, nothing stored.
    let body = br#"{"zen": "hi", "hook_id": 1}"#;
    let response = app
        .client
        .post(app.url(&format!("/hooks/github/{a_source_id}")))
        .header("x-github-event", "ping")
        .header("x-hub-signature-256", test_support::github_signature("b-chosen-secret-123", body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let (_, deliveries) = app.get(&format!("{source}/deliveries"), &a.admin_token).await;
    assert_eq!(deliveries["items"].as_array().unwrap().len(), 0, "nothing recorded on A's source");

    // Channels: A's is invisible and untouchable to B; B's key opens only B's channel.
    let (status, a_channel) = app
        .post("/v1/channels", &a.admin_token, json!({"name": "A's IdP", "source": "okta", "environments": ["prod"]}))
        .await;
    assert_eq!(status, 201, "{a_channel}");
    let channel = format!("/v1/channels/{}", a_channel["id"].as_str().unwrap());
    assert_eq!(app.get(&channel, bt).await.0, 404);
    walk("GET", "/v1/channels/{id}");
    let change = json!({"name": "mine", "source": "x", "environments": ["prod"]});
    assert_eq!(app.call("PATCH", &channel, Some(bt), Some(change)).await.0, 404);
    walk("PATCH", "/v1/channels/{id}");
    assert_eq!(app.call("DELETE", &channel, Some(bt), None).await.0, 404);
    walk("DELETE", "/v1/channels/{id}");
    let (status, p) =
        app.post("/v1/channels", bt, json!({"name": "B's", "source": "x", "environments": ["prod"]})).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("environments[0]")), "A's environment: {p}");
    walk("POST", "/v1/channels");
    let (_, list) = app.get("/v1/channels", bt).await;
    assert!(ids(&list).is_empty(), "{list}");
    walk("GET", "/v1/channels");
    let (_, a_channel_now) = app.get(&channel, &a.admin_token).await;
    assert_eq!(a_channel_now["name"], "A's IdP");

    // Rules: A's is invisible and untouchable to B, and B's rules never see A's items.
    let (status, a_rule) = app
        .post(
            "/v1/rules",
            &a.admin_token,
            json!({"name": "A's", "environments": ["prod"], "match": {"preset": "cis-aws-5"},
                   "action": {"pagerduty_alert": {"routing_key": "AROUTINGKEY", "severity": "critical"}}}),
        )
        .await;
    assert_eq!(status, 201, "{a_rule}");
    assert!(!a_rule.to_string().contains("AROUTINGKEY"), "the routing key is never shown: {a_rule}");
    let rule = format!("/v1/rules/{}", a_rule["id"].as_str().unwrap());
    assert_eq!(app.get(&rule, bt).await.0, 404);
    walk("GET", "/v1/rules/{id}");
    let patch = json!({"enabled": false});
    assert_eq!(app.call("PATCH", &rule, Some(bt), Some(patch)).await.0, 404);
    walk("PATCH", "/v1/rules/{id}");
    assert_eq!(app.get(&format!("{rule}/deliveries"), bt).await.0, 404);
    walk("GET", "/v1/rules/{id}/deliveries");
    assert_eq!(app.call("DELETE", &rule, Some(bt), None).await.0, 404);
    walk("DELETE", "/v1/rules/{id}");
    let b_rule = json!({"name": "B's", "environments": ["prod"], "match": {"event_names": ["*"]},
                        "action": {"pagerduty_change": {"routing_key": "BKEY"}}});
    let (status, p) = app.post("/v1/rules", bt, b_rule).await;
    assert_eq!(status, 422, "{p}");
    let b_rule = json!({"name": "B's", "environments": ["prod"], "match": {"event_names": ["Stop*"]},
                        "action": {"pagerduty_change": {"routing_key": "BKEY"}}});
    let (status, p) = app.post("/v1/rules", bt, b_rule).await;
    assert_eq!((status, p["errors"][0]["field"].as_str()), (422, Some("environments")), "A's environment: {p}");
    walk("POST", "/v1/rules");
    let (_, list) = app.get("/v1/rules", bt).await;
    assert!(ids(&list).is_empty(), "{list}");
    walk("GET", "/v1/rules");
    assert_eq!(app.get("/v1/rules/presets", bt).await.0, 200, "presets are everyone's");
    walk("GET", "/v1/rules/presets");
    let (_, a_rule_now) = app.get(&rule, &a.admin_token).await;
    assert_eq!(a_rule_now["enabled"], true, "B's PATCH did not touch A's rule");

    // Lists show only B's own.
    let (_, list) = app.get("/v1/environments", bt).await;
    assert!(ids(&list).is_empty(), "{list}");
    walk("GET", "/v1/environments");
    let (_, list) = app.get("/v1/tokens", bt).await;
    assert!(!ids(&list).contains(&a_token_id));
    assert!(!list.to_string().contains(a.admin_token.as_str()));
    walk("GET", "/v1/tokens");

    // Creating: B's own resources, invisible to A; the same slug is free in B.
    let (status, b_env) = app.post("/v1/environments", bt, json!({"name": "prod"})).await;
    assert_eq!(status, 201);
    walk("POST", "/v1/environments");
    let (status, b_token) = app.post("/v1/tokens", bt, json!({"name": "b", "scopes": ["read"]})).await;
    assert_eq!(status, 201);
    walk("POST", "/v1/tokens");
    let b_reader = b_token["secret"].as_str().unwrap();
    assert_eq!(app.get(&format!("/v1/environments/{a_env_id}"), b_reader).await.0, 404);

    // A's side: everything as it was, nothing of B's.
    let (status, env) = app.get(&format!("/v1/environments/{a_env_id}"), &a.admin_token).await;
    assert_eq!(status, 200);
    assert_eq!(env, a_env);
    let (_, list) = app.get("/v1/environments", &a.admin_token).await;
    assert_eq!(ids(&list), vec![a_env_id.clone()]);
    assert!(!ids(&list).contains(&b_env["id"].as_str().unwrap().to_owned()));
    assert_eq!(app.get("/v1/environments", a_token["secret"].as_str().unwrap()).await.0, 200, "A's token still works");
    let (status, alert_now) = app.get(&format!("/v1/events/{a_alert_id}"), &a.admin_token).await;
    assert_eq!(
        (status, &alert_now["title"]),
        (200, &a_alert["title"]),
        "B's alert with the same external_id did not touch A's"
    );
    let (status, conn_now) = app.get(&format!("/v1/connections/{a_conn_id}"), &a.admin_token).await;
    assert_eq!(status, 200);
    assert_eq!(conn_now, a_conn, "A's connection is untouched");

    let document = api::openapi_document();
    let mut secured = BTreeSet::new();
    for (path, item) in document.paths.paths.iter() {
        let operations = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, operation) in operations {
            if operation.as_ref().is_some_and(|o| o.security.as_ref().is_some_and(|s| !s.is_empty())) {
                secured.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let unwalked: Vec<_> = secured.difference(&walked).collect();
    assert!(unwalked.is_empty(), "these endpoints are not part of the isolation walk: {unwalked:?}");
}
