use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::connection::{self, ConnectionProblem, ConnectionSettings, EnvironmentRule};
use domain::{Connection, EnvironmentRef, EnvironmentSlug, ExternalId, Invalid, RegisteredRole, RoleArn, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{double_option, path_id, ListParams, ListResponse};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_connection, list_connections))
        .routes(routes!(get_connection, update_connection, delete_connection))
        .routes(routes!(get_connection_setup))
        .routes(routes!(register_role))
        .routes(routes!(validate_connection))
        .routes(routes!(list_connection_imports))
        .routes(routes!(sync_connection))
}

/// The import of one region of a connection.
#[derive(Serialize, ToSchema)]
pub struct RegionImport {
    pub region: String,
    /// `scheduled`, `running`, `backfilling` or `failing`.
    pub status: String,
    /// Events up to this time are complete: the end of the last fully walked window, less the
    /// re-scan overlap that catches late deliveries.
    #[serde(with = "time::serde::rfc3339")]
    pub checkpoint: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_run_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub next_run_at: OffsetDateTime,
    pub events_imported: i64,
    /// Records stored as they came because they could not be read in full.
    pub events_flagged: i64,
    pub last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionImports {
    pub items: Vec<RegionImport>,
}

/// Import progress per region.
#[utoipa::path(get, path = "/v1/connections/{id}/imports", tag = "connections", operation_id = "list_connection_imports",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["read"])),
    responses((status = 200, body = ConnectionImports), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn list_connection_imports(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionImports>> {
    caller.require(Scope::Read)?;
    let connection = find(&state, &caller, &id).await?;
    let now = domain::time_util::now();
    let overlap = state.import_overlap;
    let items = state
        .store
        .list_import_jobs(caller.org_id, connection.id)
        .await?
        .into_iter()
        .map(|job| {
            let status = if job.leased_until.is_some_and(|t| t > now) {
                "running"
            } else if job.last_error.is_some() {
                "failing"
            } else if job.scanned_until < now - time::Duration::hours(1) {
                "backfilling"
            } else {
                "scheduled"
            };
            RegionImport {
                region: job.region,
                status: status.to_owned(),
                checkpoint: job.scanned_until - overlap,
                last_run_at: job.last_run_at,
                last_success_at: job.last_success_at,
                next_run_at: job.next_run_at,
                events_imported: job.events_imported,
                events_flagged: job.events_flagged,
                last_error: job.last_error,
            }
        })
        .collect();
    Ok(Json(ConnectionImports { items }))
}

/// Import now, without waiting for the schedule.
#[utoipa::path(post, path = "/v1/connections/{id}/sync", tag = "connections", operation_id = "sync_connection",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["admin"])),
    responses((status = 202, description = "Every region is due now"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not_active: register a working role first", body = Problem, content_type = "application/problem+json")))]
async fn sync_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    let connection = find(&state, &caller, &id).await?;
    if connection.status != domain::ConnectionStatus::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_active",
            "only an active connection imports; register a working role first",
        ));
    }
    state.store.request_import(caller.org_id, connection.id).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    #[schema(example = "Production account")]
    pub name: String,
    /// At least one; IAM events are recorded in us-east-1.
    #[schema(example = json!(["us-east-1", "eu-west-1"]))]
    pub regions: Vec<String>,
    /// The environment events go to when no rule matches.
    #[schema(value_type = Option<String>, example = "production")]
    pub default_environment: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<EnvironmentRuleSchema>)]
    pub environment_rules: Vec<Value>,
    /// Days of history imported on activation, 1–90 (default 7).
    pub lookback_days: Option<i64>,
    /// Import read-only events too (default false: changes only).
    #[serde(default)]
    pub include_read_only: bool,
    /// Generated by changetrail; giving one is an error.
    #[schema(value_type = Option<String>)]
    pub external_id: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    pub name: Option<String>,
    pub regions: Option<Vec<String>>,
    /// `null` removes the default environment.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub default_environment: Option<Option<String>>,
    #[schema(value_type = Option<Vec<EnvironmentRuleSchema>>)]
    pub environment_rules: Option<Vec<Value>>,
    pub lookback_days: Option<i64>,
    pub include_read_only: Option<bool>,
    /// `false` stops imports; the role, settings and progress are kept.
    pub enabled: Option<bool>,
    /// The external ID can never be changed; giving one is an error.
    #[schema(value_type = Option<String>)]
    pub external_id: Option<Value>,
}

/// Links imported events to `environment` when every condition given matches.
#[derive(ToSchema)]
#[schema(as = EnvironmentRule)]
#[allow(dead_code)] // describes domain::EnvironmentRule in the OpenAPI document
pub struct EnvironmentRuleSchema {
    /// The environment's slug.
    environment: String,
    regions: Option<Vec<String>>,
    /// e.g. `ec2.amazonaws.com`.
    event_sources: Option<Vec<String>>,
    /// A glob over resource names and ARNs.
    resource_pattern: Option<String>,
    /// A glob over the actor.
    actor_pattern: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRole {
    #[schema(example = "arn:aws:iam::123456789012:role/changetrail-cloudtrail-reader")]
    pub role_arn: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionErrorView {
    pub code: String,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: Uuid,
    pub name: String,
    pub regions: Vec<String>,
    pub default_environment: Option<String>,
    #[schema(value_type = Vec<EnvironmentRuleSchema>)]
    pub environment_rules: Vec<EnvironmentRule>,
    pub lookback_days: u16,
    pub include_read_only: bool,
    pub enabled: bool,
    /// Generated by changetrail, immutable: the role's trust policy must require it.
    pub external_id: String,
    /// `pending_role`, `active` or `error`.
    #[schema(example = "pending_role")]
    pub status: String,
    pub role_arn: Option<String>,
    pub account_id: Option<String>,
    pub assumed_role_arn: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub validated_at: Option<OffsetDateTime>,
    pub last_error: Option<ConnectionErrorView>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<Connection> for ConnectionView {
    fn from(c: Connection) -> Self {
        let settings = c.settings;
        ConnectionView {
            id: c.id,
            name: settings.name,
            regions: settings.regions,
            default_environment: settings.default_environment.map(String::from),
            environment_rules: settings.environment_rules,
            lookback_days: settings.lookback_days,
            include_read_only: settings.include_read_only,
            enabled: settings.enabled,
            external_id: c.external_id.as_str().to_owned(),
            status: c.status.as_str().to_owned(),
            role_arn: c.role_arn,
            account_id: c.account_id,
            assumed_role_arn: c.assumed_role_arn,
            validated_at: c.validated_at,
            last_error: c.last_error.map(|e| ConnectionErrorView { code: e.code, message: e.message, at: e.at }),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionSetup {
    pub external_id: String,
    /// changetrail's own AWS identity, which the trust policy names.
    pub service_principal_arn: String,
    #[schema(value_type = Object)]
    pub trust_policy: Value,
    #[schema(value_type = Object)]
    pub permissions_policy: Value,
    /// YAML, with an `ExternalId` parameter and the role ARN as the output `RoleArn`.
    pub cloudformation_template: String,
    /// Present when the operator published the template (`CHANGETRAIL_CFN_TEMPLATE_URL`).
    pub cloudformation_quick_create_url: Option<String>,
    /// A Terraform module (HCL) with `external_id` as a variable and `role_arn` as an output.
    pub terraform: String,
    /// AWS CLI commands that create the stack and register its role.
    pub aws_cli: String,
}

const IMMUTABLE_EXTERNAL_ID: &str = "is generated by changetrail and can never be set or changed";

/// Validates an admin's settings, including that the environments they name exist.
async fn check_settings(
    state: &AppState,
    caller: &Caller,
    settings: ConnectionSettings,
) -> ApiResult<ConnectionSettings> {
    let mut errors = Invalid::default();
    for (field, slug) in Connection::referenced_environments(&settings) {
        if state.store.get_environment(caller.org_id, &EnvironmentRef::Slug(slug.clone())).await?.is_none() {
            errors.push(field, format!("no environment {slug:?} in your organisation; create it first"));
        }
    }
    errors.into_result()?;
    Ok(settings)
}

fn parse_rules(rules: Vec<Value>, errors: &mut Invalid) -> Option<Vec<EnvironmentRule>> {
    let mut parsed = Vec::new();
    for (i, rule) in rules.into_iter().enumerate() {
        match serde_json::from_value::<EnvironmentRule>(rule) {
            Ok(rule) => parsed.push(rule),
            Err(e) => errors.push(format!("environment_rules[{i}]"), e.to_string()),
        }
    }
    errors.check(connection::parse_rules(parsed))
}

fn parse_slug(field: &str, slug: Option<&str>, errors: &mut Invalid) -> Option<Option<EnvironmentSlug>> {
    match slug {
        None => Some(None),
        Some(s) => errors.check(EnvironmentSlug::parse(field, s)).map(Some),
    }
}

/// Two connections to one account may not import the same region: they would race and double
/// the calls against the account's 2-per-second LookupEvents budget.
async fn check_no_overlap(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    account_id: &str,
    regions: &[String],
) -> ApiResult<()> {
    for other in state.store.connections_of_account(caller.org_id, account_id).await? {
        let shared: Vec<&String> = other.settings.regions.iter().filter(|r| regions.contains(r)).collect();
        if other.id != id && !shared.is_empty() {
            let list = shared.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            return Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "region_overlap",
                detail: format!(
                    "connection {:?} ({}) already imports {list} of account {account_id}; give this connection other regions",
                    other.settings.name, other.id
                ),
                errors: vec![domain::FieldError { field: "regions".into(), message: format!("{list} already imported by {}", other.id) }],
            });
        }
    }
    Ok(())
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Connection> {
    let id = path_id(id, "connection")?;
    state.store.get_connection(caller.org_id, id).await?.ok_or_else(|| ApiError::not_found("connection"))
}

/// Register an AWS account's CloudTrail: answers with a generated `external_id` for the role's
/// trust policy, and `status: pending_role`.
#[utoipa::path(post, path = "/v1/connections", tag = "connections", operation_id = "create_connection",
    request_body = CreateConnection, security(("bearer" = ["admin"])),
    responses((status = 201, body = ConnectionView)))]
async fn create_connection(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateConnection>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    caller.require(Scope::Admin)?;
    let mut errors = Invalid::default();
    if body.external_id.is_some() {
        errors.push("external_id", IMMUTABLE_EXTERNAL_ID);
    }
    let name = errors.check(connection::parse_name(&body.name));
    let regions = errors.check(connection::parse_regions(&body.regions));
    let default_environment = parse_slug("default_environment", body.default_environment.as_deref(), &mut errors);
    let environment_rules = parse_rules(body.environment_rules, &mut errors);
    let lookback_days = errors.check(connection::parse_lookback_days(body.lookback_days));
    errors.into_result()?;
    let settings = ConnectionSettings {
        name: name.unwrap_or_default(),
        regions: regions.unwrap_or_default(),
        default_environment: default_environment.flatten(),
        environment_rules: environment_rules.unwrap_or_default(),
        lookback_days: lookback_days.unwrap_or(connection::DEFAULT_LOOKBACK_DAYS),
        include_read_only: body.include_read_only,
        enabled: true,
    };
    let settings = check_settings(&state, &caller, settings).await?;
    let created = state.store.create_connection(caller.org_id, &settings, &ExternalId::generate()).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// List connections, oldest first.
#[utoipa::path(get, path = "/v1/connections", tag = "connections", operation_id = "list_connections",
    params(ListParams), security(("bearer" = ["admin"])),
    responses((status = 200, body = ListResponse<ConnectionView>)))]
async fn list_connections(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<ListResponse<ConnectionView>>> {
    caller.require(Scope::Admin)?;
    let page = state.store.list_connections(caller.org_id, params.page()?).await?;
    Ok(Json(ListResponse::from_page(page, ConnectionView::from)))
}

/// Get one connection.
#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections", operation_id = "get_connection",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["admin"])),
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    caller.require(Scope::Admin)?;
    Ok(Json(find(&state, &caller, &id).await?.into()))
}

/// Change a connection's settings. The external ID cannot be changed.
#[utoipa::path(patch, path = "/v1/connections/{id}", tag = "connections", operation_id = "update_connection",
    params(("id" = Uuid, Path, description = "The connection's id")), request_body = UpdateConnection,
    security(("bearer" = ["admin"])),
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn update_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateConnection>,
) -> ApiResult<Json<ConnectionView>> {
    caller.require(Scope::Admin)?;
    let existing = find(&state, &caller, &id).await?;
    let mut settings = existing.settings.clone();
    let mut errors = Invalid::default();
    if body.external_id.is_some() {
        errors.push("external_id", IMMUTABLE_EXTERNAL_ID);
    }
    if let Some(name) = body.name.as_deref() {
        settings.name = errors.check(connection::parse_name(name)).unwrap_or_default();
    }
    if let Some(regions) = body.regions.as_deref() {
        settings.regions = errors.check(connection::parse_regions(regions)).unwrap_or_default();
    }
    if let Some(default) = body.default_environment {
        settings.default_environment = parse_slug("default_environment", default.as_deref(), &mut errors).flatten();
    }
    if let Some(rules) = body.environment_rules {
        settings.environment_rules = parse_rules(rules, &mut errors).unwrap_or_default();
    }
    if body.lookback_days.is_some() {
        settings.lookback_days = errors.check(connection::parse_lookback_days(body.lookback_days)).unwrap_or_default();
    }
    settings.include_read_only = body.include_read_only.unwrap_or(settings.include_read_only);
    settings.enabled = body.enabled.unwrap_or(settings.enabled);
    if let Some(role) = existing.role_arn.as_deref().and_then(|arn| RoleArn::parse("role_arn", arn).ok()) {
        errors.check(connection::check_regions_in_partition(&role, &settings.regions));
    }
    errors.into_result()?;
    let settings = check_settings(&state, &caller, settings).await?;
    if let Some(account_id) = existing.account_id.as_deref() {
        check_no_overlap(&state, &caller, existing.id, account_id, &settings.regions).await?;
    }
    let updated = state.store.update_connection_settings(caller.org_id, existing.id, &settings).await?;
    let updated = updated.ok_or_else(|| ApiError::not_found("connection"))?;
    let links_changed = updated.settings.environment_rules != existing.settings.environment_rules
        || updated.settings.default_environment != existing.settings.default_environment;
    if links_changed {
        // The worker re-links the stored events in the background, in batches.
        state.store.request_relink(caller.org_id, updated.id).await?;
    }
    if updated.account_id.is_some() {
        state.store.sync_import_jobs(caller.org_id, updated.id).await?;
    }
    Ok(Json(updated.into()))
}

/// Delete a connection and the events it imported. Its role in AWS is left for you to delete.
#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "connections", operation_id = "delete_connection",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["admin"])),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn delete_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    let existing = find(&state, &caller, &id).await?;
    if state.store.delete_connection(caller.org_id, existing.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("connection"))
    }
}

/// Everything needed to create the connection's role, filled in: policies, a CloudFormation
/// template, a Terraform module and AWS CLI commands.
#[utoipa::path(get, path = "/v1/connections/{id}/setup", tag = "connections", operation_id = "get_connection_setup",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["admin"])),
    responses((status = 200, body = ConnectionSetup), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "changetrail's own AWS identity is unknown", body = Problem, content_type = "application/problem+json")))]
async fn get_connection_setup(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionSetup>> {
    caller.require(Scope::Admin)?;
    let connection = find(&state, &caller, &id).await?;
    let principal = state.aws.principal().await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "aws_unavailable",
            format!("changetrail's own AWS identity could not be found with GetCallerIdentity ({e}); set CHANGETRAIL_AWS_PRINCIPAL_ARN"),
        )
    })?;
    let docs = crate::setup::render(&connection, &principal, state.aws.cfn_template_url.as_deref());
    Ok(Json(ConnectionSetup {
        external_id: connection.external_id.as_str().to_owned(),
        service_principal_arn: principal,
        trust_policy: docs.trust_policy,
        permissions_policy: docs.permissions_policy,
        cloudformation_template: docs.cloudformation_template,
        cloudformation_quick_create_url: docs.cloudformation_quick_create_url,
        terraform: docs.terraform,
        aws_cli: docs.aws_cli,
    }))
}

/// Validate a role in AWS and register it: AssumeRole with the external ID, GetCallerIdentity,
/// AssumeRole without the external ID (must be denied), one LookupEvents call.
#[utoipa::path(put, path = "/v1/connections/{id}/role", tag = "connections", operation_id = "register_connection_role",
    params(("id" = Uuid, Path, description = "The connection's id")), request_body = RegisterRole,
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "Registered; the connection is active", body = ConnectionView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_role_arn, region_overlap, assume_role_denied, identity_mismatch, external_id_not_enforced or lookup_denied", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "aws_unavailable: nothing was registered", body = Problem, content_type = "application/problem+json")))]
async fn register_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RegisterRole>,
) -> ApiResult<Json<ConnectionView>> {
    caller.require(Scope::Admin)?;
    let connection = find(&state, &caller, &id).await?;
    let role = RoleArn::parse("role_arn", &body.role_arn).map_err(invalid_role)?;
    // At registration the ARN is what the admin just gave, so a partition clash is its error.
    connection::check_regions_in_partition(&role, &connection.settings.regions).map_err(|clash| {
        let regions = clash.0.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
        invalid_role(Invalid::one(
            "role_arn",
            format!("the role's partition does not hold this connection's regions: {regions}"),
        ))
    })?;
    check_no_overlap(&state, &caller, connection.id, &role.account_id, &connection.settings.regions).await?;
    let validated = validate(&state, &caller, &connection, &role, false).await?;
    Ok(Json(validated.into()))
}

/// Re-run the validation of the registered role; a role that stopped working puts the
/// connection in `error` with the reason.
#[utoipa::path(post, path = "/v1/connections/{id}/validate", tag = "connections", operation_id = "validate_connection",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["admin"])),
    responses((status = 200, description = "The role works; the connection is active", body = ConnectionView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "no_role: register a role first", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The role failed a check; `code` says which", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "aws_unavailable", body = Problem, content_type = "application/problem+json")))]
async fn validate_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    caller.require(Scope::Admin)?;
    let connection = find(&state, &caller, &id).await?;
    let Some(role) = connection.role_arn.as_deref().and_then(|arn| RoleArn::parse("role_arn", arn).ok()) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_role",
            "this connection has no role yet; register one with PUT /v1/connections/{id}/role",
        ));
    };
    Ok(Json(validate(&state, &caller, &connection, &role, true).await?.into()))
}

fn invalid_role(invalid: Invalid) -> ApiError {
    ApiError { code: "invalid_role_arn", ..ApiError::validation(invalid) }
}

/// Runs the checks; on success registers the role, on failure records why. `registered` says
/// whether this re-checks a role already in use (whose failure puts the connection in error).
async fn validate(
    state: &AppState,
    caller: &Caller,
    connection: &Connection,
    role: &RoleArn,
    registered: bool,
) -> ApiResult<Connection> {
    let principal = state.aws.principal().await.unwrap_or_else(|_| "changetrail's principal".to_owned());
    let region = connection.settings.regions.first().map(String::as_str).unwrap_or("us-east-1");
    let outcome = state
        .aws
        .aws
        .validate_role(role, connection.external_id.as_str(), &aws::session_name(connection.id), region)
        .await;
    match outcome {
        Ok(validated) => {
            let registration = RegisteredRole {
                role_arn: role.to_string(),
                account_id: role.account_id.clone(),
                assumed_role_arn: validated.assumed_role_arn,
                validated_at: domain::time_util::now(),
            };
            let updated = state.store.register_role(caller.org_id, connection.id, &registration).await?;
            // Active now: each region gets its import job (a backfill of lookback_days first).
            state.store.sync_import_jobs(caller.org_id, connection.id).await?;
            tracing::info!(connection = %connection.id, role = %role, "role registered");
            updated.ok_or_else(|| ApiError::not_found("connection"))
        }
        Err(failure) => {
            let detail = failure.detail(role, &principal);
            let transient = matches!(failure, aws::RoleCheckFailure::Unavailable(_));
            let problem = ConnectionProblem {
                code: failure.code().to_owned(),
                message: detail.clone(),
                at: domain::time_util::now(),
            };
            state
                .store
                .record_connection_problem(caller.org_id, connection.id, &problem, registered && !transient)
                .await?;
            tracing::info!(connection = %connection.id, role = %role, code = failure.code(), "role validation failed");
            let status = if transient { StatusCode::BAD_GATEWAY } else { StatusCode::UNPROCESSABLE_ENTITY };
            Err(ApiError::new(status, failure.code(), detail))
        }
    }
}
