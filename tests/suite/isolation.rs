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
    let app = app_or_skip!(backend, "another_organisation_sees_and_touches_nothing");
    let a = app.org("a").await;
    let b = app.org("b").await;
    let (_, a_env) = app.post("/v1/environments", &a.admin_token, json!({"name": "prod", "description": "A's"})).await;
    let a_env_id = a_env["id"].as_str().unwrap().to_owned();
    let (_, a_token) = app.post("/v1/tokens", &a.admin_token, json!({"name": "a reader", "scopes": ["read"]})).await;
    let a_token_id = a_token["id"].as_str().unwrap().to_owned();
    let missing = uuid::Uuid::now_v7().to_string();

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

    let (status, _) =
        app.call("PATCH", &format!("/v1/environments/{a_env_id}"), Some(bt), Some(json!({"name": "mine now"}))).await;
    assert_eq!(status, 404);
    walk("PATCH", "/v1/environments/{env}");
    assert_eq!(app.call("DELETE", &format!("/v1/environments/{a_env_id}"), Some(bt), None).await.0, 404);
    walk("DELETE", "/v1/environments/{env}");
    assert_eq!(app.call("DELETE", &format!("/v1/tokens/{a_token_id}"), Some(bt), None).await.0, 404);
    walk("DELETE", "/v1/tokens/{id}");

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
