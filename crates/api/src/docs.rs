//! `/openapi.json` and `/docs`: the document, and a readable reference rendered from it on the
//! server. The page needs no script and no download, so it works offline and behind firewalls.

use std::fmt::Write;
use std::sync::Arc;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use crate::error::PROBLEM_CODES;
use crate::AppState;

pub fn router(document: Arc<utoipa::openapi::OpenApi>) -> Router<AppState> {
    let json = Arc::new(document.to_pretty_json().unwrap_or_default());
    let html = Arc::new(render(&serde_json::from_str(&json).unwrap_or(Value::Null)));
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json.as_str().to_owned()) }),
        )
        .route("/docs", get(move || async move { Html(html.as_str().to_owned()).into_response() }))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).map(esc).unwrap_or_default()
}

/// A schema in a few words: `EnvironmentView`, `array of string`, `string (date-time)`, …
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = esc(r.rsplit('/').next().unwrap_or(r));
        return format!("<a href=\"#schema-{name}\">{name}</a>");
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema.get(combinator).and_then(Value::as_array) {
            return parts.iter().map(type_of).collect::<Vec<_>>().join(" | ");
        }
    }
    let ty = match schema.get("type") {
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" | "),
        Some(Value::String(t)) => t.clone(),
        _ => "any".to_owned(),
    };
    if ty.starts_with("array") {
        return format!("array of {}", schema.get("items").map(type_of).unwrap_or_default());
    }
    match schema.get("format").and_then(Value::as_str) {
        Some(format) => format!("{} ({})", esc(&ty), esc(format)),
        None => esc(&ty),
    }
}

fn render(doc: &Value) -> String {
    let mut out = String::new();
    let info = &doc["info"];
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{title} API reference</title><style>\
         body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         code,.path{{font-family:ui-monospace,monospace}}table{{border-collapse:collapse;margin:.5rem 0}}\
         td,th{{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}}\
         .m{{display:inline-block;min-width:4rem;font-weight:bold}}h3{{margin-bottom:.2rem}}</style></head><body>\
         <h1>{title} API reference</h1><p>{description}</p><p>Version {version}. Machine-readable: \
         <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI {openapi}). Authenticate with \
         <code>Authorization: Bearer &lt;token&gt;</code>.</p><h2>Operations</h2>",
        title = text(info, "title"),
        description = text(info, "description"),
        version = text(info, "version"),
        openapi = text(doc, "openapi"),
    );
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                if let Some(op) = item.get(method) {
                    render_operation(&mut out, method, path, op);
                }
            }
        }
    }
    out.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let _ = write!(out, "<h3 id=\"schema-{n}\">{n}</h3><p>{}</p>", text(schema, "description"), n = esc(name));
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let required: Vec<&str> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                out.push_str("<table><tr><th>field</th><th>type</th><th>description</th></tr>");
                for (field, prop) in props {
                    let mark = if required.contains(&field.as_str()) { " (required)" } else { "" };
                    let _ = write!(
                        out,
                        "<tr><td><code>{}</code>{mark}</td><td>{}</td><td>{}</td></tr>",
                        esc(field),
                        type_of(prop),
                        text(prop, "description")
                    );
                }
                out.push_str("</table>");
            } else {
                let _ = write!(out, "<p>{}</p>", type_of(schema));
            }
        }
    }
    out.push_str(
        "<h2>Errors</h2><p>Every error is <code>application/problem+json</code>: \
        <code>{type, title, status, detail, code, errors?}</code>. Branch on <code>code</code>.</p>\
        <table><tr><th>code</th><th>status</th><th>meaning</th></tr>",
    );
    for (code, status, meaning) in PROBLEM_CODES {
        let _ = write!(
            out,
            "<tr id=\"problem-{code}\"><td><code>{code}</code></td><td>{status}</td><td>{}</td></tr>",
            esc(meaning)
        );
    }
    out.push_str("</table></body></html>");
    out
}

fn render_operation(out: &mut String, method: &str, path: &str, op: &Value) {
    let scopes: Vec<String> = op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("bearer").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .map(esc)
        .collect();
    let _ = write!(
        out,
        "<h3 id=\"op-{id}\"><span class=m>{m}</span> <span class=path>{p}</span></h3><p>{summary} {description}</p>",
        id = text(op, "operationId"),
        m = method.to_uppercase(),
        p = esc(path),
        summary = text(op, "summary"),
        description = text(op, "description"),
    );
    if !scopes.is_empty() {
        let _ = write!(out, "<p>Token scope: <code>{}</code></p>", scopes.join(", "));
    }
    if let Some(params) = op["parameters"].as_array() {
        out.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>");
        for p in params {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(p, "name"),
                text(p, "in"),
                type_of(&p["schema"]),
                text(p, "description")
            );
        }
        out.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (media, body) in content {
            let _ = write!(out, "<p>Body ({}): {}</p>", esc(media), type_of(&body["schema"]));
        }
    }
    if let Some(responses) = op["responses"].as_object() {
        out.push_str("<table><tr><th>status</th><th>answer</th></tr>");
        for (status, response) in responses {
            let body = response["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .map(|c| type_of(&c["schema"]))
                .unwrap_or_default();
            let _ = write!(out, "<tr><td>{}</td><td>{} {body}</td></tr>", esc(status), text(response, "description"));
        }
        out.push_str("</table>");
    }
}
