//! The API's one error type. Every failure a client can see is an RFC 9457
//! `application/problem+json` document with a stable machine-readable `code`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::{FieldError, Invalid, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// A problem lists at most this many invalid fields (its `detail` says how many there were), so
/// a hostile request cannot make the answer large.
pub const MAX_FIELD_ERRORS: usize = 20;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem; it resolves to its entry in `/docs`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// What went wrong with this request, in words meant for the person who sent it.
    pub detail: String,
    /// Stable and machine-readable: branch on this, not on `title` or `detail`.
    pub code: String,
    /// For validation failures (422): each offending field and what is wrong with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<FieldErrorSchema>)]
    pub errors: Vec<FieldError>,
}

/// One invalid field.
#[derive(ToSchema)]
#[schema(as = FieldError)]
#[allow(dead_code)] // exists only to describe `domain::FieldError` in the OpenAPI document
pub struct FieldErrorSchema {
    pub field: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code, detail: detail.into(), errors: Vec::new() }
    }

    /// Both "does not exist" and "belongs to another organisation": the answer must not tell
    /// them apart.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn validation(invalid: Invalid) -> Self {
        let mut errors = invalid.0;
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many if many.len() > MAX_FIELD_ERRORS => {
                format!("{} fields are invalid; the first {MAX_FIELD_ERRORS} are listed", many.len())
            }
            many => format!("{} fields are invalid", many.len()),
        };
        errors.truncate(MAX_FIELD_ERRORS);
        ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", detail, errors }
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(Invalid::one(field, message))
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// Logs the cause for operators and tells the client nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle this request; it has been logged",
        )
    }

    pub fn to_problem(&self) -> Problem {
        Problem {
            problem_type: format!("/docs#problem-{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            errors: self.errors.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_problem()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        ApiError::validation(invalid)
    }
}

impl From<app::AppError> for ApiError {
    fn from(e: app::AppError) -> Self {
        use app::{AppError, Refusal};
        match e {
            AppError::NotFound(what) => ApiError::not_found(what),
            AppError::Invalid(invalid) => ApiError::validation(invalid),
            AppError::Refused { kind, code, detail, errors } => {
                let status = match kind {
                    Refusal::BadInput => StatusCode::BAD_REQUEST,
                    Refusal::Unacceptable => StatusCode::UNPROCESSABLE_ENTITY,
                    Refusal::Conflict => StatusCode::CONFLICT,
                    Refusal::Upstream => StatusCode::BAD_GATEWAY,
                    Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
                    Refusal::Forbidden => StatusCode::FORBIDDEN,
                };
                ApiError { status, code, detail, errors }
            }
            AppError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ApiError::conflict(what),
            StoreError::TimedOut => {
                tracing::warn!("a query ran past the statement timeout and was stopped");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", TIMEOUT_DETAIL)
            }
            other => ApiError::internal(other),
        }
    }
}

/// What a request stopped by the request timeout, or its query by the statement timeout, is told.
pub const TIMEOUT_DETAIL: &str = "the request took longer than this server allows and was stopped";

/// Every problem `code` the API can answer with, for the reference at `/docs`.
pub const PROBLEM_CODES: &[(&str, u16, &str)] = &[
    ("malformed_json", 400, "The body is not valid JSON."),
    ("invalid_query", 400, "A query parameter cannot be read (wrong type or format)."),
    ("invalid_cursor", 400, "The cursor was not issued by this server for this list."),
    ("unauthorized", 401, "No bearer token was sent, or it is not a valid token."),
    (
        "invalid_signature",
        401,
        "A webhook delivery's signature is missing or does not match the source's secret; nothing was stored.",
    ),
    ("forbidden", 403, "The token lacks the scope this operation needs."),
    ("not_found", 404, "No such resource in your organisation."),
    ("method_not_allowed", 405, "The path exists but not with this method."),
    ("conflict", 409, "The request conflicts with an existing resource (for example a slug in use)."),
    (
        "last_admin_token",
        409,
        "The organisation's last admin token cannot be deleted; create another admin token first.",
    ),
    ("payload_too_large", 413, "The body is larger than the server accepts."),
    ("unsupported_media_type", 415, "The body must be sent as application/json."),
    ("validation_failed", 422, "The body or parameters are well-formed but invalid; `errors` names each field."),
    ("internal", 500, "The server failed; the cause is logged, never returned."),
    ("unavailable", 503, "The database is not reachable or not migrated."),
    ("timeout", 503, "The request took longer than the server allows (CHANGETRAIL_REQUEST_TIMEOUT) and was stopped."),
];
