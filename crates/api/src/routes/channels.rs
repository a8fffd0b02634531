//! `/v1/channels`: CloudTrail Lake-compatible channels, which integrations send `PutAuditEvents`
//! to (see `routes/audit_events.rs`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::channel::{channel_arn, Channel, ChannelOutcome};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{path_id, ListParams, ListResponse};
use crate::error::ApiResult;
use crate::extract::{Admin, ApiJson, ApiQuery};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_channel, list_channels)).routes(routes!(
        get_channel,
        update_channel,
        delete_channel
    ))
}

/// A channel's settings: all of them on create and on PATCH (absent optional ones are cleared).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    #[schema(example = "Okta audit log", min_length = 1, max_length = 200)]
    pub name: String,
    /// The integration's name.
    #[schema(example = "okta", min_length = 1, max_length = 200)]
    pub source: String,
    /// The environments its events belong to (slugs, at least one, at most 50).
    #[schema(min_items = 1, max_items = 50)]
    pub environments: Vec<String>,
    /// When given, every `PutAuditEvents` must carry it as `externalId`.
    #[schema(min_length = 2, max_length = 1224, pattern = "^[A-Za-z0-9+=,.@:/_-]{2,1224}$")]
    pub external_id: Option<String>,
}

/// A channel as shown: never its secret access key.
#[derive(Serialize, ToSchema)]
pub struct ChannelView {
    pub id: Uuid,
    pub name: String,
    pub source: String,
    pub environments: Vec<String>,
    pub external_id: Option<String>,
    /// What SDKs pass as `channelArn`.
    #[schema(example = "arn:aws:cloudtrail:us-east-1:000000000000:channel/0193…")]
    pub channel_arn: String,
    /// What SDKs use as their endpoint URL.
    pub endpoint: String,
    pub access_key_id: String,
    /// Events accepted, over the channel's life.
    pub accepted: u64,
    /// Events refused, by error code (`InvalidChecksum`, `FieldNotFound`, …).
    pub failed: BTreeMap<String, u64>,
    /// When the last event (accepted or not) arrived.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_event_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl ChannelView {
    fn of(state: &AppState, c: Channel, outcomes: &[ChannelOutcome]) -> ChannelView {
        let accepted = outcomes.iter().filter(|o| o.outcome == "accepted").map(|o| o.events).sum();
        let failed =
            outcomes.iter().filter(|o| o.outcome != "accepted").map(|o| (o.outcome.clone(), o.events)).collect();
        ChannelView {
            id: c.id,
            channel_arn: channel_arn(c.id),
            endpoint: state.channel_endpoint(),
            name: c.settings.name,
            source: c.settings.source,
            environments: c.settings.environments.iter().map(|e| e.as_str().to_owned()).collect(),
            external_id: c.settings.external_id,
            access_key_id: c.access_key_id,
            accepted,
            failed,
            last_event_at: outcomes.iter().map(|o| o.last_at).max(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A new channel, with its secret access key.
#[derive(Serialize, ToSchema)]
pub struct CreatedChannel {
    #[serde(flatten)]
    pub channel: ChannelView,
    /// Shown only now: configure the integration's AWS SDK with `access_key_id` and this.
    pub secret_access_key: String,
}

fn input(body: &ChannelBody) -> app::ChannelInput<'_> {
    app::ChannelInput {
        name: &body.name,
        source: &body.source,
        environments: &body.environments,
        external_id: body.external_id.as_deref(),
    }
}

/// Create a channel: an unmodified AWS SDK's cloudtrail-data client, pointed at `endpoint` and
/// signing with the access key answered here, sends `PutAuditEvents` to `channel_arn`.
#[utoipa::path(post, path = "/v1/channels", tag = "channels", operation_id = "create_channel",
    request_body = ChannelBody, security(("bearer" = ["admin"])),
    responses((status = 201, body = CreatedChannel)))]
async fn create_channel(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<ChannelBody>,
) -> ApiResult<(StatusCode, Json<CreatedChannel>)> {
    let (channel, secret_access_key) = state.create_channel(caller.org_id, input(&body)).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedChannel { channel: ChannelView::of(&state, channel, &[]), secret_access_key }),
    ))
}

/// List channels, oldest first.
#[utoipa::path(get, path = "/v1/channels", tag = "channels", operation_id = "list_channels",
    params(ListParams), security(("bearer" = ["admin"])),
    responses((status = 200, body = ListResponse<ChannelView>)))]
async fn list_channels(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<ListResponse<ChannelView>>> {
    let page = state.channels(caller.org_id, params.page()?).await?;
    let outcomes = state.channel_outcomes(&page.items).await?;
    let items = page.items.into_iter().zip(outcomes).map(|(c, o)| ChannelView::of(&state, c, &o)).collect();
    Ok(Json(ListResponse { items, next_cursor: page.next_cursor }))
}

/// One channel, with the counts of its events' outcomes.
#[utoipa::path(get, path = "/v1/channels/{id}", tag = "channels", operation_id = "get_channel",
    params(("id" = Uuid, Path, description = "The channel's id")), security(("bearer" = ["admin"])),
    responses((status = 200, body = ChannelView)))]
async fn get_channel(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<ChannelView>> {
    let channel = state.channel(caller.org_id, path_id(&id, "channel")?).await?;
    let outcomes = state.channel_outcomes(std::slice::from_ref(&channel)).await?.concat();
    Ok(Json(ChannelView::of(&state, channel, &outcomes)))
}

/// Replace a channel's settings; its key stays.
#[utoipa::path(patch, path = "/v1/channels/{id}", tag = "channels", operation_id = "update_channel",
    params(("id" = Uuid, Path, description = "The channel's id")), request_body = ChannelBody,
    security(("bearer" = ["admin"])), responses((status = 200, body = ChannelView)))]
async fn update_channel(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChannelBody>,
) -> ApiResult<Json<ChannelView>> {
    let channel = state.update_channel(caller.org_id, path_id(&id, "channel")?, input(&body)).await?;
    let outcomes = state.channel_outcomes(std::slice::from_ref(&channel)).await?.concat();
    Ok(Json(ChannelView::of(&state, channel, &outcomes)))
}

/// Delete a channel: its key stops working at once; its items stay on the timeline.
#[utoipa::path(delete, path = "/v1/channels/{id}", tag = "channels", operation_id = "delete_channel",
    params(("id" = Uuid, Path, description = "The channel's id")), security(("bearer" = ["admin"])),
    responses((status = 204, description = "Deleted")))]
async fn delete_channel(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.delete_channel(caller.org_id, path_id(&id, "channel")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
