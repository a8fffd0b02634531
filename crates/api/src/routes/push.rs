//! Near-real-time CloudTrail: a connection's push secret (`/v1/connections/{id}/push`) and the
//! endpoint its EventBridge API destination calls (`/hooks/eventbridge/{connection_id}`).

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use domain::cloudtrail::eventbridge::{MAX_EVENT_BYTES, SECRET_HEADER};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::path_id;
use crate::error::{ApiResult, Problem};
use crate::extract::Admin;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    let hook = OpenApiRouter::new()
        .routes(routes!(receive_eventbridge_event))
        .layer(DefaultBodyLimit::max(MAX_EVENT_BYTES))
        // A declared length past the limit is refused before any of the body is read.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_EVENT_BYTES));
    OpenApiRouter::new().routes(routes!(create_push_secret)).merge(hook)
}

/// Where EventBridge sends the connection's events, and the secret it must send with them.
#[derive(Serialize, ToSchema)]
pub struct PushSecret {
    /// The API destination's endpoint.
    pub url: String,
    /// The API-key header of the EventBridge connection.
    #[schema(example = "X-Changetrail-Push-Secret")]
    pub header_name: &'static str,
    /// Shown this once; changetrail keeps only its hash. Give it to the setup template's
    /// `PushSecret` parameter.
    pub secret: String,
}

/// Create the connection's push secret, or rotate it: the secret before stops working at once.
/// The setup documents (`GET /v1/connections/{id}/setup`, `eventbridge_cloudformation`) create
/// the EventBridge rule and API destination that use it.
#[utoipa::path(post, path = "/v1/connections/{id}/push", tag = "connections", operation_id = "create_push_secret",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["admin"])),
    responses((status = 201, body = PushSecret, description = "The endpoint and a new secret, shown once"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn create_push_secret(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<PushSecret>)> {
    let endpoint = state.create_push_secret(caller.org_id, path_id(&id, "connection")?).await?;
    Ok((
        StatusCode::CREATED,
        Json(PushSecret { url: endpoint.url, header_name: endpoint.header_name, secret: endpoint.secret }),
    ))
}

/// What became of a pushed event.
#[derive(Serialize, ToSchema)]
pub struct PushAnswer {
    /// `stored`, `already_stored` (a retry, or the poll found it first) or `ignored`.
    pub status: &'static str,
    pub item_id: Option<Uuid>,
    /// Why it was ignored.
    pub detail: Option<&'static str>,
}

/// One CloudTrail event from the connection's EventBridge API destination, exactly as EventBridge
/// sends it (`detail-type`, `account`, `region`, and the CloudTrail record as `detail`). The
/// `X-Changetrail-Push-Secret` header must carry the connection's push secret, `account` must be
/// the connection's account and `region` one of its regions; otherwise nothing is stored. The
/// record is normalised and linked like the poll's, keyed by `detail.eventID`: the poll that finds
/// the same event later adds nothing. A 2xx answer means the event is stored.
#[utoipa::path(post, path = "/hooks/eventbridge/{connection_id}", tag = "connections", operation_id = "receive_eventbridge_event",
    params(("connection_id" = Uuid, Path, description = "The connection's id (the push `url`)"),
        ("X-Changetrail-Push-Secret" = String, Header, description = "The connection's push secret")),
    request_body(content = Object, content_type = "application/json", description = "One EventBridge event, up to 256 KB"),
    responses((status = 200, body = PushAnswer, description = "Stored, or stored before"),
        (status = 202, body = PushAnswer, description = "Ignored: a read-only event of a connection that keeps changes only"),
        (status = 401, body = Problem, content_type = "application/problem+json",
            description = "invalid_push_secret: unknown connection, no push secret, or a wrong one; nothing stored"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "not_active or disabled: the connection does not import now"),
        (status = 413, body = Problem, content_type = "application/problem+json", description = "Over 256 KB"),
        (status = 422, body = Problem, content_type = "application/problem+json",
            description = "Not a CloudTrail event of this connection's account and regions; `errors` says which field")))]
async fn receive_eventbridge_event(
    State(state): State<AppState>,
    Path(connection_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<PushAnswer>)> {
    let secret = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok());
    Ok(match state.receive_push(&connection_id, secret, &body).await? {
        app::PushOutcome::Stored(id) => {
            (StatusCode::OK, Json(PushAnswer { status: "stored", item_id: Some(id), detail: None }))
        }
        app::PushOutcome::AlreadyStored => {
            (StatusCode::OK, Json(PushAnswer { status: "already_stored", item_id: None, detail: None }))
        }
        app::PushOutcome::Ignored(why) => {
            (StatusCode::ACCEPTED, Json(PushAnswer { status: "ignored", item_id: None, detail: Some(why) }))
        }
    })
}
