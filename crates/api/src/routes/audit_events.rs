//! `POST /PutAuditEvents`: the cloudtrail-data API (restJson), so an unmodified AWS SDK client
//! pointed at changetrail puts audit events into a channel. Authenticated by SigV4 with the
//! channel's key, not by a bearer token; errors in AWS's shape (`x-amzn-ErrorType`,
//! `{"message"}`), which the SDKs turn into their typed errors.

use axum::body::Body;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::channel::MAX_REQUEST_BYTES;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

pub const AWS_ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(put_audit_events))
}

/// An AWS error: what the SDKs read.
#[derive(Serialize, ToSchema)]
pub struct AwsError {
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventResultEntry {
    pub id: String,
    /// The timeline item's id.
    #[serde(rename = "eventID")]
    pub event_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResultErrorEntry {
    pub id: String,
    /// `FieldNotFound`, `FieldTooLong`, `InvalidChecksum`, `InvalidData` or `InternalFailure`.
    #[serde(rename = "errorCode")]
    pub error_code: String,
    #[serde(rename = "errorMessage")]
    pub error_message: String,
}

#[derive(Serialize, ToSchema)]
pub struct PutAuditEventsAnswer {
    pub successful: Vec<AuditEventResultEntry>,
    pub failed: Vec<ResultErrorEntry>,
}

fn aws_error(refused: app::CallRefused) -> Response {
    let status = match refused.code {
        "MissingAuthenticationTokenException"
        | "IncompleteSignatureException"
        | "InvalidSignatureException"
        | "UnrecognizedClientException" => StatusCode::FORBIDDEN,
        "ChannelNotFound" => StatusCode::NOT_FOUND,
        "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = (status, Json(AwsError { message: refused.message })).into_response();
    response.headers_mut().insert(AWS_ERROR_TYPE, HeaderValue::from_static(refused.code));
    response
}

/// Put audit events into a channel, exactly as cloudtrail-data's `PutAuditEvents`: signed with
/// SigV4 (service `cloudtrail-data`, any region) by the channel's access key, within 15 minutes
/// of the server's clock; 1–100 events and at most 1 MB; ids unique in the request. Each event is
/// checked on its own (`eventData` JSON in the integrations schema, its checksum when given, its
/// required fields and their lengths): the answer lists each as `successful` (its item's id as
/// `eventID`) or `failed` (with AWS's error code). Re-sending an event `UID` makes no second item.
#[utoipa::path(post, path = "/PutAuditEvents", tag = "channels", operation_id = "put_audit_events",
    params(("channelArn" = String, Query, description = "The channel's `channel_arn` (or id)"),
        ("externalId" = Option<String>, Query, description = "The channel's external ID, when it has one"),
        // Optional in the schema as they are in AWS's protocol document: an unsigned request is
        // answered 403 MissingAuthenticationTokenException (AWS's code), not a bearer API's 401.
        ("Authorization" = Option<String>, Header, description = "AWS4-HMAC-SHA256 with the channel's access key; without it, 403 MissingAuthenticationTokenException"),
        ("X-Amz-Date" = Option<String>, Header, description = "The signature's time, e.g. 20261201T120000Z; without it, 403 IncompleteSignatureException")),
    request_body(content = Object, content_type = "application/json",
        description = "`{\"auditEvents\": [{\"id\", \"eventData\", \"eventDataChecksum\"?}]}`"),
    responses((status = 200, body = PutAuditEventsAnswer, description = "Each event stored or refused"),
        (status = 400, body = AwsError, description = "ValidationException, SerializationException, DuplicatedAuditEventId, InvalidChannelARN, ChannelInsufficientPermission (the `x-amzn-ErrorType` header)"),
        (status = 403, body = AwsError, description = "MissingAuthenticationTokenException, IncompleteSignatureException, InvalidSignatureException (also an expired one), UnrecognizedClientException"),
        (status = 404, body = AwsError, description = "ChannelNotFound"),
        (status = 413, body = AwsError, description = "ValidationException: the request is over 1 MB"),
        (status = 500, body = AwsError, description = "InternalFailure")))]
async fn put_audit_events(
    State(state): State<AppState>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Read to the limit and past it by nothing: a larger body is refused in AWS's shape.
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BYTES + 1).await {
        Ok(bytes) if bytes.len() <= MAX_REQUEST_BYTES => bytes,
        _ => {
            let mut response = aws_error(app::CallRefused {
                code: "ValidationException",
                message: "the request is larger than 1 MB".into(),
            });
            *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return response;
        }
    };
    let text_headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    let query: Vec<(String, String)> = serde_html_form::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let path_and_query = uri.path_and_query().map_or("/PutAuditEvents", |p| p.as_str());
    let call = app::AuditEventsCall {
        request: aws::sigv4::ArrivedRequest {
            method: method.as_str(),
            path_and_query,
            headers: &text_headers,
            body: &body,
        },
        channel_arn: param("channelArn"),
        external_id: param("externalId"),
    };
    match state.put_audit_events(call).await {
        Ok(answer) => Json(PutAuditEventsAnswer {
            successful: answer
                .successful
                .into_iter()
                .map(|(id, item)| AuditEventResultEntry { id, event_id: item.to_string() })
                .collect(),
            failed: answer
                .failed
                .into_iter()
                .map(|(id, code, message)| ResultErrorEntry { id, error_code: code.to_owned(), error_message: message })
                .collect(),
        })
        .into_response(),
        Err(refused) => aws_error(refused),
    }
}
