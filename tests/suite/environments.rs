//! Environments through HTTP, as an admin and a frontend use them.

use serde_json::json;
use test_support::Backend;

on_both_backends!(environments_crud_by_id_and_slug, environment_list_pages);

async fn environments_crud_by_id_and_slug(backend: Backend) {
    let app = app_or_skip!(backend, "environments_crud_by_id_and_slug");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();

    let (status, created) =
        app.post("/v1/environments", t, json!({"name": "Production EU", "description": "eu-west-1"})).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["slug"], "production-eu", "slug derived from the name");
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, by_slug) = app.get("/v1/environments/production-eu", t).await;
    assert_eq!(status, 200);
    assert_eq!(by_slug, created);
    let (_, by_id) = app.get(&format!("/v1/environments/{id}"), t).await;
    assert_eq!(by_id, created);

    let (status, dup) = app.post("/v1/environments", t, json!({"name": "Other", "slug": "production-eu"})).await;
    assert_eq!((status, dup["code"].as_str()), (409, Some("conflict")), "{dup}");

    let (status, patched) = app
        .call("PATCH", "/v1/environments/production-eu", Some(t), Some(json!({"slug": "prod-eu", "description": null})))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["slug"], "prod-eu");
    assert_eq!(patched["name"], "Production EU");
    assert_eq!(patched["description"], serde_json::Value::Null);
    assert_eq!(app.get("/v1/environments/production-eu", t).await.0, 404, "the old slug no longer names it");

    let (status, list) = app.get("/v1/environments", t).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["next_cursor"], serde_json::Value::Null);

    assert_eq!(app.call("DELETE", &format!("/v1/environments/{id}"), Some(t), None).await.0, 204);
    assert_eq!(app.get(&format!("/v1/environments/{id}"), t).await.0, 404);
    assert_eq!(app.call("DELETE", "/v1/environments/prod-eu", Some(t), None).await.0, 404);
}

async fn environment_list_pages(backend: Backend) {
    let app = app_or_skip!(backend, "environment_list_pages");
    let org = app.org("acme").await;
    let t = org.admin_token.as_str();
    for i in 0..5 {
        assert_eq!(app.post("/v1/environments", t, json!({"name": format!("env {i}")})).await.0, 201);
    }
    let mut slugs = Vec::new();
    let mut path = "/v1/environments?limit=2".to_owned();
    loop {
        let (status, page) = app.get(&path, t).await;
        assert_eq!(status, 200, "{page}");
        slugs.extend(page["items"].as_array().unwrap().iter().map(|e| e["slug"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/environments?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(slugs, ["env-0", "env-1", "env-2", "env-3", "env-4"]);
}
