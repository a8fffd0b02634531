//! `/hooks/{github,pagerduty}/{source_id}`: deliveries from the providers, authenticated by
//! their signatures (no bearer token), read and posted like any item.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use domain::source::SourceKind;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::error::ApiResult;
use crate::AppState;

/// GitHub sends payloads of up to 25 MB (a push of many commits); the rest of the API keeps
/// its own limit.
pub const HOOK_BODY_LIMIT: usize = 25 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(github_hook))
        .routes(routes!(pagerduty_hook))
        .layer(DefaultBodyLimit::max(HOOK_BODY_LIMIT))
        // A declared length past the limit is refused before any of the body is read.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(HOOK_BODY_LIMIT))
}

/// What became of a delivery.
#[derive(Serialize, ToSchema)]
pub struct HookAnswer {
    /// `stored` or `ignored`.
    pub status: &'static str,
    pub item_id: Option<Uuid>,
    /// Why it was ignored.
    pub detail: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn receive(
    state: &AppState,
    kind: SourceKind,
    source_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<(StatusCode, Json<HookAnswer>)> {
    let (event, delivery_id, signature) = match kind {
        SourceKind::Github => (
            header(headers, "x-github-event"),
            header(headers, "x-github-delivery"),
            header(headers, "x-hub-signature-256"),
        ),
        SourceKind::Pagerduty => (None, header(headers, "x-webhook-id"), header(headers, "x-pagerduty-signature")),
    };
    let delivery = app::HookDelivery { source_id, event, delivery_id, signature, body };
    Ok(match state.receive_hook(kind, delivery).await? {
        app::HookOutcome::Stored { item_id, .. } => {
            (StatusCode::OK, Json(HookAnswer { status: "stored", item_id: Some(item_id), detail: None }))
        }
        // GitHub's `ping` is the webhook's own test: answered as a success, with nothing to store.
        app::HookOutcome::Ignored(why) if event == Some("ping") => {
            (StatusCode::OK, Json(HookAnswer { status: "ignored", item_id: None, detail: Some(why) }))
        }
        app::HookOutcome::Ignored(why) => {
            (StatusCode::ACCEPTED, Json(HookAnswer { status: "ignored", item_id: None, detail: Some(why) }))
        }
    })
}

/// A GitHub webhook delivery. Subscribe the webhook (content type `application/json`, the
/// source's secret) to **Pull requests**, **Deployments**, **Deployment statuses** and
/// **Releases**. `X-Hub-Signature-256` must be the HMAC-SHA256 of the raw body with the secret;
/// otherwise 401 and nothing is stored. A merged pull request becomes a `pull_request` item, a
/// deployment one `deploy` item updated by each status, a published release a `deploy` item;
/// `ping` and other events are answered 202 and ignored. Redeliveries never duplicate.
#[utoipa::path(post, path = "/hooks/github/{source_id}", tag = "sources", operation_id = "receive_github_delivery",
    params(("source_id" = Uuid, Path, description = "The source's id (its `ingest_url`)"),
        ("X-GitHub-Event" = String, Header, description = "The event's name"),
        ("X-GitHub-Delivery" = Option<String>, Header, description = "The delivery's id: a redelivery keeps it"),
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=` and the hex HMAC-SHA256 of the body")),
    request_body(content = Object, content_type = "application/json", description = "The event's payload, up to 25 MB"),
    responses((status = 200, body = HookAnswer, description = "Stored"),
        (status = 202, body = HookAnswer, description = "Ignored: nothing to record"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json",
            description = "Unknown source, or a missing or wrong signature: nothing stored")))]
async fn github_hook(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<HookAnswer>)> {
    receive(&state, SourceKind::Github, &source_id, &headers, &body).await
}

/// A PagerDuty (v3) webhook delivery. Create a webhook subscription for the service or account
/// with the `incident.*` events, its URL the source's `ingest_url`, and give the signing secret
/// PagerDuty shows to the source. `X-PagerDuty-Signature` must carry a `v1=` HMAC-SHA256 of the
/// body with a current secret; otherwise 401. Each incident is one `alert` item, updated as it is
/// acknowledged and resolved; other events are answered 202 and ignored.
#[utoipa::path(post, path = "/hooks/pagerduty/{source_id}", tag = "sources", operation_id = "receive_pagerduty_delivery",
    params(("source_id" = Uuid, Path, description = "The source's id (its `ingest_url`)"),
        ("X-PagerDuty-Signature" = String, Header, description = "`v1=<hex>`, one per active secret, comma-separated"),
        ("X-Webhook-Id" = Option<String>, Header, description = "The delivery's id: repeated across retries")),
    request_body(content = Object, content_type = "application/json", description = "`{\"event\": {…}}`"),
    responses((status = 200, body = HookAnswer, description = "Stored"),
        (status = 202, body = HookAnswer, description = "Ignored: nothing to record"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json",
            description = "Unknown source, or no signature matching a current secret: nothing stored")))]
async fn pagerduty_hook(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<HookAnswer>)> {
    receive(&state, SourceKind::Pagerduty, &source_id, &headers, &body).await
}
