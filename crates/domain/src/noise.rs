//! Which CloudTrail events a connection keeps: an admin's include and exclude globs, and a
//! default exclusion of pure session noise. The same filter applies to imports and pushes;
//! what it drops is counted on the connection, and a re-import brings it back once the filter
//! lets it through.

use serde::{Deserialize, Serialize};

use crate::rule::glob_match;
use crate::validation::Invalid;

/// Events that record a session or an agent's heartbeat, not a change anyone made, excluded
/// unless `exclude_session_noise` is off or `include_event_names` names them. In the real
/// records of `../shared/data/cloudtrail/` they are 59 of the 574 write records (and 5 of the
/// records that lack `readOnly`), made every few minutes by the SSM agent of every managed
/// instance, by every role session and by services after a change that is itself kept:
/// - STS sessions (`AssumeRole*`, `GetSessionToken`, `GetFederationToken`): who started a
///   session is read from the changes the session makes, which name the role and its person.
/// - The SSM agent's heartbeats (`UpdateInstanceInformation`, `UpdateInstanceAssociationStatus`,
///   `PutInventory`, `PutComplianceItems`), made by the instance itself.
/// - The console's MFA step (`CheckMfa`): the `ConsoleLogin` it belongs to is kept, and says
///   whether MFA was used.
/// - Secrets Manager's own bookkeeping after a deletion (`StartSecretVersionDelete`,
///   `EndSecretVersionDelete`): the `DeleteSecret` that caused it is kept.
/// - CloudWatch Logs streams made by agents and Lambda (`CreateLogStream`).
pub const SESSION_NOISE: &[(&str, &str)] = &[
    ("sts.amazonaws.com", "AssumeRole"),
    ("sts.amazonaws.com", "AssumeRoleWithWebIdentity"),
    ("sts.amazonaws.com", "AssumeRoleWithSAML"),
    ("sts.amazonaws.com", "GetSessionToken"),
    ("sts.amazonaws.com", "GetFederationToken"),
    ("ssm.amazonaws.com", "UpdateInstanceInformation"),
    ("ssm.amazonaws.com", "UpdateInstanceAssociationStatus"),
    ("ssm.amazonaws.com", "PutInventory"),
    ("ssm.amazonaws.com", "PutComplianceItems"),
    ("signin.amazonaws.com", "CheckMfa"),
    ("secretsmanager.amazonaws.com", "StartSecretVersionDelete"),
    ("secretsmanager.amazonaws.com", "EndSecretVersionDelete"),
    ("logs.amazonaws.com", "CreateLogStream"),
];

const MAX_PATTERNS: usize = 100;
const MAX_PATTERN_CHARS: usize = 256;

fn yes() -> bool {
    true
}

/// A connection's event filter. Globs use `*` for any run of characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// When given, only events whose name matches one are kept (and these are kept even when
    /// they are session noise).
    #[serde(default)]
    pub include_event_names: Vec<String>,
    #[serde(default)]
    pub exclude_event_names: Vec<String>,
    /// `ssm.amazonaws.com`, `*.amazonaws.com`.
    #[serde(default)]
    pub exclude_event_sources: Vec<String>,
    /// Over the item's actor (a user, a role session's person, a service).
    #[serde(default)]
    pub exclude_actors: Vec<String>,
    /// Drop [`SESSION_NOISE`] (on unless turned off).
    #[serde(default = "yes")]
    pub exclude_session_noise: bool,
}

impl Default for EventFilter {
    fn default() -> Self {
        EventFilter {
            include_event_names: Vec::new(),
            exclude_event_names: Vec::new(),
            exclude_event_sources: Vec::new(),
            exclude_actors: Vec::new(),
            exclude_session_noise: true,
        }
    }
}

/// Why an event was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    NotIncluded,
    EventName,
    EventSource,
    Actor,
    SessionNoise,
}

impl EventFilter {
    /// Reads and checks a filter as an admin wrote it: every list at most 100 patterns of at
    /// most 256 characters, none empty.
    pub fn parse(value: serde_json::Value) -> Result<EventFilter, Invalid> {
        let filter: EventFilter =
            serde_json::from_value(value).map_err(|e| Invalid::one("event_filter", e.to_string()))?;
        let mut errors = Invalid::default();
        for (field, patterns) in [
            ("include_event_names", &filter.include_event_names),
            ("exclude_event_names", &filter.exclude_event_names),
            ("exclude_event_sources", &filter.exclude_event_sources),
            ("exclude_actors", &filter.exclude_actors),
        ] {
            if patterns.len() > MAX_PATTERNS {
                errors.push(format!("event_filter.{field}"), format!("at most {MAX_PATTERNS} patterns"));
            }
            for (i, p) in patterns.iter().enumerate() {
                if p.trim().is_empty() || p.chars().count() > MAX_PATTERN_CHARS {
                    errors.push(
                        format!("event_filter.{field}[{i}]"),
                        format!("must be a pattern of 1 to {MAX_PATTERN_CHARS} characters"),
                    );
                }
            }
        }
        errors.into_result().map(|()| filter)
    }

    /// `None` when the event is kept; otherwise why not.
    pub fn excludes(&self, event_name: &str, event_source: &str, actor: Option<&str>) -> Option<Excluded> {
        let any = |patterns: &[String], text: &str| patterns.iter().any(|p| glob_match(p, text));
        let included = any(&self.include_event_names, event_name);
        if !self.include_event_names.is_empty() && !included {
            return Some(Excluded::NotIncluded);
        }
        if any(&self.exclude_event_names, event_name) {
            return Some(Excluded::EventName);
        }
        if any(&self.exclude_event_sources, event_source) {
            return Some(Excluded::EventSource);
        }
        if actor.is_some_and(|a| any(&self.exclude_actors, a)) {
            return Some(Excluded::Actor);
        }
        let noise = SESSION_NOISE.iter().any(|(s, n)| *s == event_source && *n == event_name);
        if self.exclude_session_noise && noise && !included {
            return Some(Excluded::SessionNoise);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn noise_is_dropped_by_default_and_globs_apply() {
        let default = EventFilter::default();
        assert_eq!(default.excludes("AssumeRole", "sts.amazonaws.com", Some("ci")), Some(Excluded::SessionNoise));
        assert_eq!(default.excludes("DeleteBucket", "s3.amazonaws.com", Some("ci")), None);
        let off = EventFilter::parse(json!({"exclude_session_noise": false})).unwrap();
        assert_eq!(off.excludes("AssumeRole", "sts.amazonaws.com", None), None);

        let filter = EventFilter::parse(json!({
            "exclude_event_names": ["Put*Tagging"], "exclude_event_sources": ["ssm.*"], "exclude_actors": ["terraform-*"]
        }))
        .unwrap();
        assert_eq!(filter.excludes("PutBucketTagging", "s3.amazonaws.com", None), Some(Excluded::EventName));
        assert_eq!(filter.excludes("PutParameter", "ssm.amazonaws.com", None), Some(Excluded::EventSource));
        assert_eq!(filter.excludes("DeleteBucket", "s3.amazonaws.com", Some("terraform-prod")), Some(Excluded::Actor));
        assert_eq!(filter.excludes("DeleteBucket", "s3.amazonaws.com", Some("alice")), None);

        let only = EventFilter::parse(json!({"include_event_names": ["AssumeRole", "Delete*"]})).unwrap();
        assert_eq!(
            only.excludes("AssumeRole", "sts.amazonaws.com", None),
            None,
            "an explicit include beats the default"
        );
        assert_eq!(only.excludes("CreateBucket", "s3.amazonaws.com", None), Some(Excluded::NotIncluded));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let e =
            EventFilter::parse(json!({"exclude_actors": [""], "include_event_names": ["x".repeat(300)]})).unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["event_filter.include_event_names[0]", "event_filter.exclude_actors[0]"]);
        assert!(EventFilter::parse(json!({"exclude_everything": true})).is_err());
        assert!(EventFilter::parse(json!({"exclude_actors": "alice"})).is_err());
    }
}
