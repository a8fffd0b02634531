//! The built-in web view (`/ui/`): server-rendered pages over the same application calls as
//! the API, for people rather than programs. Templates (minijinja) and the small stylesheet and
//! script are compiled into the binary; nothing is fetched from elsewhere, so the
//! Content-Security-Policy allows only this origin and no inline script or style.
//!
//! A browser signs in by pasting an API token, exchanged for a session cookie (`session.rs`);
//! the pages (`pages.rs`) act as that token, with its organisation and scopes.

use std::sync::LazyLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::ApiError;
use crate::AppState;

mod pages;
mod session;

pub use session::SignedIn;

/// Only this origin's own script, styles and images; no inline script or style, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(pages::environments))
        .route("/ui/sign-in", get(session::sign_in_form).post(session::sign_in))
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/environments/{env}", get(pages::timeline))
        .route("/ui/environments/{env}/stream", get(pages::timeline_stream))
        .route("/ui/items/{id}", get(pages::item))
        .route("/ui/alerts/{id}", get(pages::alert))
        .route("/ui/connections", get(pages::connections))
        .route("/ui/static/{file}", get(asset))
        .route("/ui/{*rest}", get(|| async { UiError::from(ApiError::not_found("page")) }))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
}

/// The stylesheet, script and icon, as compiled in.
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.css" => (include_str!("../../ui/static/app.css"), "text/css; charset=utf-8"),
        "app.js" => (include_str!("../../ui/static/app.js"), "text/javascript; charset=utf-8"),
        "icon.svg" => (include_str!("../../ui/static/icon.svg"), "image/svg+xml"),
        _ => return UiError::from(ApiError::not_found("file")).into_response(),
    };
    // Not tenant data: a browser may keep it for a few minutes.
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../ui/templates/base.html")),
    ("sign_in.html", include_str!("../../ui/templates/sign_in.html")),
    ("error.html", include_str!("../../ui/templates/error.html")),
    ("environments.html", include_str!("../../ui/templates/environments.html")),
    ("timeline.html", include_str!("../../ui/templates/timeline.html")),
    ("item_row.html", include_str!("../../ui/templates/item_row.html")),
    ("item_fields.html", include_str!("../../ui/templates/item_fields.html")),
    ("item.html", include_str!("../../ui/templates/item.html")),
    ("alert.html", include_str!("../../ui/templates/alert.html")),
    ("connections.html", include_str!("../../ui/templates/connections.html")),
];

/// The templates, parsed once. They are part of the binary, so one that does not parse is a
/// bug that the tests (which render every page) catch; `render` then answers 500.
static ENVIRONMENT: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "a web view template does not parse");
        }
    }
    env.add_filter("utc", utc);
    env.add_filter("kind_icon", |kind: &str| kind_icon(kind).to_owned());
    env.add_filter("kind_label", |kind: &str| kind_label(kind).to_owned());
    env.add_filter("item_href", item_href);
    env
});

/// An RFC 3339 time as "2026-12-02 05:03:11 UTC" (what a page shows before the script turns
/// it into the viewer's time zone, and on hover after).
fn utc(value: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::parse(value, &Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&format).ok())
        .unwrap_or_else(|| value.to_owned())
}

fn kind_icon(kind: &str) -> &'static str {
    match kind {
        "cloudtrail" => "☁",
        "deploy" => "▲",
        "alert" => "⚠",
        "pull_request" => "⑂",
        _ => "✎",
    }
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "cloudtrail" => "CloudTrail",
        "deploy" => "Deploy",
        "alert" => "Alert",
        "pull_request" => "Pull request",
        _ => "Custom",
    }
}

/// Where an item opens: an alert on its suspects, anything else on its record.
fn item_href(item: minijinja::Value) -> String {
    let attr = |name: &str| item.get_attr(name).ok().map(|v| v.to_string()).unwrap_or_default();
    match attr("kind").as_str() {
        "alert" => format!("/ui/alerts/{}", attr("id")),
        _ => format!("/ui/items/{}", attr("id")),
    }
}

/// A template rendered with `context` (any serializable value).
fn render_template(template: &str, context: &impl serde::Serialize) -> Result<String, ApiError> {
    let context = minijinja::Value::from_serialize(context);
    ENVIRONMENT.get_template(template).and_then(|t| t.render(context)).map_err(ApiError::internal)
}

/// A whole page.
fn page(status: StatusCode, template: &str, context: &impl serde::Serialize) -> Response {
    match render_template(template, context) {
        Ok(html) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => UiError::Page(e).into_response(),
    }
}

/// What a page answers when something fails: an HTML page that says what is wrong (the same
/// statuses and words as the API's problem documents), or, without a session, the sign-in page.
#[derive(Debug)]
pub enum UiError {
    SignIn,
    Page(ApiError),
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError::Page(e)
    }
}

impl From<app::AppError> for UiError {
    fn from(e: app::AppError) -> Self {
        UiError::Page(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::SignIn => Redirect::to("/ui/sign-in").into_response(),
            UiError::Page(e) => {
                let heading = e.status.canonical_reason().unwrap_or("Error");
                let context = serde_json::json!({
                    "heading": heading, "detail": e.detail, "fields": e.errors, "signed_in": false,
                });
                // Rendering the error page cannot fail the way other pages might: if it does,
                // the words go out as text.
                match render_template("error.html", &context) {
                    Ok(html) => (e.status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
                    Err(_) => (e.status, format!("{heading}: {}", e.detail)).into_response(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(ENVIRONMENT.get_template(name).is_ok(), "{name} does not parse");
        }
    }

    #[test]
    fn times_show_in_utc_and_text_is_escaped() {
        assert_eq!(utc("2026-12-02T07:03:11+02:00"), "2026-12-02 05:03:11 UTC");
        assert_eq!(utc("not a time"), "not a time");
        let html = render_template(
            "item_row.html",
            &serde_json::json!({"item": {"id": "x", "kind": "deploy", "title": "<script>alert(1)</script>",
                "occurred_at": "2026-12-02T05:03:11Z", "environments": ["prod"], "actor": null}}),
        )
        .unwrap();
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"), "{html}");
        assert!(html.contains("&#x2f;ui&#x2f;items&#x2f;x") && html.contains("2026-12-02 05:03:11 UTC"), "{html}");
    }
}
