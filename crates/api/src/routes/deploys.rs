use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use domain::posted::{deploy, DeployInput};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::batch::{self, Batch, BatchResponse};
use super::timeline::TimelineItemView;
use crate::error::ApiResult;
use crate::extract::{ApiJson, Caller, Writer};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_deploy)).routes(routes!(create_deploys))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // names the values of `status` in the OpenAPI document
pub enum DeployStatus {
    Started,
    Succeeded,
    Failed,
    RolledBack,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeploy {
    /// An environment's slug; or give `environments` (one of the two is required).
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub environment: Option<String>,
    /// 1–50 environment slugs.
    #[schema(min_items = 1, max_items = 50)]
    pub environments: Option<Vec<String>>,
    #[schema(example = "checkout-api")]
    pub service: String,
    #[schema(example = "v1.42.0")]
    pub version: String,
    #[schema(value_type = DeployStatus)]
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub url: Option<String>,
    pub commit_sha: Option<String>,
    pub actor: Option<String>,
    /// Your ID of this deploy: posting it again updates the same item.
    pub external_id: Option<String>,
}

async fn store_deploy(
    state: &AppState,
    caller: &Caller,
    body: CreateDeploy,
) -> ApiResult<(StatusCode, TimelineItemView)> {
    let posted = deploy(DeployInput {
        environment: body.environment.as_deref(),
        environments: body.environments.as_deref(),
        service: &body.service,
        version: &body.version,
        status: &body.status,
        started_at: body.started_at,
        finished_at: body.finished_at,
        url: body.url.as_deref(),
        commit_sha: body.commit_sha.as_deref(),
        actor: body.actor.as_deref(),
        external_id: body.external_id.as_deref(),
    })?;
    batch::store(state, caller, posted).await
}

/// Record a deploy; the same `external_id` updates it (e.g. `started`, then `succeeded`).
#[utoipa::path(post, path = "/v1/deploys", tag = "changes", operation_id = "create_deploy",
    request_body = CreateDeploy, security(("bearer" = ["write"])),
    responses((status = 201, description = "Created", body = TimelineItemView), (status = 200, description = "Updated (same external_id)", body = TimelineItemView)))]
async fn create_deploy(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<CreateDeploy>,
) -> ApiResult<(StatusCode, Json<TimelineItemView>)> {
    let (status, item) = store_deploy(&state, &caller, body).await?;
    Ok((status, Json(item)))
}

/// Record up to 500 deploys; each item succeeds or fails on its own.
#[utoipa::path(post, path = "/v1/deploys/batch", tag = "changes", operation_id = "create_deploys",
    request_body = Batch, security(("bearer" = ["write"])),
    responses((status = 200, description = "Every item's outcome", body = BatchResponse)))]
async fn create_deploys(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<Batch>,
) -> ApiResult<Json<BatchResponse>> {
    Ok(Json(batch::run(body, |item: CreateDeploy| store_deploy(&state, &caller, item)).await?))
}
