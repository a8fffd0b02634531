//! Timeline items as they are stored, whatever their source.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Cloudtrail,
    Deploy,
    Alert,
    PullRequest,
    Custom,
}

impl EventKind {
    pub const ALL: [EventKind; 5] =
        [EventKind::Cloudtrail, EventKind::Deploy, EventKind::Alert, EventKind::PullRequest, EventKind::Custom];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Cloudtrail => "cloudtrail",
            EventKind::Deploy => "deploy",
            EventKind::Alert => "alert",
            EventKind::PullRequest => "pull_request",
            EventKind::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
    pub text: String,
}

/// A timeline item ready to store. `source` and `source_key` identify it at its source: storing
/// the same pair twice stores it once.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub source: String,
    pub source_key: String,
    pub connection_id: Option<Uuid>,
    pub occurred_at: OffsetDateTime,
    pub title: String,
    pub actor: Option<String>,
    pub read_only: bool,
    pub resources: Vec<Resource>,
    pub labels: BTreeMap<String, String>,
    pub links: Vec<Link>,
    pub details: serde_json::Value,
    /// The record as the source gave it (for CloudTrail: the parsed `CloudTrailEvent`).
    pub original: Option<serde_json::Value>,
    /// The environments it belongs to.
    pub environment_ids: Vec<Uuid>,
}
