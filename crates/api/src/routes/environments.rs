use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::{Environment, EnvironmentPatch, NewEnvironment};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{double_option, ListParams, ListResponse};
use crate::error::ApiResult;
use crate::extract::{Admin, ApiJson, ApiQuery, Reader};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_environment, list_environments)).routes(routes!(
        get_environment,
        update_environment,
        delete_environment
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    /// 1–100 characters, not only spaces, no control characters.
    #[schema(
        example = "Production",
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// Lowercase letters, digits and `-` (not first or last), 1–63 characters, unique in your
    /// organisation; derived from the name when absent.
    #[schema(example = "production", pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub slug: Option<String>,
    /// At most 2000 characters; line breaks and tabs, but no other control characters.
    #[schema(max_length = 2000, pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$")]
    pub description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: Option<String>,
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub slug: Option<String>,
    /// `null` clears the description; at most 2000 characters, no control characters but line
    /// breaks and tabs.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 2000, pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$")]
    pub description: Option<Option<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct EnvironmentView {
    pub id: Uuid,
    #[schema(value_type = String, example = "production")]
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<Environment> for EnvironmentView {
    fn from(e: Environment) -> Self {
        EnvironmentView {
            id: e.id,
            slug: e.slug.as_str().to_owned(),
            name: e.name,
            description: e.description,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// Create an environment.
#[utoipa::path(post, path = "/v1/environments", tag = "environments", operation_id = "create_environment",
    request_body = CreateEnvironment, security(("bearer" = ["admin"])),
    responses((status = 201, body = EnvironmentView), (status = 409, description = "Slug in use", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn create_environment(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<CreateEnvironment>,
) -> ApiResult<(StatusCode, Json<EnvironmentView>)> {
    let new = NewEnvironment::parse(&body.name, body.slug.as_deref(), body.description.as_deref())?;
    let env = state.store.create_environment(caller.org_id, &new).await?;
    Ok((StatusCode::CREATED, Json(env.into())))
}

/// List environments, oldest first.
#[utoipa::path(get, path = "/v1/environments", tag = "environments", operation_id = "list_environments",
    params(ListParams), security(("bearer" = ["read"])),
    responses((status = 200, body = ListResponse<EnvironmentView>)))]
async fn list_environments(
    State(state): State<AppState>,
    Reader(caller): Reader,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<ListResponse<EnvironmentView>>> {
    let page = state.store.list_environments(caller.org_id, params.page()?).await?;
    Ok(Json(ListResponse::from_page(page, EnvironmentView::from)))
}

/// Get one environment by UUID or slug.
#[utoipa::path(get, path = "/v1/environments/{env}", tag = "environments", operation_id = "get_environment",
    params(("env" = String, Path, description = "The environment's UUID or slug")), security(("bearer" = ["read"])),
    responses((status = 200, body = EnvironmentView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
async fn get_environment(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(env): Path<String>,
) -> ApiResult<Json<EnvironmentView>> {
    Ok(Json(state.environment(caller.org_id, &env).await?.into()))
}

/// Change an environment's name, slug or description.
#[utoipa::path(patch, path = "/v1/environments/{env}", tag = "environments", operation_id = "update_environment",
    params(("env" = String, Path, description = "The environment's UUID or slug")), request_body = UpdateEnvironment,
    security(("bearer" = ["admin"])),
    responses((status = 200, body = EnvironmentView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Slug in use, or environment_in_use: a connection's rules name it", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn update_environment(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(env): Path<String>,
    ApiJson(body): ApiJson<UpdateEnvironment>,
) -> ApiResult<Json<EnvironmentView>> {
    let patch = EnvironmentPatch::parse(
        body.name.as_deref(),
        body.slug.as_deref(),
        body.description.as_ref().map(|d| d.as_deref()),
    )?;
    Ok(Json(state.update_environment(caller.org_id, &env, &patch).await?.into()))
}

/// Delete an environment. Its links to timeline items go with it; the items stay.
#[utoipa::path(delete, path = "/v1/environments/{env}", tag = "environments", operation_id = "delete_environment",
    params(("env" = String, Path, description = "The environment's UUID or slug")), security(("bearer" = ["admin"])),
    responses((status = 204, description = "Deleted"), (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "environment_in_use: a connection's rules name it", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn delete_environment(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(env): Path<String>,
) -> ApiResult<StatusCode> {
    state.delete_environment(caller.org_id, &env).await?;
    Ok(StatusCode::NO_CONTENT)
}
