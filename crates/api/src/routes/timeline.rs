use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use domain::event::EventKind;
use domain::timeline::{decode_cursor, encode_cursor, TimelineFilters, TimelineItem, TimelineQuery};
use domain::{Invalid, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::ListResponse;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, Caller};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_timeline)).routes(routes!(get_timelines))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimelineParams {
    /// RFC 3339; default: 24 hours before `until`.
    pub since: Option<String>,
    /// RFC 3339; default: now.
    pub until: Option<String>,
    /// Repeatable: `cloudtrail`, `deploy`, `alert`, `pull_request`, `custom`. Default: all.
    #[serde(default)]
    pub kind: Vec<String>,
    /// Include read-only CloudTrail events (default false).
    pub include_read_only: Option<bool>,
    /// 1–500, default 50.
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Exactly this actor (a user, a role session, a deploy's actor).
    pub actor: Option<String>,
    /// The item's source (`deploy`, `alert:pagerduty`, `custom`, `aws.cloudtrail`) or a CloudTrail
    /// event source (`ec2.amazonaws.com`).
    pub source: Option<String>,
    /// A resource name or part of one (`sg-0abc`, `prod-bucket`).
    pub resource: Option<String>,
    /// Words in the title, case-insensitive.
    pub q: Option<String>,
    /// The `service` label.
    pub service: Option<String>,
    /// Repeatable `key:value`; every one must match the item's labels.
    #[serde(default)]
    pub label: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnvironmentsParam {
    /// Repeatable: the environments (UUID or slug) whose timelines to merge, 1–20.
    #[serde(default)]
    pub environment: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ResourceView {
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct LinkView {
    pub href: String,
    pub text: String,
}

/// One item of a timeline.
#[derive(Serialize, ToSchema)]
pub struct TimelineItemView {
    pub id: Uuid,
    /// `cloudtrail`, `deploy`, `alert`, `pull_request` or `custom`.
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// What happened, in words: "alice deleted security group sg-0abc (ec2)".
    pub title: String,
    pub actor: Option<String>,
    pub source: String,
    /// The slugs of the environments it belongs to.
    pub environments: Vec<String>,
    pub resources: Vec<ResourceView>,
    pub labels: BTreeMap<String, String>,
    pub links: Vec<LinkView>,
    /// For CloudTrail: event_id, event_name, event_source, region, account_id, read_only,
    /// error_code, source_ip, and `flagged`/`problems` for records that could not be read in full.
    #[schema(value_type = Object)]
    pub details: Value,
}

impl From<TimelineItem> for TimelineItemView {
    fn from(i: TimelineItem) -> Self {
        TimelineItemView {
            id: i.id,
            kind: i.kind.as_str().to_owned(),
            occurred_at: i.occurred_at,
            title: i.title,
            actor: i.actor,
            source: i.source,
            environments: i.environments,
            resources: i
                .resources
                .into_iter()
                .map(|r| ResourceView { resource_type: r.resource_type, name: r.name })
                .collect(),
            labels: i.labels,
            links: i.links.into_iter().map(|l| LinkView { href: l.href, text: l.text }).collect(),
            details: i.details,
        }
    }
}

fn parse_time(field: &str, value: Option<&str>, errors: &mut Invalid) -> Option<OffsetDateTime> {
    let value = value?;
    match OffsetDateTime::parse(value, &Rfc3339) {
        Ok(t) => Some(t),
        Err(_) => {
            errors.push(field, format!("{value:?} is not an RFC 3339 time like 2026-11-20T14:03:00Z"));
            None
        }
    }
}

const MAX_FILTER_CHARS: usize = 256;
const MAX_ENVIRONMENTS: usize = 20;

fn filter(field: &str, value: Option<String>, errors: &mut Invalid) -> Option<String> {
    let value = value.filter(|v| !v.is_empty())?;
    if value.chars().count() > MAX_FILTER_CHARS || value.contains('\0') {
        errors.push(field, format!("must be at most {MAX_FILTER_CHARS} characters, without NUL"));
        return None;
    }
    Some(value)
}

/// One page of the timeline of `environments` (already checked to be the caller's).
async fn page(
    state: &AppState,
    caller: &Caller,
    environment_ids: Vec<Uuid>,
    params: TimelineParams,
) -> ApiResult<ListResponse<TimelineItemView>> {
    let mut errors = Invalid::default();
    let until = parse_time("until", params.until.as_deref(), &mut errors);
    let since = parse_time("since", params.since.as_deref(), &mut errors);
    let mut kinds = Vec::new();
    for (i, kind) in params.kind.iter().enumerate() {
        match EventKind::parse(kind) {
            Some(k) => kinds.push(k),
            None => errors.push(
                format!("kind[{i}]"),
                format!("unknown kind {kind:?}; use cloudtrail, deploy, alert, pull_request or custom"),
            ),
        }
    }
    let limit = match params.limit {
        None => domain::page::DEFAULT_LIMIT,
        Some(n) if (1..=domain::page::MAX_LIMIT as i64).contains(&n) => n as u32,
        Some(_) => {
            errors.push("limit", format!("must be between 1 and {}", domain::page::MAX_LIMIT));
            0
        }
    };
    let mut labels = Vec::new();
    for (i, label) in params.label.iter().enumerate() {
        match label.split_once(':') {
            Some((k, v)) if !k.is_empty() && label.len() <= MAX_FILTER_CHARS => {
                labels.push((k.to_owned(), v.to_owned()))
            }
            _ => errors.push(format!("label[{i}]"), format!("{label:?} is not key:value")),
        }
    }
    let filters = TimelineFilters {
        actor: filter("actor", params.actor, &mut errors),
        source: filter("source", params.source, &mut errors),
        resource: filter("resource", params.resource, &mut errors),
        text: filter("q", params.q, &mut errors),
        service: filter("service", params.service, &mut errors),
        labels,
    };
    let until = until.unwrap_or_else(domain::time_util::now);
    let since = since.unwrap_or(until - time::Duration::hours(24));
    if since > until {
        errors.push("since", "must not be after until");
    }
    errors.into_result()?;
    let after = match params.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(cursor) => Some(decode_cursor(&environment_ids, cursor).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "the cursor was not issued by this server for this timeline")
        })?),
    };
    let query = TimelineQuery {
        environment_ids: environment_ids.clone(),
        filters,
        since,
        until,
        kinds,
        include_read_only: params.include_read_only.unwrap_or(false),
        limit: limit + 1,
        after,
    };
    let mut items = state.store.timeline(caller.org_id, &query).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| encode_cursor(&environment_ids, last.occurred_at, last.id))
    } else {
        None
    };
    Ok(ListResponse { items: items.into_iter().map(Into::into).collect(), next_cursor })
}

/// An environment's timeline, newest first: CloudTrail changes, deploys, alerts, pull requests
/// and custom changes. Following `next_cursor` yields every matching item once, even while new
/// items arrive.
#[utoipa::path(get, path = "/v1/environments/{env}/timeline", tag = "timeline", operation_id = "get_timeline",
    params(("env" = String, Path, description = "The environment's UUID or slug"), TimelineParams),
    security(("bearer" = ["read"])),
    responses((status = 200, body = ListResponse<TimelineItemView>),
        (status = 400, description = "invalid_cursor or invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid times, kind or limit", body = Problem, content_type = "application/problem+json")))]
async fn get_timeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(env): Path<String>,
    ApiQuery(params): ApiQuery<TimelineParams>,
) -> ApiResult<Json<ListResponse<TimelineItemView>>> {
    caller.require(Scope::Read)?;
    let environment = super::environments::find(&state, &caller, &env).await?;
    Ok(Json(page(&state, &caller, vec![environment.id], params).await?))
}

/// Several environments' timelines merged, newest first; an item in several appears once.
#[utoipa::path(get, path = "/v1/timeline", tag = "timeline", operation_id = "get_timelines",
    params(EnvironmentsParam, TimelineParams), security(("bearer" = ["read"])),
    responses((status = 200, body = ListResponse<TimelineItemView>),
        (status = 400, description = "invalid_cursor or invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown environments, invalid times, kind or limit", body = Problem, content_type = "application/problem+json")))]
async fn get_timelines(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(envs): ApiQuery<EnvironmentsParam>,
    ApiQuery(params): ApiQuery<TimelineParams>,
) -> ApiResult<Json<ListResponse<TimelineItemView>>> {
    caller.require(Scope::Read)?;
    if envs.environment.is_empty() || envs.environment.len() > MAX_ENVIRONMENTS {
        return Err(ApiError::invalid_field("environment", format!("give 1 to {MAX_ENVIRONMENTS} environments")));
    }
    let mut errors = Invalid::default();
    let mut ids = Vec::new();
    for (i, env) in envs.environment.iter().enumerate() {
        match super::environments::find(&state, &caller, env).await {
            Ok(e) => ids.push(e.id),
            Err(_) => errors.push(format!("environment[{i}]"), format!("no environment {env:?} in your organisation")),
        }
    }
    errors.into_result()?;
    Ok(Json(page(&state, &caller, ids, params).await?))
}
