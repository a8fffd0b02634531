//! CloudTrail events from `LookupEvents`, normalised into timeline items a person reads at a
//! glance. A record that cannot be read is still kept, as it came, with its problems listed.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::{EventKind, NewEvent, Resource};

pub const SOURCE: &str = "aws.cloudtrail";

/// One event of a `LookupEvents` answer, as the API shapes it (independent of any SDK type).
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

fn split_camel(name: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for c in name.chars() {
        let starts_word =
            c.is_uppercase() && words.last().is_some_and(|w| w.chars().last().is_some_and(|p| !p.is_uppercase()));
        match words.last_mut() {
            Some(word) if !starts_word => word.push(c),
            _ => words.push(c.to_string()),
        }
    }
    words
}

/// Past tense of the verbs event names start with; `None` for verbs read as "called".
fn past_tense(verb: &str) -> Option<&'static str> {
    Some(match verb {
        "Create" => "created",
        "Delete" => "deleted",
        "Put" => "put",
        "Update" => "updated",
        "Modify" => "modified",
        "Change" => "changed",
        "Attach" => "attached",
        "Detach" => "detached",
        "Associate" => "associated",
        "Disassociate" => "disassociated",
        "Run" => "ran",
        "Start" => "started",
        "Stop" => "stopped",
        "Terminate" => "terminated",
        "Reboot" => "rebooted",
        "Authorize" => "authorized",
        "Revoke" => "revoked",
        "Add" => "added",
        "Remove" => "removed",
        "Set" => "set",
        "Enable" => "enabled",
        "Disable" => "disabled",
        "Assume" => "assumed",
        "Get" => "read",
        "List" => "listed",
        "Describe" => "described",
        "Tag" => "tagged",
        "Untag" => "untagged",
        "Register" => "registered",
        "Deregister" => "deregistered",
        "Import" => "imported",
        "Export" => "exported",
        "Upload" => "uploaded",
        "Restore" => "restored",
        "Reset" => "reset",
        "Replace" => "replaced",
        "Apply" => "applied",
        "Cancel" => "cancelled",
        "Invoke" => "invoked",
        "Publish" => "published",
        "Send" => "sent",
        "Copy" => "copied",
        "Accept" => "accepted",
        "Reject" => "rejected",
        "Allocate" => "allocated",
        "Release" => "released",
        _ => return None,
    })
}

/// "alice deleted security group sg-0abc (ec2)"; a failed call reads
/// "alice tried to delete security group sg-0abc (ec2): AccessDenied".
pub fn title(
    actor: Option<&str>,
    event_name: &str,
    event_source: &str,
    resource: Option<&str>,
    error_code: Option<&str>,
) -> String {
    let actor = actor.unwrap_or("someone");
    let service = event_source.strip_suffix(".amazonaws.com").unwrap_or(event_source);
    if event_name == "ConsoleLogin" {
        return match error_code {
            Some(e) => format!("{actor} failed to sign in to the console ({e})"),
            None => format!("{actor} signed in to the console"),
        };
    }
    // Drop API version suffixes such as "UpdateFunctionCode20150331v2".
    let base = event_name.trim_end_matches(|c: char| c.is_ascii_digit() || c == 'v');
    let base = if base.is_empty() { event_name } else { base };
    let words = split_camel(base);
    let object = |from: usize| {
        let noun = words[from..].iter().map(|w| w.to_lowercase()).collect::<Vec<_>>().join(" ");
        match resource {
            Some(r) if noun.is_empty() => r.to_owned(),
            Some(r) => format!("{noun} {r}"),
            None => noun,
        }
    };
    let (what, verb_past, verb_base) =
        match words.first().map(String::as_str).and_then(|v| past_tense(v).map(|p| (v, p))) {
            Some((verb, past)) => (object(1), past.to_owned(), verb.to_lowercase()),
            None => (
                resource.map(str::to_owned).unwrap_or_default(),
                format!("called {event_name}"),
                format!("call {event_name}"),
            ),
        };
    let what = if what.is_empty() { String::new() } else { format!(" {what}") };
    match error_code {
        Some(error) => format!("{actor} tried to {verb_base}{what} ({service}): {error}"),
        None => format!("{actor} {verb_past}{what} ({service})"),
    }
}

fn record_time(record: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text(record, &["eventTime"])?, &Rfc3339).ok()
}

/// Resources named in `requestParameters` when the event lists none: the values of keys that
/// name things (`groupId`, `bucketName`, `roleArn`, …).
fn resources_from_request(record: &Value) -> Vec<Resource> {
    let Some(params) = record.get("requestParameters").and_then(Value::as_object) else { return Vec::new() };
    params
        .iter()
        .filter(|(k, v)| v.is_string() && (k.ends_with("Id") || k.ends_with("Name") || k.ends_with("Arn")))
        .filter_map(|(k, v)| Some(Resource { resource_type: Some(k.clone()), name: v.as_str()?.to_owned() }))
        .take(5)
        .collect()
}

/// The key that identifies an event at its source: its EventId, or (where a record has none)
/// `{region}:{eventName}:{eventTime}:{username}`, as Brinqa does.
pub fn source_key(event: &LookupEvent, region: &str, occurred_at: OffsetDateTime) -> String {
    match event.event_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => id.to_owned(),
        None => format!(
            "{region}:{}:{}:{}",
            event.event_name.as_deref().unwrap_or(""),
            occurred_at.format(&Rfc3339).unwrap_or_default(),
            event.username.as_deref().unwrap_or("")
        ),
    }
}

/// Normalises one event. `fallback_time` places an event whose time is unknown (the end of the
/// window it was found in); such an event is flagged.
pub fn normalize(
    event: &LookupEvent,
    connection_id: Uuid,
    account_id: &str,
    region: &str,
    fallback_time: OffsetDateTime,
) -> Normalized {
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
    let empty = json!({});
    let rec = record.as_ref().unwrap_or(&empty);

    let occurred_at = match event.event_time.or_else(|| record_time(rec)) {
        Some(t) => t,
        None => {
            problems.push("no event time: placed at the end of the window it was found in".to_owned());
            fallback_time
        }
    };
    let event_name = event.event_name.as_deref().or(text(rec, &["eventName"])).unwrap_or_else(|| {
        problems.push("no event name".to_owned());
        "UnknownEvent"
    });
    let event_source = event.event_source.as_deref().or(text(rec, &["eventSource"])).unwrap_or_else(|| {
        problems.push("no event source".to_owned());
        "unknown"
    });
    let read_only = match event.read_only.as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => match rec.get("readOnly").and_then(Value::as_bool) {
            Some(value) => value,
            None => {
                problems.push("no readOnly flag: kept as a change".to_owned());
                false
            }
        },
    };
    if event.event_id.as_deref().is_none_or(str::is_empty) {
        problems.push("no EventId: de-duplicated by region, name, time and user".to_owned());
    }
    let actor = actor(rec, event.username.as_deref());
    let mut resources: Vec<Resource> = event.resources.iter().filter(|r| !r.name.is_empty()).cloned().collect();
    if resources.is_empty() {
        resources = resources_from_request(rec);
    }
    let error_code = text(rec, &["errorCode"]);
    let title =
        title(actor.as_deref(), event_name, event_source, resources.first().map(|r| r.name.as_str()), error_code);
    let event_account = text(rec, &["recipientAccountId"]).unwrap_or(account_id);
    let details = json!({
        "event_id": event.event_id,
        "event_name": event_name,
        "event_source": event_source,
        "region": text(rec, &["awsRegion"]).unwrap_or(region),
        "account_id": event_account,
        "read_only": read_only,
        "error_code": error_code,
        "error_message": text(rec, &["errorMessage"]),
        "source_ip": text(rec, &["sourceIPAddress"]),
        "user_agent": text(rec, &["userAgent"]),
        "identity_type": text(rec, &["userIdentity", "type"]),
        "role": text(rec, &["userIdentity", "sessionContext", "sessionIssuer", "userName"]),
        "flagged": !problems.is_empty(),
        "problems": problems,
    });
    let original = match (&record, event.cloudtrail_event.as_deref()) {
        (Some(record), _) => Some(record.clone()),
        (None, Some(raw)) => Some(json!({ "unparsed": raw })),
        (None, None) => None,
    };
    let mut labels = BTreeMap::new();
    labels.insert("aws.region".to_owned(), region.to_owned());
    labels.insert("aws.account".to_owned(), event_account.to_owned());
    labels.insert(
        "aws.service".to_owned(),
        event_source.strip_suffix(".amazonaws.com").unwrap_or(event_source).to_owned(),
    );
    Normalized {
        event: NewEvent {
            kind: EventKind::Cloudtrail,
            source: SOURCE.to_owned(),
            source_key: source_key(event, region, occurred_at),
            connection_id: Some(connection_id),
            occurred_at,
            title,
            actor,
            read_only,
            resources,
            labels,
            links: Vec::new(),
            details,
            original,
            environment_ids: Vec::new(),
        },
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_read_like_sentences() {
        assert_eq!(
            title(Some("alice"), "DeleteSecurityGroup", "ec2.amazonaws.com", Some("sg-0abc"), None),
            "alice deleted security group sg-0abc (ec2)"
        );
        assert_eq!(
            title(Some("bob"), "PutBucketPolicy", "s3.amazonaws.com", Some("logs"), None),
            "bob put bucket policy logs (s3)"
        );
        assert_eq!(
            title(
                Some("eve"),
                "AuthorizeSecurityGroupIngress",
                "ec2.amazonaws.com",
                Some("sg-1"),
                Some("UnauthorizedOperation")
            ),
            "eve tried to authorize security group ingress sg-1 (ec2): UnauthorizedOperation"
        );
        assert_eq!(
            title(Some("ci"), "UpdateFunctionCode20150331v2", "lambda.amazonaws.com", Some("api"), None),
            "ci updated function code api (lambda)"
        );
        assert_eq!(title(None, "ConsoleLogin", "signin.amazonaws.com", None, None), "someone signed in to the console");
        assert_eq!(
            title(Some("x"), "GenerateDataKey", "kms.amazonaws.com", None, None),
            "x called GenerateDataKey (kms)"
        );
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
        let n = normalize(&lookup(record), Uuid::nil(), "123456789012", "us-east-1", OffsetDateTime::UNIX_EPOCH);
        assert!(n.problems.is_empty(), "{:?}", n.problems);
        assert_eq!(n.event.actor.as_deref(), Some("alice@example.com"));
        assert_eq!(n.event.title, "alice@example.com terminated instances (ec2)");
        assert_eq!(n.event.details["role"], "AWSReservedSSO_Admin");
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
        let n = normalize(&event, Uuid::nil(), "123456789012", "eu-west-1", window_end);
        assert!(n.problems.iter().any(|p| p.contains("not valid JSON")));
        assert!(n.problems.iter().any(|p| p.contains("no event time")));
        assert_eq!(n.event.occurred_at, window_end);
        assert_eq!(n.event.original, Some(json!({"unparsed": "{not json"})));
        assert_eq!(n.event.details["flagged"], true);
        assert!(n.event.source_key.starts_with("eu-west-1:DeleteBucket:"), "{}", n.event.source_key);
    }
}
