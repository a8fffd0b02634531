//! The timeline query: one environment's items, newest first, keyset-paged over
//! (occurred_at, id) so that following cursors yields each item once even while items arrive.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::{EventKind, Link, Resource};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineQuery {
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
    pub details: serde_json::Value,
}

const PREFIX: &str = "tl.";

/// A cursor names its environment: one from another environment (or organisation, whose
/// environments are others) is refused rather than silently applied.
pub fn encode_cursor(environment_id: Uuid, occurred_at: OffsetDateTime, id: Uuid) -> String {
    let micros = crate::time_util::to_micros(occurred_at);
    URL_SAFE_NO_PAD.encode(format!("{PREFIX}{environment_id}.{micros}.{id}"))
}

pub fn decode_cursor(environment_id: Uuid, cursor: &str) -> Option<(OffsetDateTime, Uuid)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?.strip_prefix(PREFIX)?;
    let mut parts = text.split('.');
    let env: Uuid = parts.next()?.parse().ok()?;
    let micros: i64 = parts.next()?.parse().ok()?;
    let id: Uuid = parts.next()?.parse().ok()?;
    (parts.next().is_none() && env == environment_id).then(|| (crate::time_util::from_micros(micros), id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_bound_to_their_environment() {
        let (env, other) = (Uuid::now_v7(), Uuid::now_v7());
        let at = crate::time_util::now();
        let id = Uuid::now_v7();
        let cursor = encode_cursor(env, at, id);
        assert_eq!(decode_cursor(env, &cursor), Some((at, id)));
        assert_eq!(decode_cursor(other, &cursor), None);
        assert_eq!(decode_cursor(env, "garbage"), None);
        let tampered = URL_SAFE_NO_PAD.encode(format!("tl.{env}.notanumber.{id}"));
        assert_eq!(decode_cursor(env, &tampered), None);
    }
}
