use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::path_id;
use super::timeline::TimelineItemView;
use crate::error::{ApiResult, Problem};
use crate::extract::Reader;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_event))
}

#[derive(Serialize, ToSchema)]
pub struct EventView {
    #[serde(flatten)]
    pub item: TimelineItemView,
    /// The record as its source gave it; for CloudTrail, the parsed `CloudTrailEvent`.
    #[schema(value_type = Option<Object>)]
    pub original: Option<Value>,
}

/// One timeline item in full, with its original record.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "timeline", operation_id = "get_event",
    params(("id" = Uuid, Path, description = "The item's id")), security(("bearer" = ["read"])),
    responses((status = 200, body = EventView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_event(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(id): Path<String>,
) -> ApiResult<Json<EventView>> {
    let stored = state.event(caller.org_id, path_id(&id, "event")?).await?;
    Ok(Json(EventView { item: stored.item.into(), original: stored.original }))
}
