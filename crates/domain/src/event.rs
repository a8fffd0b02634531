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

/// How an item reached changetrail: what its freshness (stored at − occurred at) is a figure of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestPath {
    /// CloudTrail's LookupEvents, walked by the importer.
    Poll,
    /// CloudTrail through an EventBridge API destination.
    Push,
    /// Posted to the API (`/v1/deploys`, `/v1/alerts`, `/v1/changes`).
    Api,
    /// A provider's webhook (GitHub, PagerDuty).
    Webhook,
    /// `PutAuditEvents` into a CloudTrail Lake-compatible channel.
    Channel,
    /// Made by a rule that matched another item (its `alert` item).
    Rule,
}

impl IngestPath {
    pub fn as_str(self) -> &'static str {
        match self {
            IngestPath::Poll => "poll",
            IngestPath::Push => "push",
            IngestPath::Api => "api",
            IngestPath::Webhook => "webhook",
            IngestPath::Channel => "channel",
            IngestPath::Rule => "rule",
        }
    }

    /// A stored value; one this version does not know reads as `api`.
    pub fn from_stored(s: &str) -> IngestPath {
        match s {
            "poll" => IngestPath::Poll,
            "push" => IngestPath::Push,
            "webhook" => IngestPath::Webhook,
            "channel" => IngestPath::Channel,
            "rule" => IngestPath::Rule,
            _ => IngestPath::Api,
        }
    }
}

/// A thing an item is about. For CloudTrail, `type` is the CloudFormation type
/// (`AWS::EC2::SecurityGroup`), `name` its id or name, `arn` its ARN when the record gives it or
/// it can be derived, and `primary` marks the one resource the change is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub primary: bool,
}

impl Resource {
    /// A resource known only by its kind and name (a posted deploy's service).
    pub fn named(resource_type: &str, name: impl Into<String>) -> Resource {
        Resource { resource_type: Some(resource_type.to_owned()), name: name.into(), arn: None, primary: false }
    }
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
    pub details: Details,
    /// The record as the source gave it (for CloudTrail: the parsed `CloudTrailEvent`).
    pub original: Option<serde_json::Value>,
    /// The environments it belongs to.
    pub environment_ids: Vec<Uuid>,
    /// How it arrived; an update keeps the first arrival's.
    pub via: IngestPath,
}

/// What an item carries beyond the common fields: typed for CloudTrail, whose fields linking,
/// filters and suspects read; free-form JSON for posted items.
#[derive(Debug, Clone, PartialEq)]
pub enum Details {
    CloudTrail(Box<crate::cloudtrail::CloudTrailDetails>),
    Other(serde_json::Value),
}

impl Details {
    pub fn cloudtrail(&self) -> Option<&crate::cloudtrail::CloudTrailDetails> {
        match self {
            Details::CloudTrail(d) => Some(d),
            Details::Other(_) => None,
        }
    }

    /// A record that could not be read in full was stored as it came.
    pub fn flagged(&self) -> bool {
        self.cloudtrail().is_some_and(|d| d.flagged)
    }

    /// The AWS service endpoint of a CloudTrail event (`ec2.amazonaws.com`).
    pub fn event_source(&self) -> Option<&str> {
        self.cloudtrail().map(|d| d.event_source.as_str())
    }

    /// A text field of a posted item's details (`status` of a deploy).
    pub fn text(&self, key: &str) -> Option<&str> {
        match self {
            Details::Other(v) => v.get(key).and_then(serde_json::Value::as_str),
            Details::CloudTrail(_) => None,
        }
    }

    /// The details as stored and as the API shows them.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Details::CloudTrail(d) => serde_json::to_value(d).unwrap_or_default(),
            Details::Other(v) => v.clone(),
        }
    }

    /// Reads stored details back from their JSON text: CloudTrail details straight into their
    /// type (a page reads a hundred of them, and a `Value` tree first would cost as much again);
    /// details that no longer parse as their type are kept as JSON rather than lost.
    pub fn from_stored(kind: EventKind, json: &str) -> Details {
        if kind == EventKind::Cloudtrail {
            if let Ok(d) = serde_json::from_str::<crate::cloudtrail::CloudTrailDetails>(json) {
                return Details::CloudTrail(Box::new(d));
            }
        }
        Details::Other(serde_json::from_str(json).unwrap_or_default())
    }
}

/// One stored item in full: as the timeline shows it, and the record as its source gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub item: crate::timeline::TimelineItem,
    pub original: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_details_are_read_into_their_type_or_kept_as_they_are() {
        let details = crate::cloudtrail::CloudTrailDetails {
            event_name: "DeleteBucket".into(),
            event_source: "s3.amazonaws.com".into(),
            summary: Some("deleted bucket prod-logs".into()),
            ..Default::default()
        };
        let stored = serde_json::to_string(&details).unwrap();
        assert_eq!(Details::from_stored(EventKind::Cloudtrail, &stored), Details::CloudTrail(Box::new(details)));
        // CloudTrail details that no longer fit the type, and any other kind's, come back as stored.
        let unfit = r#"{"event_name": 7, "kept": ["as", "stored"]}"#;
        let unfit_value: serde_json::Value = serde_json::from_str(unfit).unwrap();
        assert_eq!(Details::from_stored(EventKind::Cloudtrail, unfit), Details::Other(unfit_value.clone()));
        assert_eq!(Details::from_stored(EventKind::Deploy, unfit), Details::Other(unfit_value));
    }
}
