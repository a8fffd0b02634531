//! The timeline query: one environment's items, newest first, keyset-paged over
//! (occurred_at, id) so that following cursors yields each item once even while items arrive.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::{EventKind, Link, Resource};
use crate::page::{Page, PageError};
use crate::validation::Invalid;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimelineFilters {
    /// Exactly this actor.
    pub actor: Option<String>,
    /// The item's source, or a CloudTrail event's event source (`ec2.amazonaws.com`).
    pub source: Option<String>,
    /// A resource name, or part of one.
    pub resource: Option<String>,
    /// Words in the title, case-insensitive.
    pub text: Option<String>,
    /// The `service` label.
    pub service: Option<String>,
    /// Every `key = value` must be among the labels.
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineQuery {
    /// One or more environments of the organisation; an item in several appears once.
    pub environment_ids: Vec<Uuid>,
    pub filters: TimelineFilters,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    /// Empty: every kind.
    pub kinds: Vec<EventKind>,
    pub include_read_only: bool,
    pub limit: u32,
    /// The position after which this page starts (the last item of the previous page).
    pub after: Option<(OffsetDateTime, Uuid)>,
}

/// An item as the timeline shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineItem {
    pub id: Uuid,
    pub kind: EventKind,
    pub source: String,
    pub occurred_at: OffsetDateTime,
    pub title: String,
    pub actor: Option<String>,
    pub read_only: bool,
    pub environments: Vec<String>,
    pub resources: Vec<Resource>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub links: Vec<Link>,
    pub details: crate::event::Details,
    /// When changetrail stored it (its first arrival, for an item updated since).
    pub ingested_at: OffsetDateTime,
    pub ingested_via: crate::event::IngestPath,
}

/// A timeline request as a client writes it (query parameters), before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct TimelineParams {
    pub since: Option<String>,
    pub until: Option<String>,
    #[serde(default)]
    pub kind: Vec<String>,
    #[serde(default, deserialize_with = "crate::validation::query_value")]
    pub include_read_only: Option<bool>,
    #[serde(default, deserialize_with = "crate::validation::query_value")]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub actor: Option<String>,
    pub source: Option<String>,
    pub resource: Option<String>,
    pub q: Option<String>,
    pub service: Option<String>,
    #[serde(default)]
    pub label: Vec<String>,
}

/// A validated timeline request, for whichever environments it is asked of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRequest {
    pub filters: TimelineFilters,
    /// The window, resolved (defaults applied); a cursor brings the window it was issued for.
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    /// Which ends of the window the client named; a cursor for another window is then refused.
    since_given: bool,
    until_given: bool,
    pub kinds: Vec<EventKind>,
    pub include_read_only: bool,
    pub limit: u32,
    cursor: Option<String>,
}

const MAX_FILTER_CHARS: usize = 256;
/// The most `kind` and `label` parameters one request may repeat.
pub const MAX_KINDS: usize = 10;
pub const MAX_LABELS: usize = 20;

fn parse_time(field: &str, value: Option<&str>, errors: &mut Invalid) -> Option<OffsetDateTime> {
    let value = value?;
    match OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339) {
        Ok(t) => errors.check(crate::validation::instant(field, t)),
        Err(_) => {
            errors.push(field, format!("{value:?} is not an RFC 3339 time like 2026-11-20T14:03:00Z"));
            None
        }
    }
}

fn filter(field: &str, value: Option<String>, errors: &mut Invalid) -> Option<String> {
    let value = value.filter(|v| !v.is_empty())?;
    if value.chars().count() > MAX_FILTER_CHARS || value.contains('\0') {
        errors.push(field, format!("must be at most {MAX_FILTER_CHARS} characters, without NUL"));
        return None;
    }
    Some(value)
}

impl TimelineRequest {
    /// Every problem at once; `since` defaults to 24 hours before `until`, `until` to `now`.
    pub fn parse(params: TimelineParams, now: OffsetDateTime) -> Result<TimelineRequest, Invalid> {
        let mut errors = Invalid::default();
        let until = parse_time("until", params.until.as_deref(), &mut errors);
        let since = parse_time("since", params.since.as_deref(), &mut errors);
        errors.check(crate::validation::at_most("kind", params.kind.len(), MAX_KINDS));
        errors.check(crate::validation::at_most("label", params.label.len(), MAX_LABELS));
        let mut kinds = Vec::new();
        for (i, kind) in params.kind.iter().enumerate().take(MAX_KINDS) {
            match EventKind::parse(kind) {
                Some(k) => kinds.push(k),
                None => errors.push(
                    format!("kind[{i}]"),
                    format!("unknown kind {kind:?}; use cloudtrail, deploy, alert, pull_request or custom"),
                ),
            }
        }
        let limit =
            errors.check(crate::page::parse_limit(params.limit).map_err(|e| Invalid::one("limit", e.to_string())));
        let (since_given, until_given) = (params.since.is_some(), params.until.is_some());
        let mut labels = Vec::new();
        for (i, label) in params.label.iter().enumerate().take(MAX_LABELS) {
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
        let until = until.unwrap_or(now);
        let since = since.unwrap_or(until - time::Duration::hours(24));
        if since > until {
            errors.push("since", "must not be after until");
        }
        errors.into_result()?;
        Ok(TimelineRequest {
            filters,
            since,
            until,
            since_given,
            until_given,
            kinds,
            include_read_only: params.include_read_only.unwrap_or(false),
            limit: limit.unwrap_or(crate::page::DEFAULT_LIMIT),
            cursor: params.cursor.filter(|c| !c.is_empty()),
        })
    }

    /// The store's query for these environments: one item more than the page, to know whether
    /// another follows. A cursor issued for other environments is refused.
    pub fn query(&self, environment_ids: Vec<Uuid>) -> Result<TimelineQuery, PageError> {
        let (mut since, mut until, mut after) = (self.since, self.until, None);
        if let Some(cursor) = self.cursor.as_deref() {
            let position = decode_cursor(&environment_ids, cursor).ok_or(PageError::Cursor)?;
            // The window stays the one the first page resolved, so a slow reader's default
            // "last 24 hours" does not move under it and drop the oldest items.
            let differs =
                |a: OffsetDateTime, b: OffsetDateTime| crate::time_util::to_micros(a) != crate::time_util::to_micros(b);
            if (self.since_given && differs(position.since, since))
                || (self.until_given && differs(position.until, until))
            {
                return Err(PageError::Cursor);
            }
            (since, until, after) = (position.since, position.until, Some((position.occurred_at, position.id)));
        }
        Ok(TimelineQuery {
            environment_ids,
            filters: self.filters.clone(),
            since,
            until,
            kinds: self.kinds.clone(),
            include_read_only: self.include_read_only,
            limit: self.limit + 1,
            after,
        })
    }
}

impl TimelineQuery {
    /// The page the overfetched `items` make, with the cursor of the next one.
    pub fn page(&self, mut items: Vec<TimelineItem>) -> Page<TimelineItem> {
        let limit = self.limit.saturating_sub(1) as usize;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| {
                let position =
                    CursorPosition { since: self.since, until: self.until, occurred_at: last.occurred_at, id: last.id };
                encode_cursor(&self.environment_ids, &position)
            })
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

const PREFIX: &str = "tl.";

/// What a cursor is bound to: the set of environments it pages through, as a short digest.
fn scope(environment_ids: &[Uuid]) -> String {
    use sha2::{Digest, Sha256};
    let mut ids = environment_ids.to_vec();
    ids.sort();
    ids.dedup();
    let mut hasher = Sha256::new();
    for id in ids {
        hasher.update(id.as_bytes());
    }
    hasher.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Where a cursor continues: the window of the first page, and the last item shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorPosition {
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub occurred_at: OffsetDateTime,
    pub id: Uuid,
}

/// A cursor names its environments: one from another timeline (or organisation, whose
/// environments are others) is refused rather than silently applied.
pub fn encode_cursor(environment_ids: &[Uuid], position: &CursorPosition) -> String {
    use crate::time_util::to_micros;
    let CursorPosition { since, until, occurred_at, id } = *position;
    let (since, until, at) = (to_micros(since), to_micros(until), to_micros(occurred_at));
    URL_SAFE_NO_PAD.encode(format!("{PREFIX}{}.{since}.{until}.{at}.{id}", scope(environment_ids)))
}

pub fn decode_cursor(environment_ids: &[Uuid], cursor: &str) -> Option<CursorPosition> {
    use crate::time_util::from_micros;
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?.strip_prefix(PREFIX)?;
    let mut parts = text.split('.');
    let bound_to = parts.next()?;
    let mut micros = || parts.next()?.parse::<i64>().ok();
    let (since, until, at) = (micros()?, micros()?, micros()?);
    let id: Uuid = parts.next()?.parse().ok()?;
    (parts.next().is_none() && bound_to == scope(environment_ids)).then(|| CursorPosition {
        since: from_micros(since),
        until: from_micros(until),
        occurred_at: from_micros(at),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_bound_to_their_environment() {
        let (env, other) = (Uuid::now_v7(), Uuid::now_v7());
        let at = crate::time_util::now();
        let id = Uuid::now_v7();
        let position = CursorPosition { since: at - time::Duration::days(1), until: at, occurred_at: at, id };
        let cursor = encode_cursor(&[env], &position);
        assert_eq!(decode_cursor(&[env], &cursor), Some(position));
        assert_eq!(decode_cursor(&[other], &cursor), None);
        assert_eq!(decode_cursor(&[env, other], &cursor), None);
        let both = encode_cursor(&[env, other], &position);
        assert_eq!(decode_cursor(&[other, env], &both), Some(position), "the order of environments does not matter");
        assert_eq!(decode_cursor(&[env], "garbage"), None);
        let tampered = URL_SAFE_NO_PAD.encode(format!("tl.{}.1.2.notanumber.{id}", scope(&[env])));
        assert_eq!(decode_cursor(&[env], &tampered), None);
    }
}

/// Where a live stream of new items is: the newest item it has sent, by when changetrail stored
/// it. Sent as each event's `id`, so that `Last-Event-ID` resumes right after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamPosition {
    /// `ingested_at`, in microseconds.
    pub stored_at: i64,
    pub id: Uuid,
}

impl StreamPosition {
    /// Just before anything stored from `at` on.
    pub fn at(at: OffsetDateTime) -> StreamPosition {
        StreamPosition { stored_at: crate::time_util::to_micros(at), id: Uuid::nil() }
    }

    pub fn of(item: &TimelineItem) -> StreamPosition {
        StreamPosition { stored_at: crate::time_util::to_micros(item.ingested_at), id: item.id }
    }

    pub fn encode(&self) -> String {
        format!("{}.{}", self.stored_at, self.id.simple())
    }

    /// A `Last-Event-ID` this server sent; anything else is `None`.
    pub fn decode(text: &str) -> Option<StreamPosition> {
        let (at, id) = text.trim().split_once('.')?;
        Some(StreamPosition { stored_at: at.parse().ok()?, id: Uuid::try_parse(id).ok()? })
    }
}

/// The store's query for a live stream: the items of these environments that pass the
/// timeline's filters, stored after `after`, oldest stored first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamQuery {
    pub environment_ids: Vec<Uuid>,
    pub filters: TimelineFilters,
    pub kinds: Vec<EventKind>,
    pub include_read_only: bool,
    /// Items after this position (by `ingested_at`, then id).
    pub after: StreamPosition,
    pub limit: u32,
}

impl TimelineRequest {
    /// The stream's query with this request's filters (its window and cursor do not apply: a
    /// stream follows what is stored from now on, whatever the item's own time).
    pub fn stream(&self, environment_ids: Vec<Uuid>, after: StreamPosition, limit: u32) -> StreamQuery {
        StreamQuery {
            environment_ids,
            filters: self.filters.clone(),
            kinds: self.kinds.clone(),
            include_read_only: self.include_read_only,
            after,
            limit,
        }
    }
}
