use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::connection::{EnvironmentRule, SettingsPatch};
use domain::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{double_option, path_id, ListParams, ListResponse};
use crate::error::{ApiResult, Problem};
use crate::extract::{Admin, ApiJson, ApiQuery, Reader};
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
        .routes(routes!(reimport_connection))
        .routes(routes!(list_connection_members))
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

/// Events pushed by EventBridge (`POST /v1/connections/{id}/push`).
#[derive(Serialize, ToSchema)]
pub struct PushImport {
    /// False until a push secret is created.
    pub enabled: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub secret_created_at: Option<OffsetDateTime>,
    /// When the newest pushed event was stored.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_received_at: Option<OffsetDateTime>,
    /// Events stored from pushes in the last hour (retries and events the poll stored first
    /// are not counted).
    pub events_last_hour: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionImports {
    /// The poll, per region.
    pub items: Vec<RegionImport>,
    pub push: PushImport,
}

/// Import progress per region, and the events pushed by EventBridge.
#[utoipa::path(get, path = "/v1/connections/{id}/imports", tag = "connections", operation_id = "list_connection_imports",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["read"])),
    responses((status = 200, body = ConnectionImports), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn list_connection_imports(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionImports>> {
    let connection = state.connection(caller.org_id, path_id(&id, "connection")?).await?;
    let imports = state.connection_imports(caller.org_id, connection.id).await?;
    let push = state.push_status(&connection).await?;
    let items = imports
        .into_iter()
        .map(|i| RegionImport {
            region: i.job.region,
            status: i.status.to_owned(),
            checkpoint: i.checkpoint,
            last_run_at: i.job.last_run_at,
            last_success_at: i.job.last_success_at,
            next_run_at: i.job.next_run_at,
            events_imported: i.job.events_imported,
            events_flagged: i.job.events_flagged,
            last_error: i.job.last_error,
        })
        .collect();
    let push = PushImport {
        enabled: push.secret_created_at.is_some(),
        secret_created_at: push.secret_created_at,
        last_received_at: push.last_received_at,
        events_last_hour: push.events_last_hour,
    };
    Ok(Json(ConnectionImports { items, push }))
}

/// Import now, without waiting for the schedule.
#[utoipa::path(post, path = "/v1/connections/{id}/sync", tag = "connections", operation_id = "sync_connection",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["admin"])),
    responses((status = 202, description = "Every region is due now"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not_active: register a working role first", body = Problem, content_type = "application/problem+json")))]
async fn sync_connection(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.sync_connection(caller.org_id, path_id(&id, "connection")?).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Import the last `lookback_days` again, now: events the connection's filter (or its
/// read-only setting) dropped and would keep today are stored; events already stored are not
/// stored twice. A walk in progress starts over.
#[utoipa::path(post, path = "/v1/connections/{id}/reimport", tag = "connections", operation_id = "reimport_connection",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["admin"])),
    responses((status = 202, description = "Every region walks its lookback window again"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not_active: register a working role first", body = Problem, content_type = "application/problem+json")))]
async fn reimport_connection(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.reimport_connection(caller.org_id, path_id(&id, "connection")?).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// 1–200 characters, not only spaces, no control characters.
    #[schema(
        example = "Production account",
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
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
    #[serde(default, deserialize_with = "domain::validation::whole_number")]
    #[schema(minimum = 1, maximum = 90)]
    pub lookback_days: Option<i64>,
    /// Import read-only events too (default false: changes only).
    #[serde(default)]
    pub include_read_only: bool,
    /// How long the role's sessions last, 900–43,200 seconds (default 3,600); the role's
    /// `MaxSessionDuration` must allow it (the setup documents set it).
    #[serde(default, deserialize_with = "domain::validation::whole_number")]
    #[schema(minimum = 900, maximum = 43200)]
    pub session_duration: Option<i64>,
    /// Which events are kept, on import and push (default: all but session noise).
    #[schema(value_type = Option<EventFilterSchema>)]
    pub event_filter: Option<Value>,
    /// Generated by changetrail; giving one is an error.
    #[schema(value_type = Option<String>)]
    pub external_id: Option<Value>,
    /// `account` (the default: one account) or `organization`: the role registered next is in
    /// the organisation's management (or a delegated administrator) account and lists its
    /// accounts; changetrail keeps a member connection per account, with these settings.
    #[serde(default)]
    pub kind: Option<CreatableKind>,
    /// Of an organisation connection: the role's name in every member account (default
    /// `changetrail-reader`), as the setup's StackSet creates it.
    #[schema(example = "changetrail-reader", pattern = "^[A-Za-z0-9+=,.@_-]{1,64}$")]
    #[serde(default)]
    pub member_role_name: Option<String>,
}

/// What a connection reaches.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CreatableKind {
    Account,
    Organization,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: Option<String>,
    pub regions: Option<Vec<String>>,
    /// `null` removes the default environment.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub default_environment: Option<Option<String>>,
    #[schema(value_type = Option<Vec<EnvironmentRuleSchema>>)]
    pub environment_rules: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "domain::validation::whole_number")]
    #[schema(minimum = 1, maximum = 90)]
    pub lookback_days: Option<i64>,
    pub include_read_only: Option<bool>,
    /// `false` stops imports; the role, settings and progress are kept.
    pub enabled: Option<bool>,
    /// How long the role's sessions last, 900–43,200 seconds (default 3,600); the role's
    /// `MaxSessionDuration` must allow it (the setup documents set it).
    #[serde(default, deserialize_with = "domain::validation::whole_number")]
    #[schema(minimum = 900, maximum = 43200)]
    pub session_duration: Option<i64>,
    /// Replaces the filter whole. Events it dropped before come back with
    /// `POST /v1/connections/{id}/reimport`.
    #[schema(value_type = Option<EventFilterSchema>)]
    pub event_filter: Option<Value>,
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

/// Which CloudTrail events a connection keeps. Globs use `*`. An event is dropped when
/// `include_event_names` is given and none matches its name, when an exclusion matches, or when
/// it is session noise (STS sessions, the SSM agent's heartbeats, the console's MFA step,
/// Secrets Manager's deletion bookkeeping, log streams) and `exclude_session_noise` is on
/// (the default) and `include_event_names` does not name it. Dropped events are counted in the
/// connection's `events_excluded`.
#[derive(Default, Serialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = EventFilter)]
pub struct EventFilterSchema {
    #[schema(example = json!(["Delete*", "Put*Policy"]))]
    include_event_names: Vec<String>,
    #[schema(example = json!(["*Tagging", "CreateTags"]))]
    exclude_event_names: Vec<String>,
    #[schema(example = json!(["ssm.amazonaws.com"]))]
    exclude_event_sources: Vec<String>,
    #[schema(example = json!(["terraform-*"]))]
    exclude_actors: Vec<String>,
    /// Default true.
    exclude_session_noise: bool,
}

impl From<domain::noise::EventFilter> for EventFilterSchema {
    fn from(f: domain::noise::EventFilter) -> Self {
        EventFilterSchema {
            include_event_names: f.include_event_names,
            exclude_event_names: f.exclude_event_names,
            exclude_event_sources: f.exclude_event_sources,
            exclude_actors: f.exclude_actors,
            exclude_session_noise: f.exclude_session_noise,
        }
    }
}

/// Either `role_arn`, or `role_chain`: up to 5 role ARNs assumed in turn, each with the one
/// before's credentials, the first with changetrail's own. The external ID is passed on every
/// hop (a trust policy without the condition ignores it): the first role's trust policy names
/// changetrail's principal and should require it; the last one's must (it is checked like a
/// single role's). The last role's account is the one imported. Hops after the first last at
/// most an hour (AWS's limit on chained sessions).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRole {
    /// An IAM role's ARN (not a user's, nor an assumed-role session's).
    #[schema(
        example = "arn:aws:iam::123456789012:role/changetrail-cloudtrail-reader",
        pattern = "^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b|aws-iso-e|aws-iso-f|aws-eusc):iam::[0-9]{12}:role/([\\u0021-\\u002e\\u0030-\\u007e]+/)*[A-Za-z0-9_+=,.@-]{1,64}$"
    )]
    pub role_arn: Option<String>,
    #[schema(min_items = 1, max_items = 5, example = json!(["arn:aws:iam::111111111111:role/hub", "arn:aws:iam::123456789012:role/changetrail-cloudtrail-reader"]))]
    pub role_chain: Option<Vec<String>>,
    /// `service` instead of a role: import the account of changetrail's own AWS identity
    /// (aws-config's chain: instance or task role, profile, environment keys) with that identity.
    /// Refused (403 `service_credentials_disabled`) unless the operator set
    /// `CHANGETRAIL_ALLOW_SERVICE_CREDENTIALS=true`, and then for one organisation only.
    #[serde(default)]
    pub credentials: Option<CredentialsInput>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialsInput {
    Service,
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
    pub event_filter: EventFilterSchema,
    /// Seconds the role's sessions last.
    pub session_duration: u32,
    /// Events the filter dropped, on import and push, since the connection was made.
    pub events_excluded: i64,
    /// Generated by changetrail, immutable: the role's trust policy must require it.
    pub external_id: String,
    /// `pending_role`, `active` or `error`.
    #[schema(example = "pending_role")]
    pub status: String,
    pub role_arn: Option<String>,
    /// The roles assumed in turn to reach `role_arn`, ending with it; empty when changetrail
    /// assumes `role_arn` itself.
    pub role_chain: Vec<String>,
    pub account_id: Option<String>,
    pub assumed_role_arn: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub validated_at: Option<OffsetDateTime>,
    pub last_error: Option<ConnectionErrorView>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// `account`, `organization` (lists its accounts; its members import them) or `member`.
    #[schema(example = "account")]
    pub kind: String,
    /// `role` (AssumeRole) or `service` (changetrail's own identity).
    #[schema(example = "role")]
    pub credentials: String,
    /// Of a member: its organisation connection.
    pub organization_connection_id: Option<Uuid>,
    /// Of an organisation connection: the role's name in each member account.
    pub member_role_name: Option<String>,
    /// Of a member: the account's name and status as AWS Organizations lists it (`ACTIVE`,
    /// `SUSPENDED`, `PENDING_CLOSURE`), or `LEFT`.
    pub account_name: Option<String>,
    pub account_status: Option<String>,
    /// Of a member: its settings were changed on it and no longer follow its organisation's.
    pub settings_overridden: bool,
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
            event_filter: settings.event_filter.into(),
            session_duration: settings.session_duration_seconds,
            events_excluded: c.events_excluded,
            external_id: c.external_id.as_str().to_owned(),
            status: c.status.as_str().to_owned(),
            role_chain: match (&c.role_arn, c.role_via.is_empty()) {
                (Some(arn), false) => c.role_via.iter().cloned().chain(std::iter::once(arn.clone())).collect(),
                _ => Vec::new(),
            },
            role_arn: c.role_arn,
            account_id: c.account_id,
            assumed_role_arn: c.assumed_role_arn,
            validated_at: c.validated_at,
            last_error: c.last_error.map(|e| ConnectionErrorView { code: e.code, message: e.message, at: e.at }),
            created_at: c.created_at,
            updated_at: c.updated_at,
            kind: c.kind.as_str().to_owned(),
            credentials: match c.credentials {
                domain::connection::CredentialSource::Role => "role".to_owned(),
                domain::connection::CredentialSource::Service => "service".to_owned(),
            },
            organization_connection_id: c.parent_id,
            member_role_name: c.member_role_name,
            account_name: c.member_account.as_ref().map(|a| a.name.clone()),
            account_status: c.member_account.map(|a| a.status),
            settings_overridden: c.settings_overridden,
        }
    }
}

/// An organisation connection's members: one per account AWS Organizations lists (and those it
/// no longer lists, `LEFT`), each an ordinary connection.
#[derive(Serialize, ToSchema)]
pub struct ConnectionMembers {
    /// When the accounts were last listed; `null` before the first discovery.
    #[serde(with = "time::serde::rfc3339::option")]
    pub discovered_at: Option<OffsetDateTime>,
    /// Why the last listing failed, if it did.
    pub discovery_error: Option<String>,
    pub items: Vec<ConnectionView>,
}

/// The member accounts of an organisation connection, with their status and last error.
#[utoipa::path(get, path = "/v1/connections/{id}/members", tag = "connections", operation_id = "list_connection_members",
    params(("id" = Uuid, Path, description = "The organisation connection's id")), security(("bearer" = ["admin"])),
    responses((status = 200, body = ConnectionMembers), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not_organization: only an organisation connection has members", body = Problem, content_type = "application/problem+json")))]
async fn list_connection_members(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionMembers>> {
    let (parent, members) = state.connection_members(caller.org_id, path_id(&id, "connection")?).await?;
    Ok(Json(ConnectionMembers {
        discovered_at: parent.discovered_at,
        discovery_error: parent.discovery_error,
        items: members.into_iter().map(ConnectionView::from).collect(),
    }))
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
    /// YAML: EventBridge pushes this account's CloudTrail changes to changetrail within seconds
    /// (POST /v1/connections/{id}/push gives its `PushSecret`). Deploy it in each of the
    /// connection's regions (one stack per region, or a StackSet over them): the first region
    /// gets the API destination, the others forward to it.
    pub eventbridge_cloudformation: String,
    /// The same as a Terraform configuration (HCL) with `push_secret` as a variable: one
    /// provider per region of the connection.
    pub eventbridge_terraform: String,
    /// Of an organisation connection: the member role's template, which the StackSet of
    /// `cloudformation_template` deploys to every account (its trust requires the external ID,
    /// a dash, and the account's id).
    pub member_cloudformation_template: Option<String>,
}

impl From<CreateConnection> for SettingsPatch {
    fn from(body: CreateConnection) -> Self {
        SettingsPatch {
            name: Some(body.name),
            regions: Some(body.regions),
            default_environment: body.default_environment.map(Some),
            environment_rules: Some(body.environment_rules),
            lookback_days: body.lookback_days,
            include_read_only: Some(body.include_read_only),
            enabled: None,
            event_filter: body.event_filter,
            session_duration: body.session_duration,
            external_id_given: body.external_id.is_some(),
        }
    }
}

impl From<UpdateConnection> for SettingsPatch {
    fn from(body: UpdateConnection) -> Self {
        SettingsPatch {
            name: body.name,
            regions: body.regions,
            default_environment: body.default_environment,
            environment_rules: body.environment_rules,
            lookback_days: body.lookback_days,
            include_read_only: body.include_read_only,
            enabled: body.enabled,
            event_filter: body.event_filter,
            session_duration: body.session_duration,
            external_id_given: body.external_id.is_some(),
        }
    }
}

/// Register an AWS account's CloudTrail: answers with a generated `external_id` for the role's
/// trust policy, and `status: pending_role`.
#[utoipa::path(post, path = "/v1/connections", tag = "connections", operation_id = "create_connection",
    request_body = CreateConnection, security(("bearer" = ["admin"])),
    responses((status = 201, body = ConnectionView)))]
async fn create_connection(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<CreateConnection>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    let (kind, member_role_name) = (body.kind, body.member_role_name.clone());
    let created = match kind {
        Some(CreatableKind::Organization) => {
            state.create_organization_connection(caller.org_id, body.into(), member_role_name.as_deref()).await?
        }
        _ if member_role_name.is_some() => {
            return Err(crate::error::ApiError::invalid_field(
                "member_role_name",
                "is for an organisation connection (kind: organization)",
            ))
        }
        _ => state.create_connection(caller.org_id, body.into()).await?,
    };
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// List connections, oldest first.
#[utoipa::path(get, path = "/v1/connections", tag = "connections", operation_id = "list_connections",
    params(ListParams), security(("bearer" = ["admin"])),
    responses((status = 200, body = ListResponse<ConnectionView>)))]
async fn list_connections(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<ListResponse<ConnectionView>>> {
    let page = state.store.list_connections(caller.org_id, params.page()?).await?;
    Ok(Json(ListResponse::from_page(page, ConnectionView::from)))
}

/// Get one connection.
#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections", operation_id = "get_connection",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["admin"])),
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_connection(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    Ok(Json(state.connection(caller.org_id, path_id(&id, "connection")?).await?.into()))
}

/// Change a connection's settings. The external ID cannot be changed.
#[utoipa::path(patch, path = "/v1/connections/{id}", tag = "connections", operation_id = "update_connection",
    params(("id" = Uuid, Path, description = "The connection's id")), request_body = UpdateConnection,
    security(("bearer" = ["admin"])),
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn update_connection(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateConnection>,
) -> ApiResult<Json<ConnectionView>> {
    let updated = state.update_connection(caller.org_id, path_id(&id, "connection")?, body.into()).await?;
    Ok(Json(updated.into()))
}

/// Delete a connection and the events it imported. Its role in AWS is left for you to delete.
#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "connections", operation_id = "delete_connection",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["admin"])),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn delete_connection(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.delete_connection(caller.org_id, path_id(&id, "connection")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Everything needed to create the connection's role, filled in: policies, a CloudFormation
/// template, a Terraform module and AWS CLI commands.
#[utoipa::path(get, path = "/v1/connections/{id}/setup", tag = "connections", operation_id = "get_connection_setup",
    params(("id" = Uuid, Path, description = "The connection's id")), security(("bearer" = ["admin"])),
    responses((status = 200, body = ConnectionSetup), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "changetrail's own AWS identity is unknown", body = Problem, content_type = "application/problem+json")))]
async fn get_connection_setup(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionSetup>> {
    let connection = state.connection(caller.org_id, path_id(&id, "connection")?).await?;
    let principal = state.service_principal().await?;
    let push_url = state.push_url(connection.id);
    let docs = crate::setup::render(&connection, &principal, state.aws.cfn_template_url.as_deref(), &push_url);
    Ok(Json(ConnectionSetup {
        external_id: connection.external_id.as_str().to_owned(),
        service_principal_arn: principal,
        trust_policy: docs.trust_policy,
        permissions_policy: docs.permissions_policy,
        cloudformation_template: docs.cloudformation_template,
        cloudformation_quick_create_url: docs.cloudformation_quick_create_url,
        terraform: docs.terraform,
        aws_cli: docs.aws_cli,
        eventbridge_cloudformation: docs.eventbridge_cloudformation,
        eventbridge_terraform: docs.eventbridge_terraform,
        member_cloudformation_template: docs.member_cloudformation_template,
    }))
}

/// Validate a role in AWS and register it: AssumeRole with the external ID, GetCallerIdentity,
/// AssumeRole without the external ID (must be denied), one LookupEvents call.
#[utoipa::path(put, path = "/v1/connections/{id}/role", tag = "connections", operation_id = "register_connection_role",
    params(("id" = Uuid, Path, description = "The connection's id")), request_body = RegisterRole,
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "Registered; the connection is active", body = ConnectionView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "service_credentials_disabled or service_credentials_taken", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "organization_member: a member's role is kept by discovery", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_role_arn, region_overlap, assume_role_denied, identity_mismatch, external_id_not_enforced, lookup_denied, list_accounts_denied or session_duration_too_long", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "aws_unavailable: nothing was registered", body = Problem, content_type = "application/problem+json")))]
async fn register_role(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RegisterRole>,
) -> ApiResult<Json<ConnectionView>> {
    let role = match (&body.role_arn, &body.role_chain, &body.credentials) {
        (Some(arn), None, None) => app::RoleInput::Arn(arn),
        (None, Some(chain), None) => app::RoleInput::Chain(chain),
        (None, None, Some(CredentialsInput::Service)) => app::RoleInput::Service,
        _ => {
            return Err(crate::error::ApiError::invalid_field(
                "role_arn",
                "give one of role_arn (one role), role_chain (roles assumed in turn) or credentials: service",
            ))
        }
    };
    let registered = state.register_role(caller.org_id, path_id(&id, "connection")?, role).await?;
    Ok(Json(registered.into()))
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
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    Ok(Json(state.validate_connection(caller.org_id, path_id(&id, "connection")?).await?.into()))
}
