use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::{ApiToken, Scope};
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
    OpenApiRouter::new().routes(routes!(create_token, list_tokens)).routes(routes!(delete_token))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for, e.g. "CI deploys": 1–200 characters, not only spaces, no control
    /// characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// 1–10 of `read`, `write`, `admin`.
    #[schema(value_type = Vec<ScopeName>, example = json!(["read"]), min_items = 1, max_items = 10)]
    pub scopes: Vec<String>,
}

/// A scope a token may have: `admin` implies `write`, which implies `read`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // names the values of `scopes` in the OpenAPI document
pub enum ScopeName {
    Read,
    Write,
    Admin,
}

/// A token as listed: never its secret.
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// The first characters of the secret, to tell tokens apart.
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            scopes: t.scopes.as_slice().to_vec(),
            prefix: t.prefix,
            created_at: t.created_at,
        }
    }
}

/// A token just created: the only time its secret is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    /// The secret. Store it now: it is kept only as a hash and cannot be shown again.
    pub secret: String,
}

/// Create an API token for your organisation.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", operation_id = "create_token",
    request_body = CreateToken, security(("bearer" = ["admin"])),
    responses((status = 201, body = CreatedToken)))]
async fn create_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let (token, secret) = state.create_token(caller.org_id, &body.name, &body.scopes).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token: token.into(), secret: secret.expose().to_owned() })))
}

/// List your organisation's tokens, oldest first.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", operation_id = "list_tokens",
    params(ListParams), security(("bearer" = ["admin"])),
    responses((status = 200, body = ListResponse<TokenView>)))]
async fn list_tokens(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<ListResponse<TokenView>>> {
    let page = state.store.list_tokens(caller.org_id, params.page()?).await?;
    Ok(Json(ListResponse::from_page(page, TokenView::from)))
}

/// Delete a token; requests made with it fail from now on.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", operation_id = "delete_token",
    params(("id" = Uuid, Path, description = "The token's id")), security(("bearer" = ["admin"])),
    responses((status = 204, description = "Deleted"), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "last_admin_token: create another admin token first", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn delete_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.delete_token(caller.org_id, path_id(&id, "token")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
