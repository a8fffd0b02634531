//! `/v1/sources`: GitHub and PagerDuty webhooks of an organisation, and their delivery logs.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::source::{Delivery, Source};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{path_id, ListParams, ListResponse};
use crate::error::ApiResult;
use crate::extract::{Admin, ApiJson, ApiQuery};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_source, list_sources))
        .routes(routes!(get_source, update_source, delete_source))
        .routes(routes!(list_deliveries))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // names the values of `kind` in the OpenAPI document
pub enum SourceKindName {
    Github,
    Pagerduty,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSource {
    #[schema(value_type = SourceKindName)]
    pub kind: String,
    /// 1–200 characters.
    #[schema(example = "acme/shop on GitHub", min_length = 1, max_length = 200)]
    pub name: String,
    /// Environment slugs items go to when the delivery names none that exists (at most 50).
    #[serde(default)]
    #[schema(max_items = 50)]
    pub environments: Vec<String>,
    /// A GitHub deployment environment, or a PagerDuty service's name → an environment slug.
    #[serde(default)]
    #[schema(example = json!({"prod": "production"}))]
    pub environment_map: BTreeMap<String, String>,
    /// A repository (`owner/name`) or a PagerDuty service's name → the `service` of its items.
    #[serde(default)]
    #[schema(example = json!({"acme/shop": "checkout-api"}))]
    pub service_map: BTreeMap<String, String>,
    /// The webhook's secret, 16–256 printable characters. GitHub: generated when absent and
    /// answered once. PagerDuty: required, as PagerDuty shows it when the webhook is created.
    #[schema(min_length = 16, max_length = 256, pattern = "^[!-~]{16,256}$")]
    pub secret: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSource {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(max_items = 50)]
    pub environments: Option<Vec<String>>,
    pub environment_map: Option<BTreeMap<String, String>>,
    pub service_map: Option<BTreeMap<String, String>>,
    /// Replaces the secrets: one, or two while a provider rotates (a delivery signed with either
    /// is accepted).
    #[schema(min_items = 1, max_items = 2)]
    pub secrets: Option<Vec<String>>,
}

/// A source as shown: never its secrets.
#[derive(Serialize, ToSchema)]
pub struct SourceView {
    pub id: Uuid,
    #[schema(value_type = SourceKindName)]
    pub kind: &'static str,
    pub name: String,
    pub environments: Vec<String>,
    pub environment_map: BTreeMap<String, String>,
    pub service_map: BTreeMap<String, String>,
    /// The URL to give the provider.
    pub ingest_url: String,
    /// How many secrets are current (two during a rotation).
    pub secrets: usize,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl SourceView {
    fn of(state: &AppState, s: Source) -> SourceView {
        SourceView {
            id: s.id,
            kind: s.kind.as_str(),
            ingest_url: state.ingest_url(&s),
            secrets: s.sealed_secrets.len(),
            name: s.settings.name,
            environments: s.settings.environments.iter().map(|e| e.as_str().to_owned()).collect(),
            environment_map: s.settings.environment_map.into_iter().map(|(k, v)| (k, v.as_str().to_owned())).collect(),
            service_map: s.settings.service_map,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A new source, with the generated secret when changetrail made one.
#[derive(Serialize, ToSchema)]
pub struct CreatedSource {
    #[serde(flatten)]
    pub source: SourceView,
    /// GitHub, when no secret was given: paste it into the webhook's settings. Shown only now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    /// The provider's delivery id (`X-GitHub-Delivery`, `X-Webhook-Id`).
    pub delivery_id: String,
    pub event_type: String,
    /// `stored`, `ignored`, `refused` (the delivery could not be read into an item) or `failed`.
    pub outcome: String,
    pub item_id: Option<Uuid>,
    pub detail: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        DeliveryView {
            delivery_id: d.delivery_id,
            event_type: d.event_type,
            outcome: d.outcome,
            item_id: d.item_id,
            detail: d.detail,
            received_at: d.received_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveriesResponse {
    /// Newest first.
    pub items: Vec<DeliveryView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesParams {
    /// 1–100, default 50.
    #[serde(default, deserialize_with = "domain::validation::query_value")]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// Register a GitHub or PagerDuty webhook; give its `ingest_url` (and for GitHub the secret) to
/// the provider.
#[utoipa::path(post, path = "/v1/sources", tag = "sources", operation_id = "create_source",
    request_body = CreateSource, security(("bearer" = ["admin"])),
    responses((status = 201, body = CreatedSource)))]
async fn create_source(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<CreateSource>,
) -> ApiResult<(StatusCode, Json<CreatedSource>)> {
    let new = app::NewSource {
        kind: &body.kind,
        name: &body.name,
        environments: &body.environments,
        environment_map: &body.environment_map,
        service_map: &body.service_map,
        secret: body.secret.as_deref(),
    };
    let (source, secret) = state.create_source(caller.org_id, new).await?;
    Ok((StatusCode::CREATED, Json(CreatedSource { source: SourceView::of(&state, source), secret })))
}

/// List sources, oldest first.
#[utoipa::path(get, path = "/v1/sources", tag = "sources", operation_id = "list_sources",
    params(ListParams), security(("bearer" = ["admin"])),
    responses((status = 200, body = ListResponse<SourceView>)))]
async fn list_sources(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<ListResponse<SourceView>>> {
    let page = state.sources(caller.org_id, params.page()?).await?;
    Ok(Json(ListResponse::from_page(page, |s| SourceView::of(&state, s))))
}

#[utoipa::path(get, path = "/v1/sources/{id}", tag = "sources", operation_id = "get_source",
    params(("id" = Uuid, Path, description = "The source's id")), security(("bearer" = ["admin"])),
    responses((status = 200, body = SourceView)))]
async fn get_source(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<SourceView>> {
    let source = state.source(caller.org_id, path_id(&id, "source")?).await?;
    Ok(Json(SourceView::of(&state, source)))
}

/// Change a source's name, environments, maps or secrets.
#[utoipa::path(patch, path = "/v1/sources/{id}", tag = "sources", operation_id = "update_source",
    params(("id" = Uuid, Path, description = "The source's id")), request_body = UpdateSource,
    security(("bearer" = ["admin"])), responses((status = 200, body = SourceView)))]
async fn update_source(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateSource>,
) -> ApiResult<Json<SourceView>> {
    let patch = app::SourcePatch {
        name: body.name.as_deref(),
        environments: body.environments.as_deref(),
        environment_map: body.environment_map.as_ref(),
        service_map: body.service_map.as_ref(),
        secrets: body.secrets.as_deref(),
    };
    let source = state.update_source(caller.org_id, path_id(&id, "source")?, patch).await?;
    Ok(Json(SourceView::of(&state, source)))
}

/// Delete a source: its webhook URL stops working; its items stay on the timeline.
#[utoipa::path(delete, path = "/v1/sources/{id}", tag = "sources", operation_id = "delete_source",
    params(("id" = Uuid, Path, description = "The source's id")), security(("bearer" = ["admin"])),
    responses((status = 204, description = "Deleted")))]
async fn delete_source(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.delete_source(caller.org_id, path_id(&id, "source")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The newest deliveries of a source and what became of each: stored (with the item), ignored
/// or refused (and why). Deliveries whose signature did not match are not recorded.
#[utoipa::path(get, path = "/v1/sources/{id}/deliveries", tag = "sources", operation_id = "list_source_deliveries",
    params(("id" = Uuid, Path, description = "The source's id"), DeliveriesParams), security(("bearer" = ["admin"])),
    responses((status = 200, body = DeliveriesResponse)))]
async fn list_deliveries(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DeliveriesParams>,
) -> ApiResult<Json<DeliveriesResponse>> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=i64::from(app::MAX_DELIVERIES)).contains(&limit) {
        return Err(crate::error::ApiError::invalid_field("limit", "must be between 1 and 100"));
    }
    let deliveries = state.deliveries(caller.org_id, path_id(&id, "source")?, limit as u32).await?;
    Ok(Json(DeliveriesResponse { items: deliveries.into_iter().map(DeliveryView::from).collect() }))
}
