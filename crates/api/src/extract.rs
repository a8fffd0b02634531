//! Extractors that turn every kind of bad input into a problem document that says what is wrong.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, StatusCode};
use bytes::Bytes;
use domain::{Scope, Scopes};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

/// A JSON body. Malformed JSON is 400; JSON of the wrong shape (a missing or unknown field, a
/// wrong type) is 422 naming the field; a body over the limit is 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !(essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with the header Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is larger than this server accepts",
                )
            } else {
                ApiError::bad_request("malformed_json", format!("the body could not be read: {rejection}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                // At the top level the path is "."; an unknown field's own name is then the
                // clearest thing to point at.
                let field = match message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()) {
                    _ if path != "." => path,
                    Some(unknown) => unknown.to_owned(),
                    None => "body".to_owned(),
                };
                ApiError::invalid_field(&field, strip_position(&message))
            }
            _ => ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {inner}")),
        }
    })
}

/// serde_json appends " at line 1 column 42", which means nothing to someone reading a field error.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Query parameters; repeated keys (`kind=a&kind=b`) fill a `Vec`. Unreadable ones are 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        // A parameter whose value is of the wrong type (`limit=`, `limit=ten`) is an invalid
        // value like any other: 422 naming it. What names no parameter stays a 400.
        let deserializer = serde_html_form::Deserializer::from_bytes(query.as_bytes());
        serde_path_to_error::deserialize(deserializer).map(ApiQuery).map_err(|e| {
            let field = e.path().to_string();
            let message = e.inner().to_string();
            if field.is_empty() || field == "." {
                ApiError::bad_request("invalid_query", format!("the query string cannot be read: {message}"))
            } else {
                ApiError::invalid_field(&field, message)
            }
        })
    }
}

/// Who is calling: the organisation and scopes of the bearer token sent.
#[derive(Debug, Clone)]
pub struct Caller {
    pub org_id: Uuid,
    pub token_id: Uuid,
    pub scopes: Scopes,
}

impl Caller {
    pub fn of(token: domain::ApiToken) -> Self {
        Caller { org_id: token.org_id, token_id: token.id, scopes: token.scopes }
    }

    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this operation needs a token with the '{}' scope", scope.as_str()),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = |detail: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send an API token as 'Authorization: Bearer <token>'"))?;
        let value = header.to_str().map_err(|_| unauthorized("the Authorization header is not valid text"))?;
        let secret = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be 'Bearer <token>'"))?;
        match state.authenticate(secret).await? {
            Some(token) => Ok(Caller::of(token)),
            None => Err(unauthorized("the token is not valid; it may have been deleted")),
        }
    }
}

/// A caller whose token has a scope, checked while the request's head is read: a token without
/// it is refused (403) before its body or query is looked at, so it learns nothing from them.
macro_rules! caller_with_scope {
    ($name:ident, $scope:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name(pub Caller);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
                let caller = Caller::from_request_parts(parts, state).await?;
                caller.require($scope)?;
                Ok($name(caller))
            }
        }
    };
}

caller_with_scope!(Reader, Scope::Read, "A caller whose token may read.");
caller_with_scope!(Writer, Scope::Write, "A caller whose token may post changes, deploys and alerts.");
caller_with_scope!(Admin, Scope::Admin, "A caller whose token may administer the organisation.");
