use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::event::EventKind;
use domain::ingest::{alert, AlertInput};
use domain::timeline::TimelineQuery;
use domain::{EnvironmentRef, EnvironmentSlug, Scope};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ingest::{self, Batch, BatchResponse};
use super::path_id;
use super::timeline::TimelineItemView;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_alert))
        .routes(routes!(create_alerts))
        .routes(routes!(get_alert_suspects))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAlert {
    pub environment: Option<String>,
    pub environments: Option<Vec<String>>,
    pub title: String,
    /// `critical`, `error`, `warning` or `info`.
    pub severity: String,
    /// `triggered`, `acknowledged` or `resolved`.
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
    ingest::store(state, caller, posted).await
}

/// Record an alert; a later post with the same (source, external_id) updates its status.
#[utoipa::path(post, path = "/v1/alerts", tag = "changes", operation_id = "create_alert",
    request_body = CreateAlert, security(("bearer" = ["write"])),
    responses((status = 201, description = "Created", body = TimelineItemView), (status = 200, description = "Updated", body = TimelineItemView)))]
async fn create_alert(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateAlert>,
) -> ApiResult<(StatusCode, Json<TimelineItemView>)> {
    caller.require(Scope::Write)?;
    let (status, item) = store_alert(&state, &caller, body).await?;
    Ok((status, Json(item)))
}

/// Record up to 500 alerts; each item succeeds or fails on its own.
#[utoipa::path(post, path = "/v1/alerts/batch", tag = "changes", operation_id = "create_alerts",
    request_body = Batch, security(("bearer" = ["write"])),
    responses((status = 200, description = "Every item's outcome", body = BatchResponse)))]
async fn create_alerts(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Batch>,
) -> ApiResult<Json<BatchResponse>> {
    caller.require(Scope::Write)?;
    Ok(Json(ingest::batch(body, |item: CreateAlert| store_alert(&state, &caller, item)).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuspectParams {
    /// How far before the alert to look, 1–10080 minutes (default 120).
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

const MAX_SUSPECT_CANDIDATES: u32 = 500;

/// The changes in the alert's environments in the window before it started, ranked, each with
/// a score and the reasons for it.
#[utoipa::path(get, path = "/v1/alerts/{id}/suspects", tag = "changes", operation_id = "get_alert_suspects",
    params(("id" = Uuid, Path, description = "The alert's id (a timeline item of kind alert)"), SuspectParams),
    security(("bearer" = ["read"])),
    responses((status = 200, body = SuspectsResponse), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_alert_suspects(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<SuspectParams>,
) -> ApiResult<Json<SuspectsResponse>> {
    caller.require(Scope::Read)?;
    let id = path_id(&id, "alert")?;
    let window_minutes = params.window_minutes.unwrap_or(120);
    if !(1..=10_080).contains(&window_minutes) {
        return Err(ApiError::invalid_field("window_minutes", "must be between 1 and 10080 (a week)"));
    }
    let (alert, _) = state
        .store
        .get_event(caller.org_id, id)
        .await?
        .filter(|(i, _)| i.kind == EventKind::Alert)
        .ok_or_else(|| ApiError::not_found("alert"))?;
    let window = time::Duration::minutes(window_minutes);
    let mut environment_ids = Vec::new();
    for slug in &alert.environments {
        let Ok(slug) = EnvironmentSlug::parse("env", slug) else { continue };
        if let Some(env) = state.store.get_environment(caller.org_id, &EnvironmentRef::Slug(slug)).await? {
            environment_ids.push(env.id);
        }
    }
    let query = TimelineQuery {
        environment_ids,
        filters: Default::default(),
        since: alert.occurred_at - window,
        until: alert.occurred_at,
        kinds: vec![EventKind::Deploy, EventKind::Cloudtrail, EventKind::PullRequest, EventKind::Custom],
        include_read_only: false,
        limit: MAX_SUSPECT_CANDIDATES,
        after: None,
    };
    let candidates = state.store.timeline(caller.org_id, &query).await?;
    let ranked = domain::suspects::rank(&alert, candidates, window);
    Ok(Json(SuspectsResponse {
        alert: alert.into(),
        window_minutes,
        items: ranked
            .into_iter()
            .map(|s| SuspectView { item: s.item.into(), score: s.score, reasons: s.reasons })
            .collect(),
    }))
}
