use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::posted::{alert, AlertInput};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::batch::{self, Batch, BatchResponse};
use super::path_id;
use super::timeline::TimelineItemView;
use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, Caller, Reader, Writer};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_alert))
        .routes(routes!(create_alerts))
        .routes(routes!(get_alert_suspects))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // names the values of `severity` in the OpenAPI document
pub enum AlertSeverity {
    Critical,
    Error,
    Warning,
    Info,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // names the values of `status` in the OpenAPI document
pub enum AlertStatus {
    Triggered,
    Acknowledged,
    Resolved,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAlert {
    /// An environment's slug; or give `environments` (one of the two is required).
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub environment: Option<String>,
    /// 1–50 environment slugs.
    #[schema(min_items = 1, max_items = 50)]
    pub environments: Option<Vec<String>>,
    pub title: String,
    #[schema(value_type = AlertSeverity)]
    pub severity: String,
    #[schema(value_type = AlertStatus)]
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    /// The alerting tool, e.g. `pagerduty`: alerts are unique per (source, external_id).
    pub source: String,
    /// The service alerting, which suspects of the same service are ranked up for.
    pub service: Option<String>,
    pub url: Option<String>,
    pub external_id: Option<String>,
}

async fn store_alert(
    state: &AppState,
    caller: &Caller,
    body: CreateAlert,
) -> ApiResult<(StatusCode, TimelineItemView)> {
    let posted = alert(AlertInput {
        environment: body.environment.as_deref(),
        environments: body.environments.as_deref(),
        title: &body.title,
        severity: &body.severity,
        status: &body.status,
        started_at: body.started_at,
        resolved_at: body.resolved_at,
        source: &body.source,
        service: body.service.as_deref(),
        url: body.url.as_deref(),
        external_id: body.external_id.as_deref(),
    })?;
    batch::store(state, caller, posted).await
}

/// Record an alert; a later post with the same (source, external_id) updates its status.
#[utoipa::path(post, path = "/v1/alerts", tag = "changes", operation_id = "create_alert",
    request_body = CreateAlert, security(("bearer" = ["write"])),
    responses((status = 201, description = "Created", body = TimelineItemView), (status = 200, description = "Updated", body = TimelineItemView)))]
async fn create_alert(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<CreateAlert>,
) -> ApiResult<(StatusCode, Json<TimelineItemView>)> {
    let (status, item) = store_alert(&state, &caller, body).await?;
    Ok((status, Json(item)))
}

/// Record up to 500 alerts; each item succeeds or fails on its own.
#[utoipa::path(post, path = "/v1/alerts/batch", tag = "changes", operation_id = "create_alerts",
    request_body = Batch, security(("bearer" = ["write"])),
    responses((status = 200, description = "Every item's outcome", body = BatchResponse)))]
async fn create_alerts(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<Batch>,
) -> ApiResult<Json<BatchResponse>> {
    Ok(Json(batch::run(body, |item: CreateAlert| store_alert(&state, &caller, item)).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuspectParams {
    /// How far before the alert to look, 1–10080 minutes (default 120).
    #[serde(default, deserialize_with = "domain::validation::query_value")]
    #[param(minimum = 1, maximum = 10080)]
    pub window_minutes: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct SuspectView {
    pub item: TimelineItemView,
    /// Higher is more suspect; see `reasons` for what it is made of.
    pub score: f64,
    pub reasons: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SuspectsResponse {
    pub alert: TimelineItemView,
    pub window_minutes: i64,
    pub items: Vec<SuspectView>,
}

/// The changes in the alert's environments in the window before it started, ranked, each with
/// a score and the reasons for it.
#[utoipa::path(get, path = "/v1/alerts/{id}/suspects", tag = "changes", operation_id = "get_alert_suspects",
    params(("id" = Uuid, Path, description = "The alert's id (a timeline item of kind alert)"), SuspectParams),
    security(("bearer" = ["read"])),
    responses((status = 200, body = SuspectsResponse), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_alert_suspects(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<SuspectParams>,
) -> ApiResult<Json<SuspectsResponse>> {
    let suspects = state.suspects(caller.org_id, path_id(&id, "alert")?, params.window_minutes).await?;
    Ok(Json(SuspectsResponse {
        alert: suspects.alert.into(),
        window_minutes: suspects.window_minutes,
        items: suspects
            .items
            .into_iter()
            .map(|s| SuspectView { item: s.item.into(), score: s.score, reasons: s.reasons })
            .collect(),
    }))
}
