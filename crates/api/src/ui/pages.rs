//! The pages a signed-in browser reads: environments, a timeline (and its live updates), an
//! item, an alert's suspects, and the connections' import status.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use domain::timeline::{TimelineParams, TimelineRequest};
use domain::PageRequest;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{page, render_template, SignedIn, UiError};
use crate::error::ApiError;
use crate::routes::timeline::{event_stream, last_event_id, TimelineItemView};
use crate::AppState;

/// The time range presets, as the `range` parameter names them.
const PRESETS: &[(&str, &str, i64)] =
    &[("1h", "1 hour", 1), ("6h", "6 hours", 6), ("24h", "24 hours", 24), ("7d", "7 days", 24 * 7)];
const DEFAULT_RANGE: &str = "24h";
const KINDS: &[&str] = &["cloudtrail", "deploy", "alert", "pull_request", "custom"];
/// Rows per timeline page: more than a 1080p screen shows in the compact density.
const TIMELINE_PAGE: &str = "50";
const CONNECTIONS_PAGE: u32 = 50;

/// A page's context: the layout's fields and the page's own.
fn with_layout(signed_in: &SignedIn, page: Value) -> Value {
    let mut context = signed_in.layout();
    if let (Some(context), Value::Object(page)) = (context.as_object_mut(), page) {
        context.extend(page);
    }
    context
}

fn not_found(what: &str) -> UiError {
    UiError::from(ApiError::not_found(what))
}

pub async fn environments(State(state): State<AppState>, signed_in: SignedIn) -> Result<Response, UiError> {
    let request = PageRequest { limit: domain::page::MAX_LIMIT, after: None };
    let environments = state.store.list_environments(signed_in.caller.org_id, request).await.map_err(ApiError::from)?;
    let listed: Vec<Value> = environments
        .items
        .iter()
        .map(|e| json!({"slug": e.slug.as_str(), "name": e.name, "description": e.description}))
        .collect();
    let context = with_layout(&signed_in, json!({"environments": listed, "more": environments.next_cursor.is_some()}));
    Ok(page(StatusCode::OK, "environments.html", &context))
}

/// A timeline page's query string as the form sends it: the API's parameters, less the empty
/// ones (an empty field is no filter), with `range` for the presets.
struct TimelineForm {
    pairs: Vec<(String, String)>,
}

impl TimelineForm {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_html_form::from_str(query.unwrap_or(""))
            .map_err(|e| ApiError::bad_request("invalid_query", format!("the query string cannot be read: {e}")))?;
        Ok(TimelineForm { pairs: pairs.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect() })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A field's value for the form, empty when not given.
    fn text(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    fn range(&self) -> &str {
        match self.get("range") {
            Some(range) => range,
            None if self.get("since").is_some() || self.get("until").is_some() => "custom",
            None => DEFAULT_RANGE,
        }
    }

    /// The filters alone (no window, page or range), as a query string.
    fn filters(&self) -> Vec<(String, String)> {
        let window = ["range", "since", "until", "cursor", "limit"];
        self.pairs.iter().filter(|(k, _)| !window.contains(&k.as_str())).cloned().collect()
    }

    /// The API's parameters: a preset becomes its window; a custom time without a zone (what a
    /// `datetime-local` field sends) is read as UTC, as the form says.
    fn params(&self, now: OffsetDateTime) -> Result<TimelineParams, ApiError> {
        let mut pairs = self.filters();
        let range = self.range();
        if let Some(cursor) = self.get("cursor") {
            // The cursor brings the window of the page it continues.
            pairs.push(("cursor".into(), cursor.into()));
        } else if let Some((_, _, hours)) = PRESETS.iter().find(|(value, _, _)| *value == range) {
            let since = (now - time::Duration::hours(*hours)).format(&Rfc3339).map_err(ApiError::internal)?;
            pairs.push(("since".into(), since));
        } else {
            for key in ["since", "until"] {
                if let Some(value) = self.get(key) {
                    pairs.push((key.into(), as_utc(value)));
                }
            }
        }
        pairs.push(("limit".into(), TIMELINE_PAGE.into()));
        api_params(&pairs)
    }
}

/// Pairs as the API's timeline parameters, read (and refused) as the API reads its query.
fn api_params(pairs: &[(String, String)]) -> Result<TimelineParams, ApiError> {
    let query = serde_html_form::to_string(pairs).map_err(ApiError::internal)?;
    serde_html_form::from_str(&query).map_err(|e| ApiError::invalid_field("query", e.to_string()))
}

/// `2026-12-02T05:00` or `2026-12-02T05:00:30` (no zone) as UTC; anything else as it is.
fn as_utc(value: &str) -> String {
    let has_zone = value.ends_with('Z') || value.ends_with('z') || value.rfind(['+', '-']).is_some_and(|i| i > 10);
    match (has_zone, value.len()) {
        (false, 16) => format!("{value}:00Z"),
        (false, 19) => format!("{value}Z"),
        _ => value.to_owned(),
    }
}

/// A `datetime-local` field's value for a time the form was given.
fn local_field(value: Option<&str>) -> String {
    let Some(value) = value else { return String::new() };
    match OffsetDateTime::parse(&as_utc(value), &Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            t.format(&format).unwrap_or_default()
        }
        Err(_) => value.to_owned(),
    }
}

fn href(path: &str, pairs: &[(String, String)]) -> String {
    match serde_html_form::to_string(pairs) {
        Ok(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    }
}

pub async fn timeline(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(env): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    let org_id = signed_in.caller.org_id;
    let environment = state.environment(org_id, &env).await?;
    let form = TimelineForm::parse(query.as_deref())?;
    let params = form.params(domain::time_util::now())?;
    let items = state.timeline_of(org_id, &environment, params).await?;

    let slug = environment.slug.as_str();
    // A slug is `[a-z0-9-]`: nothing in it needs encoding in a path.
    let path = format!("/ui/environments/{slug}");
    let range = form.range();
    let filters = form.filters();
    let presets: Vec<Value> = PRESETS
        .iter()
        .map(|(value, label, _)| {
            let mut pairs = filters.clone();
            pairs.push(("range".into(), (*value).into()));
            json!({"value": value, "label": label, "href": href(&path, &pairs), "current": (range == *value).to_string()})
        })
        .collect();
    let kinds_checked = form.all("kind");
    let kinds: Vec<Value> = KINDS
        .iter()
        .map(|k| json!({"value": k, "label": super::kind_label(k), "checked": kinds_checked.contains(k)}))
        .collect();
    let next_page_href = items.next_cursor.as_ref().map(|cursor| {
        let mut pairs = filters.clone();
        pairs.push(("range".into(), range.into()));
        pairs.push(("cursor".into(), cursor.clone()));
        href(&path, &pairs)
    });
    let paging = form.get("cursor").is_some();
    let first_page_href = paging.then(|| {
        let mut pairs = filters.clone();
        pairs.push(("range".into(), range.into()));
        href(&path, &pairs)
    });
    // Live updates belong on the newest page of a window that ends now.
    let stream_url = (!paging && range != "custom").then(|| href(&format!("{path}/stream"), &filters));
    let views: Vec<TimelineItemView> = items.items.into_iter().map(TimelineItemView::from).collect();
    let context = with_layout(
        &signed_in,
        json!({
            "environment": {"slug": slug, "name": environment.name},
            "items": views,
            "presets": presets,
            "kinds": kinds,
            "range": range,
            "filtered": !filters.is_empty(),
            "form": {
                "since": local_field(form.get("since")), "until": local_field(form.get("until")),
                "q": form.text("q"), "actor": form.text("actor"), "service": form.text("service"),
                "resource": form.text("resource"), "source": form.text("source"), "label": form.text("label"),
                "include_read_only": form.get("include_read_only") == Some("true"),
            },
            "next_page_href": next_page_href,
            "first_page_href": first_page_href,
            "stream_url": stream_url,
        }),
    );
    Ok(page(StatusCode::OK, "timeline.html", &context))
}

/// The timeline's new items as Server-Sent Events whose data is the row the page shows, so the
/// script only has to put it on top.
pub async fn timeline_stream(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(env): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    let org_id = signed_in.caller.org_id;
    let environment = state.environment(org_id, &env).await?;
    let form = TimelineForm::parse(query.as_deref())?;
    let params = api_params(&form.filters())?;
    let request = TimelineRequest::parse(params, domain::time_util::now()).map_err(app::AppError::from)?;
    let receiver = state.open_stream(org_id, vec![environment.id], request, last_event_id(&headers))?;
    Ok(event_stream(receiver, |item| render_template("item_row.html", &json!({"item": item})).unwrap_or_default()))
}

fn parse_id(id: &str, what: &str) -> Result<Uuid, UiError> {
    Uuid::parse_str(id).map_err(|_| not_found(what))
}

pub async fn item(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let stored = state.event(signed_in.caller.org_id, parse_id(&id, "item")?).await?;
    let original = stored.original.as_ref().and_then(|o| serde_json::to_string_pretty(o).ok());
    let context = with_layout(&signed_in, json!({"item": TimelineItemView::from(stored.item), "original": original}));
    Ok(page(StatusCode::OK, "item.html", &context))
}

pub async fn alert(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let suspects = state.suspects(signed_in.caller.org_id, parse_id(&id, "alert")?, None).await?;
    let listed: Vec<Value> = suspects
        .items
        .into_iter()
        .map(|s| json!({"item": TimelineItemView::from(s.item), "score": format!("{:.2}", s.score), "reasons": s.reasons}))
        .collect();
    let context = with_layout(
        &signed_in,
        json!({"alert": TimelineItemView::from(suspects.alert), "window_minutes": suspects.window_minutes, "suspects": listed}),
    );
    Ok(page(StatusCode::OK, "alert.html", &context))
}

/// How far behind now a checkpoint is, in words an admin reads at a glance.
fn lag(checkpoint: OffsetDateTime, now: OffsetDateTime) -> String {
    let seconds = (now - checkpoint).whole_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[derive(serde::Deserialize)]
struct ConnectionsQuery {
    after: Option<Uuid>,
}

pub async fn connections(
    State(state): State<AppState>,
    signed_in: SignedIn,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    let org_id = signed_in.caller.org_id;
    let query: ConnectionsQuery = serde_html_form::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_query", format!("the query string cannot be read: {e}")))?;
    let request = PageRequest { limit: CONNECTIONS_PAGE, after: query.after };
    let connections = state.store.list_connections(org_id, request).await.map_err(ApiError::from)?;
    let now = domain::time_util::now();
    let mut listed = Vec::new();
    for connection in &connections.items {
        let imports = state.connection_imports(org_id, connection.id).await?;
        let regions: Vec<Value> = imports
            .iter()
            .map(|i| {
                json!({
                    "region": i.job.region, "status": i.status,
                    "checkpoint": i.checkpoint.format(&Rfc3339).unwrap_or_default(),
                    "lag": lag(i.checkpoint, now),
                    "last_success_at": i.job.last_success_at.and_then(|t| t.format(&Rfc3339).ok()),
                    "events_imported": i.job.events_imported, "events_flagged": i.job.events_flagged,
                    "last_error": i.job.last_error,
                })
            })
            .collect();
        let problem = connection
            .last_error
            .as_ref()
            .map(|p| format!("{}: {}", p.code, p.message))
            .or_else(|| connection.discovery_error.clone());
        listed.push(json!({
            "id": connection.id, "name": connection.settings.name, "status": connection.status.as_str(),
            "kind": connection.kind.as_str(), "account_id": connection.account_id,
            "enabled": connection.settings.enabled, "problem": problem, "regions": regions,
        }));
    }
    let more = connections
        .items
        .last()
        .filter(|_| connections.next_cursor.is_some())
        .map(|c| format!("/ui/connections?after={}", c.id));
    let context = with_layout(&signed_in, json!({"connections": listed, "more_href": more}));
    Ok(page(StatusCode::OK, "connections.html", &context))
}
