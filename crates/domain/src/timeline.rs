//! The timeline query: one environment's items, newest first, keyset-paged over
//! (occurred_at, id) so that following cursors yields each item once even while items arrive.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::{EventKind, Link, Resource};

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
    pub details: serde_json::Value,
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

/// A cursor names its environments: one from another timeline (or organisation, whose
/// environments are others) is refused rather than silently applied.
pub fn encode_cursor(environment_ids: &[Uuid], occurred_at: OffsetDateTime, id: Uuid) -> String {
    let micros = crate::time_util::to_micros(occurred_at);
    URL_SAFE_NO_PAD.encode(format!("{PREFIX}{}.{micros}.{id}", scope(environment_ids)))
}

pub fn decode_cursor(environment_ids: &[Uuid], cursor: &str) -> Option<(OffsetDateTime, Uuid)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?.strip_prefix(PREFIX)?;
    let mut parts = text.split('.');
    let bound_to = parts.next()?;
    let micros: i64 = parts.next()?.parse().ok()?;
    let id: Uuid = parts.next()?.parse().ok()?;
    (parts.next().is_none() && bound_to == scope(environment_ids)).then(|| (crate::time_util::from_micros(micros), id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_bound_to_their_environment() {
        let (env, other) = (Uuid::now_v7(), Uuid::now_v7());
        let at = crate::time_util::now();
        let id = Uuid::now_v7();
        let cursor = encode_cursor(&[env], at, id);
        assert_eq!(decode_cursor(&[env], &cursor), Some((at, id)));
        assert_eq!(decode_cursor(&[other], &cursor), None);
        assert_eq!(decode_cursor(&[env, other], &cursor), None);
        let both = encode_cursor(&[env, other], at, id);
        assert_eq!(decode_cursor(&[other, env], &both), Some((at, id)), "the order of environments does not matter");
        assert_eq!(decode_cursor(&[env], "garbage"), None);
        let tampered = URL_SAFE_NO_PAD.encode(format!("tl.{}.notanumber.{id}", scope(&[env])));
        assert_eq!(decode_cursor(&[env], &tampered), None);
    }
}
