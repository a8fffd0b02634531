use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use domain::posted::{change, ChangeInput};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::batch::{self, Batch, BatchResponse};
use super::timeline::TimelineItemView;
use crate::error::ApiResult;
use crate::extract::{ApiJson, Caller, Writer};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_change)).routes(routes!(create_changes))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeLink {
    pub href: String,
    #[serde(default)]
    pub text: String,
}

/// Anything else that changed: a feature flag, a config push, a manual change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChange {
    #[schema(example = "Enabled feature flag new-checkout for 10% of users")]
    pub summary: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// 1–50 environment slugs.
    #[schema(min_items = 1, max_items = 50)]
    pub environments: Vec<String>,
    /// At most 20.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub services: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// At most 20.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub links: Vec<ChangeLink>,
    pub actor: Option<String>,
    /// Your ID of this change: posting it again updates the same item.
    pub external_id: Option<String>,
}

async fn store_change(
    state: &AppState,
    caller: &Caller,
    body: CreateChange,
) -> ApiResult<(StatusCode, TimelineItemView)> {
    let links: Vec<(String, String)> = body.links.into_iter().map(|l| (l.href, l.text)).collect();
    let posted = change(ChangeInput {
        environments: &body.environments,
        summary: &body.summary,
        occurred_at: body.occurred_at,
        services: &body.services,
        labels: &body.labels,
        links: &links,
        actor: body.actor.as_deref(),
        external_id: body.external_id.as_deref(),
    })?;
    batch::store(state, caller, posted).await
}

/// Record a change of any other kind (shaped after FireHydrant's change events).
#[utoipa::path(post, path = "/v1/changes", tag = "changes", operation_id = "create_change",
    request_body = CreateChange, security(("bearer" = ["write"])),
    responses((status = 201, description = "Created", body = TimelineItemView), (status = 200, description = "Updated (same external_id)", body = TimelineItemView)))]
async fn create_change(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<CreateChange>,
) -> ApiResult<(StatusCode, Json<TimelineItemView>)> {
    let (status, item) = store_change(&state, &caller, body).await?;
    Ok((status, Json(item)))
}

/// Record up to 500 changes; each item succeeds or fails on its own.
#[utoipa::path(post, path = "/v1/changes/batch", tag = "changes", operation_id = "create_changes",
    request_body = Batch, security(("bearer" = ["write"])),
    responses((status = 200, description = "Every item's outcome", body = BatchResponse)))]
async fn create_changes(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<Batch>,
) -> ApiResult<Json<BatchResponse>> {
    Ok(Json(batch::run(body, |item: CreateChange| store_change(&state, &caller, item)).await?))
}
