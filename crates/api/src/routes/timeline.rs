use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::BufMut;
use domain::timeline::{TimelineItem, TimelineRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::ListResponse;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, Reader};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_timeline))
        .routes(routes!(get_timelines))
        .routes(routes!(stream_timeline))
        .routes(routes!(stream_timelines))
}

/// The query parameters of a timeline, as the OpenAPI document describes them; the handler
/// reads them as `domain::timeline::TimelineParams`, which validates them.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // describes domain::timeline::TimelineParams in the OpenAPI document
pub struct TimelineParams {
    /// RFC 3339; default: 24 hours before `until`.
    pub since: Option<String>,
    /// RFC 3339; default: now.
    pub until: Option<String>,
    /// Repeatable: `cloudtrail`, `deploy`, `alert`, `pull_request`, `custom`. Default: all.
    #[param(required = false)]
    pub kind: Vec<String>,
    /// Include read-only CloudTrail events (default false).
    pub include_read_only: Option<bool>,
    /// 1–500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Exactly this actor (a user, a role session, a deploy's actor).
    pub actor: Option<String>,
    /// The item's source (`deploy`, `alert:pagerduty`, `custom`, `aws.cloudtrail`) or a CloudTrail
    /// event source (`ec2.amazonaws.com`).
    pub source: Option<String>,
    /// A resource name or ARN, or part of one, case-insensitive (`sg-0abc`, `prod-bucket`).
    pub resource: Option<String>,
    /// Words in the title, case-insensitive.
    pub q: Option<String>,
    /// The `service` label.
    pub service: Option<String>,
    /// Repeatable `key:value`; every one must match the item's labels.
    #[param(required = false)]
    pub label: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnvironmentsParam {
    /// Repeatable: the environments (UUID or slug) whose timelines to merge, 1–20.
    #[serde(default)]
    pub environment: Vec<String>,
}

/// A resource the item is about. For CloudTrail, `type` is the CloudFormation type
/// (`AWS::EC2::SecurityGroup`), `name` its id or name, and `arn` its ARN where the record gives
/// it or it can be derived; the one the change is about has `primary: true` and comes first.
#[derive(Serialize, ToSchema)]
pub struct ResourceView {
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    pub primary: bool,
}

/// One field a change set: `{"field": "ingress", "to": "+tcp/22 0.0.0.0/0"}`; `from` where the
/// record gives the old value.
#[derive(Serialize, ToSchema)]
pub struct ChangeView {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
}

#[derive(Serialize, ToSchema)]
pub struct LinkView {
    pub href: String,
    pub text: String,
}

/// One item of a timeline.
#[derive(Serialize, ToSchema)]
pub struct TimelineItemView {
    pub id: Uuid,
    /// `cloudtrail`, `deploy`, `alert`, `pull_request` or `custom`.
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// What happened, in words: "alice deleted security group sg-0abc (ec2)".
    pub title: String,
    pub actor: Option<String>,
    pub source: String,
    /// The slugs of the environments it belongs to.
    pub environments: Vec<String>,
    pub resources: Vec<ResourceView>,
    /// What the change did, for the CloudTrail events changetrail knows (security group rules,
    /// sharing, public access, policies, keys, trails, sizes): "opened tcp/22 to 0.0.0.0/0 on
    /// security group sg-0abc". Absent for the others and for failed calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The fields the change set, where the record says; empty otherwise.
    pub changes: Vec<ChangeView>,
    pub labels: BTreeMap<String, String>,
    pub links: Vec<LinkView>,
    /// For CloudTrail: event_id, event_name, event_source, region, account_id, read_only,
    /// error_code, source_ip, and `flagged`/`problems` for records that could not be read in full.
    #[schema(value_type = Object)]
    pub details: DetailsView,
    /// When changetrail stored it; `ingested_at - occurred_at` is how late it arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub ingested_at: OffsetDateTime,
    /// How it arrived: `poll` (LookupEvents), `push` (EventBridge), `api`, `webhook` or `channel`
    /// (PutAuditEvents).
    #[schema(example = "push")]
    pub ingested_via: &'static str,
}

/// An item's details as the API writes them, serialised straight from the typed details (no
/// intermediate JSON tree). A CloudTrail item's summary and changes are shown once, beside them.
#[derive(Serialize)]
#[serde(untagged)]
pub enum DetailsView {
    CloudTrail(Box<domain::cloudtrail::CloudTrailDetails>),
    Other(Value),
}

impl From<TimelineItem> for TimelineItemView {
    fn from(i: TimelineItem) -> Self {
        let (summary, changes, details) = match i.details {
            domain::event::Details::CloudTrail(mut d) => {
                let changes = std::mem::take(&mut d.changes)
                    .into_iter()
                    .map(|c| ChangeView { field: c.field, from: c.from, to: c.to })
                    .collect();
                (d.summary.take(), changes, DetailsView::CloudTrail(d))
            }
            domain::event::Details::Other(v) => (None, Vec::new(), DetailsView::Other(v)),
        };
        TimelineItemView {
            id: i.id,
            kind: i.kind.as_str().to_owned(),
            occurred_at: i.occurred_at,
            title: i.title,
            actor: i.actor,
            source: i.source,
            environments: i.environments,
            resources: i
                .resources
                .into_iter()
                .map(|r| ResourceView { resource_type: r.resource_type, name: r.name, arn: r.arn, primary: r.primary })
                .collect(),
            summary,
            changes,
            labels: i.labels,
            links: i.links.into_iter().map(|l| LinkView { href: l.href, text: l.text }).collect(),
            details,
            ingested_at: i.ingested_at,
            ingested_via: i.ingested_via.as_str(),
        }
    }
}

fn page_view(page: domain::Page<TimelineItem>) -> ListResponse<TimelineItemView> {
    ListResponse::from_page(page, TimelineItemView::from)
}

/// The page this organisation was sent for the same request in the last second, if nothing
/// was written since (`app::pages`); else the page `read`, written as JSON and remembered.
async fn remembered_or_read(
    state: &AppState,
    org_id: Uuid,
    uri: &Uri,
    read: impl std::future::Future<Output = app::AppResult<domain::Page<TimelineItem>>>,
) -> ApiResult<Response> {
    let request = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let body = match state.remembered_page(org_id, request) {
        Ok(body) => body,
        Err(ticket) => {
            let mut body = bytes::BytesMut::with_capacity(16 * 1024).writer();
            serde_json::to_writer(&mut body, &page_view(read.await?)).map_err(ApiError::internal)?;
            let body = body.into_inner().freeze();
            state.remember_page(ticket, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

/// An environment's timeline, newest first: CloudTrail changes, deploys, alerts, pull requests
/// and custom changes. Following `next_cursor` yields every matching item once, even while new
/// items arrive.
#[utoipa::path(get, path = "/v1/environments/{env}/timeline", tag = "timeline", operation_id = "get_timeline",
    params(("env" = String, Path, description = "The environment's UUID or slug"), TimelineParams),
    security(("bearer" = ["read"])),
    responses((status = 200, body = ListResponse<TimelineItemView>),
        (status = 400, description = "invalid_cursor or invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid times, kind or limit", body = Problem, content_type = "application/problem+json")))]
async fn get_timeline(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(env): Path<String>,
    uri: Uri,
    ApiQuery(params): ApiQuery<domain::timeline::TimelineParams>,
) -> ApiResult<Response> {
    remembered_or_read(&state, caller.org_id, &uri, state.timeline(caller.org_id, &env, params)).await
}

/// Several environments' timelines merged, newest first; an item in several appears once.
#[utoipa::path(get, path = "/v1/timeline", tag = "timeline", operation_id = "get_timelines",
    params(EnvironmentsParam, TimelineParams), security(("bearer" = ["read"])),
    responses((status = 200, body = ListResponse<TimelineItemView>),
        (status = 400, description = "invalid_cursor or invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown environments, invalid times, kind or limit", body = Problem, content_type = "application/problem+json")))]
async fn get_timelines(
    State(state): State<AppState>,
    Reader(caller): Reader,
    uri: Uri,
    ApiQuery(envs): ApiQuery<EnvironmentsParam>,
    ApiQuery(params): ApiQuery<domain::timeline::TimelineParams>,
) -> ApiResult<Response> {
    remembered_or_read(&state, caller.org_id, &uri, state.timelines(caller.org_id, &envs.environment, params)).await
}

/// The filters of a live timeline (a timeline's, without its window, limit or cursor: a stream
/// follows what is stored from now on).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // describes the filters of domain::timeline::TimelineParams a stream reads
pub struct StreamParams {
    /// Repeatable: `cloudtrail`, `deploy`, `alert`, `pull_request`, `custom`. Default: all.
    #[param(required = false)]
    pub kind: Vec<String>,
    pub include_read_only: Option<bool>,
    pub actor: Option<String>,
    pub source: Option<String>,
    pub resource: Option<String>,
    pub q: Option<String>,
    pub service: Option<String>,
    #[param(required = false)]
    pub label: Vec<String>,
}

/// Heartbeats (SSE comments) this often keep proxies from closing an idle stream.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);

/// The stream's messages as Server-Sent Events, each item's data written by `render` (JSON for
/// the API, a page's row for the web view).
pub(crate) fn event_stream(
    receiver: tokio::sync::mpsc::Receiver<app::StreamMessage>,
    render: impl Fn(TimelineItemView) -> String + Send + 'static,
) -> Response {
    use tokio_stream::StreamExt;
    let events = tokio_stream::wrappers::ReceiverStream::new(receiver).map(move |message| {
        Ok::<_, std::convert::Infallible>(match message {
            app::StreamMessage::Item { item, position } => {
                let data = render(TimelineItemView::from(*item));
                Event::default().id(position.encode()).event("item").data(data)
            }
            app::StreamMessage::Overflow => Event::default().event("overflow").data(format!(
                "this client fell {} items behind, so the stream ends; reconnect with Last-Event-ID to resume",
                app::STREAM_BUFFER
            )),
        })
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT)).into_response()
}

fn json_item(view: TimelineItemView) -> String {
    serde_json::to_string(&view).unwrap_or_else(|_| "{}".to_owned())
}

pub(crate) fn last_event_id(headers: &HeaderMap) -> Option<&str> {
    headers.get("last-event-id").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

/// The environment's new items as Server-Sent Events, each within a second of being stored by
/// any process: an `item` event (its data a timeline item, its id the stream's position) per
/// item that passes the filters. `Last-Event-ID` resumes right after that event, with nothing
/// missed or repeated. Comments every 15 s keep idle connections open; a client that falls 256
/// items behind gets an `overflow` event and the stream ends (reconnect to resume).
#[utoipa::path(get, path = "/v1/environments/{env}/timeline/stream", tag = "timeline", operation_id = "stream_timeline",
    params(("env" = String, Path, description = "The environment's UUID or slug"), StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received, to resume after it")),
    security(("bearer" = ["read"])),
    responses((status = 200, description = "An endless text/event-stream of `item` events", content_type = "text/event-stream", body = String),
        (status = 400, description = "invalid_last_event_id", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid kind or filters", body = Problem, content_type = "application/problem+json")))]
async fn stream_timeline(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(env): Path<String>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<domain::timeline::TimelineParams>,
) -> ApiResult<Response> {
    let environment = state.environment(caller.org_id, &env).await?;
    let request = TimelineRequest::parse(params, domain::time_util::now()).map_err(app::AppError::from)?;
    let receiver = state.open_stream(caller.org_id, vec![environment.id], request, last_event_id(&headers))?;
    Ok(event_stream(receiver, json_item))
}

/// Several environments' new items as one stream of Server-Sent Events (an item in several
/// appears once), as `GET /v1/environments/{env}/timeline/stream` does for one.
#[utoipa::path(get, path = "/v1/timeline/stream", tag = "timeline", operation_id = "stream_timelines",
    params(EnvironmentsParam, StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received, to resume after it")),
    security(("bearer" = ["read"])),
    responses((status = 200, description = "An endless text/event-stream of `item` events", content_type = "text/event-stream", body = String),
        (status = 400, description = "invalid_last_event_id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown environments, invalid kind or filters", body = Problem, content_type = "application/problem+json")))]
async fn stream_timelines(
    State(state): State<AppState>,
    Reader(caller): Reader,
    headers: HeaderMap,
    ApiQuery(envs): ApiQuery<EnvironmentsParam>,
    ApiQuery(params): ApiQuery<domain::timeline::TimelineParams>,
) -> ApiResult<Response> {
    let ids = state.environment_ids(caller.org_id, &envs.environment).await?;
    let request = TimelineRequest::parse(params, domain::time_util::now()).map_err(app::AppError::from)?;
    let receiver = state.open_stream(caller.org_id, ids, request, last_event_id(&headers))?;
    Ok(event_stream(receiver, json_item))
}
