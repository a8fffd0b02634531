//! CloudTrail records, normalised into timeline items a person reads at a glance. A record is
//! the JSON that LookupEvents' `CloudTrailEvent` and EventBridge's `detail` both carry; a record
//! that cannot be read is still kept, as it came, with its problems listed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::{Details, EventKind, IngestPath, NewEvent, Resource};

pub mod eventbridge;
pub mod resource;
pub mod summary;
mod title;
pub use summary::Change;
pub use title::{summary_title, title};

pub const SOURCE: &str = "aws.cloudtrail";

/// One event of a `LookupEvents` answer, as the API shapes it (independent of any SDK type):
/// the record, and the fields LookupEvents reports beside it, used where the record lacks them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LookupEvent {
    pub event_id: Option<String>,
    pub event_name: Option<String>,
    /// A string in the API: "true" or "false".
    pub read_only: Option<String>,
    pub event_time: Option<OffsetDateTime>,
    pub event_source: Option<String>,
    pub username: Option<String>,
    pub resources: Vec<Resource>,
    /// The whole record as a JSON string.
    pub cloudtrail_event: Option<String>,
}

/// What changetrail keeps of a CloudTrail record beside the common fields of an item: what
/// linking, filters and suspects read, typed. Stored and shown as the item's `details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloudTrailDetails {
    pub event_id: Option<String>,
    pub event_name: String,
    /// `ec2.amazonaws.com`.
    pub event_source: String,
    /// The record's region (`awsRegion`), else the region it was imported from.
    pub region: String,
    pub account_id: String,
    pub read_only: bool,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub identity_type: Option<String>,
    /// The role behind an assumed-role session.
    pub role: Option<String>,
    /// The record could not be read in full; `problems` says what was wrong.
    pub flagged: bool,
    pub problems: Vec<String>,
    /// What the change did, for the events `summary` knows: "opened tcp/22 to 0.0.0.0/0 on
    /// security group sg-0abc".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The fields the change set, where the record says.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

/// Where a record was found: the connection, the account and region it was read from, and the
/// time to place it at when it has none (the end of the window it was found in).
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    pub connection_id: Uuid,
    pub account_id: &'a str,
    pub region: &'a str,
    pub fallback_time: OffsetDateTime,
}

/// A normalised event, and what was wrong with its record (empty when nothing was).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub event: NewEvent,
    pub problems: Vec<String>,
}

fn text<'a>(record: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(record, |v, key| v.get(key))?.as_str().filter(|s| !s.is_empty())
}

/// Who did it, preferring the person behind an assumed role where the record names one.
pub fn actor(record: &Value, username: Option<&str>) -> Option<String> {
    let identity = record.get("userIdentity");
    let kind = identity.and_then(|i| i.get("type")).and_then(Value::as_str);
    let found = match kind {
        Some("AssumedRole") => text(record, &["userIdentity", "sessionContext", "sourceIdentity"])
            .or_else(|| text(record, &["userIdentity", "onBehalfOf", "userId"]))
            .or_else(|| text(record, &["userIdentity", "arn"]).and_then(|arn| arn.rsplit('/').next()))
            .or_else(|| text(record, &["userIdentity", "principalId"]).and_then(|p| p.split(':').nth(1))),
        Some("IAMUser") => text(record, &["userIdentity", "userName"]),
        Some("Root") => Some("root"),
        Some("AWSService") => text(record, &["userIdentity", "invokedBy"]).or(text(record, &["sourceIPAddress"])),
        Some("IdentityCenterUser") => text(record, &["userIdentity", "onBehalfOf", "userId"]),
        _ => text(record, &["userIdentity", "userName"]).or(text(record, &["userIdentity", "principalId"])),
    };
    found.or(username).map(str::to_owned)
}

fn record_time(record: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text(record, &["eventTime"])?, &Rfc3339).ok()
}

/// Resources named in `requestParameters` when the event lists none: the values of keys that
/// name things (`groupId`, `bucketName`, `roleArn`, …).
pub(crate) fn resources_from_request(record: &Value) -> Vec<Resource> {
    let Some(params) = record.get("requestParameters").and_then(Value::as_object) else { return Vec::new() };
    params
        .iter()
        .filter(|(k, v)| v.is_string() && (k.ends_with("Id") || k.ends_with("Name") || k.ends_with("Arn")))
        .filter_map(|(k, v)| Some(Resource::named(k, v.as_str()?)))
        .take(5)
        .collect()
}

/// The key that identifies an event at its source: its EventId, or (where a record has none)
/// `{region}:{eventName}:{eventTime}:{username}`, as Brinqa does.
fn source_key(
    event_id: Option<&str>,
    event_name: &str,
    username: Option<&str>,
    region: &str,
    at: OffsetDateTime,
) -> String {
    match event_id.filter(|id| !id.is_empty()) {
        Some(id) => id.to_owned(),
        None => format!("{region}:{event_name}:{}:{}", at.format(&Rfc3339).unwrap_or_default(), username.unwrap_or("")),
    }
}

/// Normalises one CloudTrail record (an object; anything else is flagged).
pub fn normalize(record: &Value, ctx: &RecordContext<'_>) -> Normalized {
    let mut problems = Vec::new();
    if !record.is_object() {
        problems.push("the record is JSON but not an object".to_owned());
    }
    // The record's own `resources` are what LookupEvents reports as `Resources` beside it, so a
    // pushed record and the same record polled name the same resources.
    let hints = LookupEvent { resources: resources_of_record(record), ..LookupEvent::default() };
    let mut normalized = normalize_parts(record.is_object().then_some(record), &hints, problems, ctx);
    normalized.event.original = Some(record.clone());
    normalized
}

/// A record's `resources: [{"ARN", "type", "accountId"}]`.
fn resources_of_record(record: &Value) -> Vec<Resource> {
    let Some(listed) = record.get("resources").and_then(Value::as_array) else { return Vec::new() };
    listed
        .iter()
        .filter_map(|r| {
            let name = r.get("ARN").or_else(|| r.get("arn")).and_then(Value::as_str).filter(|n| !n.is_empty())?;
            Some(Resource {
                resource_type: r.get("type").and_then(Value::as_str).map(str::to_owned),
                name: name.to_owned(),
                arn: None,
                primary: false,
            })
        })
        .collect()
}

/// Normalises one event of a LookupEvents answer: its record, with LookupEvents' own fields
/// where the record lacks them.
pub fn normalize_lookup(event: &LookupEvent, ctx: &RecordContext<'_>) -> Normalized {
    let mut problems = Vec::new();
    let record = match event.cloudtrail_event.as_deref() {
        Some(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(record) if record.is_object() => Some(record),
            Ok(_) => {
                problems.push("CloudTrailEvent is JSON but not an object".to_owned());
                None
            }
            Err(e) => {
                problems.push(format!("CloudTrailEvent is not valid JSON: {e}"));
                None
            }
        },
        None => {
            problems.push("the event has no CloudTrailEvent record".to_owned());
            None
        }
    };
    let mut normalized = normalize_parts(record.as_ref(), event, problems, ctx);
    // The parsed record itself becomes the original, once read: no copy of its tree.
    normalized.event.original = match (record, event.cloudtrail_event.as_deref()) {
        (Some(record), _) => Some(record),
        (None, Some(raw)) => Some(json!({ "unparsed": raw })),
        (None, None) => None,
    };
    normalized
}

/// The item a record makes, without its original (the callers own the record, or a copy).
fn normalize_parts(
    record: Option<&Value>,
    hints: &LookupEvent,
    mut problems: Vec<String>,
    ctx: &RecordContext<'_>,
) -> Normalized {
    let empty = json!({});
    let rec = record.unwrap_or(&empty);
    let occurred_at = match hints.event_time.or_else(|| record_time(rec)) {
        Some(t) => t,
        None => {
            problems.push("no event time: placed at the end of the window it was found in".to_owned());
            ctx.fallback_time
        }
    };
    let event_name = hints.event_name.as_deref().or(text(rec, &["eventName"])).unwrap_or_else(|| {
        problems.push("no event name".to_owned());
        "UnknownEvent"
    });
    let event_source = hints.event_source.as_deref().or(text(rec, &["eventSource"])).unwrap_or_else(|| {
        problems.push("no event source".to_owned());
        "unknown"
    });
    let read_only = match hints.read_only.as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => rec.get("readOnly").and_then(Value::as_bool).unwrap_or_else(|| {
            problems.push("no readOnly flag: kept as a change".to_owned());
            false
        }),
    };
    let event_id = hints.event_id.as_deref().or(text(rec, &["eventID"]));
    if event_id.is_none_or(str::is_empty) {
        problems.push("no EventId: de-duplicated by region, name, time and user".to_owned());
    }
    let actor = actor(rec, hints.username.as_deref());
    let account_id = text(rec, &["recipientAccountId"]).unwrap_or(ctx.account_id);
    let region = text(rec, &["awsRegion"]).unwrap_or(ctx.region);
    let service = event_source.strip_suffix(".amazonaws.com").unwrap_or(event_source);
    let place = resource::Place { service, region, account: account_id };
    let resources = resource::resources_of(rec, event_name, &place, &hints.resources);
    let primary = resources.iter().find(|r| r.primary);
    let error_code = text(rec, &["errorCode"]);
    // A failed call changed nothing, so it has no summary: its title says what was tried.
    let summary = if error_code.is_none() { summary::summarize(service, event_name, rec, primary) } else { None };
    let title = match &summary {
        Some(s) => summary_title(actor.as_deref(), &s.text),
        None => title(actor.as_deref(), event_name, event_source, primary.map(|r| r.name.as_str()), error_code),
    };
    let (summary, changes) = summary.map_or((None, Vec::new()), |s| (Some(s.text), s.changes));
    let details = CloudTrailDetails {
        event_id: event_id.map(str::to_owned),
        event_name: event_name.to_owned(),
        event_source: event_source.to_owned(),
        region: region.to_owned(),
        account_id: account_id.to_owned(),
        read_only,
        error_code: error_code.map(str::to_owned),
        error_message: text(rec, &["errorMessage"]).map(str::to_owned),
        source_ip: text(rec, &["sourceIPAddress"]).map(str::to_owned),
        user_agent: text(rec, &["userAgent"]).map(str::to_owned),
        identity_type: text(rec, &["userIdentity", "type"]).map(str::to_owned),
        role: text(rec, &["userIdentity", "sessionContext", "sessionIssuer", "userName"]).map(str::to_owned),
        flagged: !problems.is_empty(),
        problems: problems.clone(),
        summary,
        changes,
    };
    let mut labels = BTreeMap::new();
    labels.insert("aws.region".to_owned(), ctx.region.to_owned());
    labels.insert("aws.account".to_owned(), account_id.to_owned());
    labels.insert("aws.service".to_owned(), service.to_owned());
    let source_key = source_key(event_id, event_name, hints.username.as_deref(), ctx.region, occurred_at);
    Normalized {
        event: NewEvent {
            kind: EventKind::Cloudtrail,
            source: SOURCE.to_owned(),
            source_key,
            connection_id: Some(ctx.connection_id),
            occurred_at,
            title,
            actor,
            read_only,
            resources,
            labels,
            links: Vec::new(),
            details: Details::CloudTrail(Box::new(details)),
            original: None,
            environment_ids: Vec::new(),
            via: IngestPath::Poll,
        },
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(region: &str, fallback_time: OffsetDateTime) -> RecordContext<'_> {
        RecordContext { connection_id: Uuid::nil(), account_id: "123456789012", region, fallback_time }
    }

    fn lookup(record: Value) -> LookupEvent {
        LookupEvent {
            event_id: record.get("eventID").and_then(Value::as_str).map(str::to_owned),
            event_name: record.get("eventName").and_then(Value::as_str).map(str::to_owned),
            cloudtrail_event: Some(record.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn the_person_behind_an_assumed_role() {
        let record = json!({
            "eventID": "e1", "eventName": "TerminateInstances", "eventSource": "ec2.amazonaws.com",
            "eventTime": "2023-07-10T11:45:12Z", "readOnly": false, "awsRegion": "us-east-1",
            "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/AWSReservedSSO_Admin/alice@example.com",
                             "sessionContext": {"sessionIssuer": {"userName": "AWSReservedSSO_Admin"}}},
            "requestParameters": {"instancesSet": {"items": [{"instanceId": "i-1"}]}}
        });
        let n = normalize_lookup(&lookup(record.clone()), &ctx("us-east-1", OffsetDateTime::UNIX_EPOCH));
        assert!(n.problems.is_empty(), "{:?}", n.problems);
        assert_eq!(n.event.actor.as_deref(), Some("alice@example.com"));
        assert_eq!(n.event.title, "alice@example.com terminated instances i-1 (ec2)");
        let details = n.event.details.cloudtrail().unwrap();
        assert_eq!(details.role.as_deref(), Some("AWSReservedSSO_Admin"));
        assert_eq!(details.region, "us-east-1");
        let pushed = normalize(&record, &ctx("us-east-1", OffsetDateTime::UNIX_EPOCH));
        assert_eq!(pushed.event, n.event, "the record alone, as EventBridge brings it, normalises the same");
        assert_eq!(n.event.occurred_at, OffsetDateTime::parse("2023-07-10T11:45:12Z", &Rfc3339).unwrap());
        assert_eq!(n.event.source_key, "e1");
        assert!(!n.event.read_only);
    }

    #[test]
    fn unreadable_records_are_kept_and_flagged() {
        let event = LookupEvent {
            event_name: Some("DeleteBucket".into()),
            cloudtrail_event: Some("{not json".into()),
            ..Default::default()
        };
        let window_end = OffsetDateTime::now_utc();
        let n = normalize_lookup(&event, &ctx("eu-west-1", window_end));
        assert!(n.problems.iter().any(|p| p.contains("not valid JSON")));
        assert!(n.problems.iter().any(|p| p.contains("no event time")));
        assert_eq!(n.event.occurred_at, window_end);
        assert_eq!(n.event.original, Some(json!({"unparsed": "{not json"})));
        assert!(n.event.details.flagged());
        assert!(n.event.source_key.starts_with("eu-west-1:DeleteBucket:"), "{}", n.event.source_key);
    }
}

/// However malformed a record is, normalising it never panics, and its item's title is never
/// empty and never longer than 200 characters: for any JSON at all, and for records whose known
/// fields hold values of any type.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    const FIELDS: &[&str] = &[
        "eventID",
        "eventName",
        "eventSource",
        "eventTime",
        "awsRegion",
        "recipientAccountId",
        "readOnly",
        "errorCode",
        "errorMessage",
        "sourceIPAddress",
        "userAgent",
        "userIdentity",
        "requestParameters",
        "responseElements",
        "resources",
        "additionalEventData",
        "eventType",
        "type",
        "arn",
        "userName",
        "sessionContext",
        "sessionIssuer",
        "principalId",
        "accountId",
        "invokedBy",
        "ARN",
        "groupId",
        "bucketName",
        "roleArn",
        "instanceId",
        // What the resource tables and summaries read.
        "ipPermissions",
        "items",
        "item",
        "ipProtocol",
        "fromPort",
        "toPort",
        "ipRanges",
        "cidrIp",
        "createVolumePermission",
        "launchPermission",
        "add",
        "remove",
        "userId",
        "group",
        "valuesToAdd",
        "attributeName",
        "bucketPolicy",
        "policyDocument",
        "Statement",
        "Principal",
        "policyArn",
        "roleName",
        "userName",
        "accessKey",
        "instanceType",
        "value",
        "instancesSet",
        "currentState",
        "previousState",
        "name",
        "desiredCount",
        "pendingWindowInDays",
        "keyId",
        "eventSelectors",
        "PublicAccessBlockConfiguration",
        "MFAUsed",
        "ConsoleLogin",
        "serviceEventDetails",
        "snapshotId",
    ];

    /// Event names and sources the resource tables and summaries know, so generated records
    /// reach their code.
    const KNOWN: &[(&str, &str)] = &[
        ("AuthorizeSecurityGroupIngress", "ec2.amazonaws.com"),
        ("ModifySnapshotAttribute", "ec2.amazonaws.com"),
        ("ModifyDBSnapshotAttribute", "rds.amazonaws.com"),
        ("PutBucketPolicy", "s3.amazonaws.com"),
        ("PutBucketPublicAccessBlock", "s3.amazonaws.com"),
        ("PutRolePolicy", "iam.amazonaws.com"),
        ("UpdateAssumeRolePolicy", "iam.amazonaws.com"),
        ("CreateAccessKey", "iam.amazonaws.com"),
        ("ConsoleLogin", "signin.amazonaws.com"),
        ("ScheduleKeyDeletion", "kms.amazonaws.com"),
        ("UpdateTrail", "cloudtrail.amazonaws.com"),
        ("PutEventSelectors", "cloudtrail.amazonaws.com"),
        ("ModifyInstanceAttribute", "ec2.amazonaws.com"),
        ("RunInstances", "ec2.amazonaws.com"),
        ("TerminateInstances", "ec2.amazonaws.com"),
        ("CreateNetworkAclEntry", "ec2.amazonaws.com"),
        ("UpdateAutoScalingGroup", "autoscaling.amazonaws.com"),
        ("UpdateFunctionConfiguration20150331v2", "lambda.amazonaws.com"),
        ("UpdateService", "ecs.amazonaws.com"),
        ("LeaveOrganization", "organizations.amazonaws.com"),
    ];

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,300}".prop_map(Value::String),
            "(19|20|99)[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:.]{0,12}Z?".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..8).prop_map(|pairs| {
                    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn normalising_never_panics_and_titles_are_bounded(
            record in any_json(),
            name in proptest::option::of(".{0,400}"),
            known in proptest::sample::select(KNOWN),
        ) {
            let ctx = RecordContext {
                connection_id: Uuid::nil(),
                account_id: "123456789012",
                region: "us-east-1",
                fallback_time: OffsetDateTime::UNIX_EPOCH,
            };
            // The same record as a known event, so the tables and summaries read it.
            let mut as_known = record.clone();
            if let Some(o) = as_known.as_object_mut() {
                o.insert("eventName".into(), Value::String(known.0.into()));
                o.insert("eventSource".into(), Value::String(known.1.into()));
                o.remove("errorCode");
            }
            for n in [normalize(&record, &ctx), normalize(&as_known, &ctx), normalize_lookup(&LookupEvent {
                event_name: name.clone(),
                cloudtrail_event: Some(record.to_string()),
                ..Default::default()
            }, &ctx)] {
                let chars = n.event.title.chars().count();
                prop_assert!(chars > 0 && chars <= 200, "{chars}: {}", n.event.title);
                prop_assert!(!n.event.title.trim().is_empty());
            }
        }
    }
}

#[cfg(test)]
mod coverage;
#[cfg(test)]
mod title_table;
