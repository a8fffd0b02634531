//! API tokens: shown once, scoped, revocable.

use serde_json::json;
use test_support::Backend;

on_both_backends!(tokens_are_shown_once_scoped_and_revocable);

async fn tokens_are_shown_once_scoped_and_revocable(backend: Backend) {
    let app = app_or_skip!(backend, "tokens_are_shown_once_scoped_and_revocable");
    let org = app.org("acme").await;
    let admin = org.admin_token.as_str();

    let (status, created) = app.post("/v1/tokens", admin, json!({"name": "deploy bot", "scopes": ["write"]})).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("ct_") && secret.len() >= 46, "{secret}");
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["scopes"], json!(["write"]));

    let (_, list) = app.get("/v1/tokens", admin).await;
    let listed = list["items"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(!list.to_string().contains(&secret), "a listed token never shows its secret");
    assert!(listed.iter().all(|t| t.get("secret").is_none() && t.get("secret_hash").is_none()));

    // A write-only token cannot read, nor administer.
    let (status, problem) = app.get("/v1/environments", &secret).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    assert!(problem["detail"].as_str().unwrap().contains("read"));
    assert_eq!(app.post("/v1/tokens", &secret, json!({"name": "x", "scopes": ["admin"]})).await.0, 403);

    let (status, reader) = app.post("/v1/tokens", admin, json!({"name": "frontend", "scopes": ["read"]})).await;
    assert_eq!(status, 201);
    let reader_secret = reader["secret"].as_str().unwrap();
    assert_eq!(app.get("/v1/environments", reader_secret).await.0, 200);
    assert_eq!(app.post("/v1/environments", reader_secret, json!({"name": "x"})).await.0, 403);

    let id = reader["id"].as_str().unwrap();
    assert_eq!(app.call("DELETE", &format!("/v1/tokens/{id}"), Some(admin), None).await.0, 204);
    let (status, problem) = app.get("/v1/environments", reader_secret).await;
    assert_eq!((status, problem["code"].as_str()), (401, Some("unauthorized")), "a deleted token stops working");
    assert_eq!(app.call("DELETE", &format!("/v1/tokens/{id}"), Some(admin), None).await.0, 404);

    let (status, problem) = app.post("/v1/tokens", admin, json!({"name": "x", "scopes": ["read", "root"]})).await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "scopes[1]");
    let (status, problem) = app.post("/v1/tokens", admin, json!({"name": "x", "scopes": []})).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("scopes")));
}
