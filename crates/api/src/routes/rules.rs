//! `/v1/rules`: rules that page on matching changes, their presets, and their deliveries.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use domain::rule::delivery::{DeliveryStatus, RuleDelivery};
use domain::rule::{RuleAction, RuleMatch, PRESETS};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{path_id, ListParams, ListResponse};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, ApiJson, ApiQuery};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_rule, list_rules))
        .routes(routes!(list_presets))
        .routes(routes!(get_rule, update_rule, delete_rule))
        .routes(routes!(list_rule_deliveries))
}

/// What an item must be; every field given must hold (at least one, or a preset).
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchBody {
    /// A preset of `GET /v1/rules/presets`.
    #[schema(example = "cis-aws-5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// `eventName`s; `*` matches any run of characters (`Delete*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 100)]
    pub event_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 100, example = json!(["iam.amazonaws.com"]))]
    pub event_sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 100, example = json!(["AccessDenied*"]))]
    pub error_codes: Vec<String>,
    /// The item's actor or the caller's ARN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 100, example = json!(["arn:aws:iam::*:role/admin-*"]))]
    pub actor_patterns: Vec<String>,
    /// `userIdentity.type`: `Root`, `IAMUser`, `AssumedRole`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 100, example = json!(["Root"]))]
    pub identity_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// A console sign-in without MFA.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub console_login_without_mfa: bool,
}

impl From<MatchBody> for RuleMatch {
    fn from(m: MatchBody) -> RuleMatch {
        RuleMatch {
            preset: m.preset,
            event_names: m.event_names,
            event_sources: m.event_sources,
            error_codes: m.error_codes,
            actor_patterns: m.actor_patterns,
            identity_types: m.identity_types,
            read_only: m.read_only,
            console_login_without_mfa: m.console_login_without_mfa,
        }
    }
}

impl From<RuleMatch> for MatchBody {
    fn from(m: RuleMatch) -> MatchBody {
        MatchBody {
            preset: m.preset,
            event_names: m.event_names,
            event_sources: m.event_sources,
            error_codes: m.error_codes,
            actor_patterns: m.actor_patterns,
            identity_types: m.identity_types,
            read_only: m.read_only,
            console_login_without_mfa: m.console_login_without_mfa,
        }
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // names the values of `severity` in the OpenAPI document
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

/// What to do with a match: exactly one of these.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionBody {
    /// Trigger a PagerDuty incident (Events API v2), de-duplicated per rule and item.
    PagerdutyAlert {
        /// The integration key of a PagerDuty service's Events API v2 integration.
        #[schema(example = "R0UT1NGKEY0000000000000000000000", min_length = 1, max_length = 128)]
        routing_key: String,
        #[schema(value_type = Severity)]
        severity: String,
    },
    /// Send a PagerDuty change event, shown beside incidents as a recent change.
    PagerdutyChange {
        #[schema(min_length = 1, max_length = 128)]
        routing_key: String,
    },
    /// POST the match to an https URL, signed as Standard Webhooks.
    Webhook {
        #[schema(example = "https://hooks.example.com/changetrail", max_length = 2048)]
        url: String,
        /// `whsec_` and base64 of 24–64 bytes; made for you (and shown once) when absent.
        secret: Option<String>,
    },
}

impl From<ActionBody> for app::ActionInput {
    fn from(a: ActionBody) -> app::ActionInput {
        match a {
            ActionBody::PagerdutyAlert { routing_key, severity } => {
                app::ActionInput::PagerdutyAlert { routing_key, severity }
            }
            ActionBody::PagerdutyChange { routing_key } => app::ActionInput::PagerdutyChange { routing_key },
            ActionBody::Webhook { url, secret } => app::ActionInput::Webhook { url, secret },
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    #[schema(example = "CloudTrail tampering", min_length = 1, max_length = 200)]
    pub name: String,
    /// Default true.
    pub enabled: Option<bool>,
    /// Environment slugs whose items it matches; empty or absent: every item.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub environments: Vec<String>,
    #[serde(rename = "match")]
    pub matcher: MatchBody,
    pub action: ActionBody,
}

/// What to change; an `action` replaces the whole action, its secret included.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePatchBody {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    pub enabled: Option<bool>,
    #[schema(max_items = 100)]
    pub environments: Option<Vec<String>>,
    #[serde(rename = "match")]
    pub matcher: Option<MatchBody>,
    pub action: Option<ActionBody>,
}

/// The shown part of an action: never its routing key or secret.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionView {
    PagerdutyAlert {
        #[schema(value_type = Severity)]
        severity: String,
    },
    PagerdutyChange {},
    Webhook {
        url: String,
    },
}

#[derive(Serialize, ToSchema)]
pub struct RuleView {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    /// Empty: every item.
    pub environments: Vec<String>,
    #[serde(rename = "match")]
    pub matcher: MatchBody,
    pub action: ActionView,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<app::RuleView> for RuleView {
    fn from(v: app::RuleView) -> RuleView {
        let s = v.rule.settings;
        RuleView {
            id: v.rule.id,
            name: s.name,
            enabled: s.enabled,
            environments: v.environments.iter().map(|e| e.as_str().to_owned()).collect(),
            matcher: s.matcher.into(),
            action: match s.action {
                RuleAction::PagerdutyAlert { severity } => ActionView::PagerdutyAlert { severity },
                RuleAction::PagerdutyChange => ActionView::PagerdutyChange {},
                RuleAction::Webhook { url } => ActionView::Webhook { url },
            },
            created_at: v.rule.created_at,
            updated_at: v.rule.updated_at,
        }
    }
}

/// A rule as created or changed; `secret` only when one was made for its webhook now.
#[derive(Serialize, ToSchema)]
pub struct SavedRule {
    #[serde(flatten)]
    pub rule: RuleView,
    /// The webhook's signing secret, made for it: shown only now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn saved((view, secret): (app::RuleView, Option<String>)) -> SavedRule {
    SavedRule { rule: view.into(), secret }
}

/// Create a rule. Every item stored from then on (polled, pushed, posted, from a channel or a
/// webhook) that matches it puts an `alert` item on the timeline and is delivered.
#[utoipa::path(post, path = "/v1/rules", tag = "rules", operation_id = "create_rule",
    request_body = RuleBody, security(("bearer" = ["admin"])),
    responses((status = 201, body = SavedRule)))]
async fn create_rule(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<RuleBody>,
) -> ApiResult<(StatusCode, Json<SavedRule>)> {
    let input = app::RuleInput {
        name: body.name,
        enabled: body.enabled.unwrap_or(true),
        environments: body.environments,
        matcher: body.matcher.into(),
        action: body.action.into(),
    };
    Ok((StatusCode::CREATED, Json(saved(state.create_rule(caller.org_id, input).await?))))
}

/// List rules, oldest first.
#[utoipa::path(get, path = "/v1/rules", tag = "rules", operation_id = "list_rules",
    params(ListParams), security(("bearer" = ["admin"])),
    responses((status = 200, body = ListResponse<RuleView>)))]
async fn list_rules(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<ListResponse<RuleView>>> {
    let page = state.rules(caller.org_id, params.page()?).await?;
    Ok(Json(ListResponse::from_page(page, RuleView::from)))
}

/// A clause of a preset: the record's field and its test.
#[derive(Serialize, ToSchema)]
pub struct ClauseView {
    /// A dotted path in the CloudTrail record (`userIdentity.type`).
    pub field: &'static str,
    /// The field is one of these (`*` at either end is a wildcard).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<&'static str>>,
    /// The field is absent or not this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not: Option<&'static str>,
    /// The field is absent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PresetView {
    #[schema(example = "cis-aws-5")]
    pub id: &'static str,
    /// The AWS Security Hub control (CIS AWS Foundations Benchmark) it implements.
    #[schema(example = "CloudWatch.5")]
    pub control: &'static str,
    pub title: &'static str,
    /// It matches a record when every clause of one of these holds.
    pub any_of: Vec<Vec<ClauseView>>,
    /// The same as a CloudWatch Logs metric filter pattern.
    pub filter_pattern: String,
}

#[derive(Serialize, ToSchema)]
pub struct PresetsResponse {
    pub items: Vec<PresetView>,
}

/// The presets: the CIS AWS Foundations monitoring controls (Security Hub CloudWatch.1–14, and
/// AWS Organizations changes), each with exactly what it matches.
#[utoipa::path(get, path = "/v1/rules/presets", tag = "rules", operation_id = "list_rule_presets",
    security(("bearer" = ["admin"])), responses((status = 200, body = PresetsResponse)))]
async fn list_presets(Admin(_caller): Admin) -> Json<PresetsResponse> {
    use domain::rule::presets::Test;
    let items = PRESETS
        .iter()
        .map(|p| PresetView {
            id: p.id,
            control: p.control,
            title: p.title,
            any_of: p
                .any_of
                .iter()
                .map(|clauses| {
                    clauses
                        .iter()
                        .map(|c| ClauseView {
                            field: c.field,
                            any_of: match c.test {
                                Test::AnyOf(values) => Some(values.to_vec()),
                                _ => None,
                            },
                            not: match c.test {
                                Test::Not(value) => Some(value),
                                _ => None,
                            },
                            absent: c.test == Test::Absent,
                        })
                        .collect()
                })
                .collect(),
            filter_pattern: p.filter_pattern(),
        })
        .collect();
    Json(PresetsResponse { items })
}

/// One rule.
#[utoipa::path(get, path = "/v1/rules/{id}", tag = "rules", operation_id = "get_rule",
    params(("id" = Uuid, Path, description = "The rule's id")), security(("bearer" = ["admin"])),
    responses((status = 200, body = RuleView)))]
async fn get_rule(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<RuleView>> {
    Ok(Json(state.rule(caller.org_id, path_id(&id, "rule")?).await?.into()))
}

/// Change a rule. Deliveries already due are sent with the rule as it is when they are sent
/// (a disabled rule sends none).
#[utoipa::path(patch, path = "/v1/rules/{id}", tag = "rules", operation_id = "update_rule",
    params(("id" = Uuid, Path, description = "The rule's id")), request_body = RulePatchBody,
    security(("bearer" = ["admin"])), responses((status = 200, body = SavedRule)))]
async fn update_rule(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RulePatchBody>,
) -> ApiResult<Json<SavedRule>> {
    let patch = app::RulePatch {
        name: body.name,
        enabled: body.enabled,
        environments: body.environments,
        matcher: body.matcher.map(Into::into),
        action: body.action.map(Into::into),
    };
    Ok(Json(saved(state.update_rule(caller.org_id, path_id(&id, "rule")?, patch).await?)))
}

/// Delete a rule and its deliveries (pending ones are not sent); its alert items stay.
#[utoipa::path(delete, path = "/v1/rules/{id}", tag = "rules", operation_id = "delete_rule",
    params(("id" = Uuid, Path, description = "The rule's id")), security(("bearer" = ["admin"])),
    responses((status = 204, description = "Deleted")))]
async fn delete_rule(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.delete_rule(caller.org_id, path_id(&id, "rule")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RuleDeliveriesParams {
    /// 1–500, default 50.
    #[serde(default, deserialize_with = "domain::validation::query_value")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // names the values of `status` in the OpenAPI document
pub enum DeliveryStatusName {
    Pending,
    Delivered,
    Failed,
    Cancelled,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The target's answer; absent when it could not be reached.
    pub http_status: Option<u16>,
    /// Why it did not count (the start of the target's answer, a timeout, a refused address).
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Serialize, ToSchema)]
pub struct RuleDeliveryView {
    pub id: Uuid,
    /// The matched item.
    pub event_id: Uuid,
    /// The `alert` item the match put on the timeline.
    pub alert_event_id: Option<Uuid>,
    #[schema(value_type = DeliveryStatusName)]
    pub status: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When a pending delivery is tried next.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Oldest first.
    pub attempts: Vec<AttemptView>,
}

impl From<RuleDelivery> for RuleDeliveryView {
    fn from(d: RuleDelivery) -> RuleDeliveryView {
        RuleDeliveryView {
            id: d.id,
            event_id: d.event_id,
            alert_event_id: d.alert_event_id,
            status: DeliveryStatus::as_str(d.status),
            created_at: d.created_at,
            next_attempt_at: d.next_attempt_at,
            finished_at: d.finished_at,
            attempts: d
                .attempts
                .into_iter()
                .map(|a| AttemptView {
                    at: a.at,
                    http_status: a.http_status,
                    error: a.error,
                    duration_ms: a.duration_ms,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RuleDeliveriesResponse {
    /// Newest first.
    pub items: Vec<RuleDeliveryView>,
}

/// The newest deliveries of a rule, each with every attempt and its answer.
#[utoipa::path(get, path = "/v1/rules/{id}/deliveries", tag = "rules", operation_id = "list_rule_deliveries",
    params(("id" = Uuid, Path, description = "The rule's id"), RuleDeliveriesParams), security(("bearer" = ["admin"])),
    responses((status = 200, body = RuleDeliveriesResponse)))]
async fn list_rule_deliveries(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<RuleDeliveriesParams>,
) -> ApiResult<Json<RuleDeliveriesResponse>> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be between 1 and 500"));
    }
    let deliveries = state.rule_deliveries(caller.org_id, path_id(&id, "rule")?, limit as u32).await?;
    Ok(Json(RuleDeliveriesResponse { items: deliveries.into_iter().map(Into::into).collect() }))
}
