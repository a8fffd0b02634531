//! CloudTrail events as EventBridge pushes them through an API destination: one event per
//! request, `{"version", "id", "detail-type", "source", "account", "time", "region", "resources",
//! "detail"}`, where `detail` is the same record LookupEvents returns later. The envelope is
//! checked against the connection; the record is normalised by the poll's own code, keyed by its
//! `eventID`, so the poll that finds it later stores nothing new.

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{normalize, Normalized, RecordContext};
use crate::event::IngestPath;
use crate::validation::Invalid;

/// The detail-types whose `detail` is a CloudTrail record. The setup's rule asks for the first
/// two; the others carry records too, so a rule an admin widened is not refused.
pub const DETAIL_TYPES: [&str; 4] = [
    "AWS API Call via CloudTrail",
    "AWS Console Sign In via CloudTrail",
    "AWS Console Action via CloudTrail",
    "AWS Service Event via CloudTrail",
];

/// EventBridge matches no event larger than this, so no real delivery is larger.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The header an API destination's connection (API-key authorisation) sends the secret in.
pub const SECRET_HEADER: &str = "X-Changetrail-Push-Secret";

/// What a pushed event must match: the connection's account and regions.
#[derive(Debug, Clone, Copy)]
pub struct PushTarget<'a> {
    pub connection_id: Uuid,
    pub account_id: &'a str,
    pub regions: &'a [String],
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Reads one pushed event: the normalised item, or every reason it is refused (nothing of a
/// refused event is stored).
pub fn read(event: &Value, target: PushTarget<'_>, now: OffsetDateTime) -> Result<Normalized, Invalid> {
    let mut errors = Invalid::default();
    if !event.is_object() {
        return Err(Invalid::one("body", "an EventBridge event is a JSON object"));
    }
    match text(event, "detail-type") {
        Some(t) if DETAIL_TYPES.contains(&t) => {}
        Some(t) => errors.push(
            "detail-type",
            format!("{t:?} carries no CloudTrail record; the rule should match {:?}", &DETAIL_TYPES[..2]),
        ),
        None => errors.push("detail-type", "missing: an EventBridge event names its detail-type"),
    }
    let account = text(event, "account");
    match account {
        Some(a) if a == target.account_id => {}
        Some(a) => errors
            .push("account", format!("an event of account {a}; this connection imports account {}", target.account_id)),
        None => errors.push("account", "missing: the account the event happened in"),
    }
    let region = text(event, "region");
    match region {
        Some(r) if target.regions.iter().any(|own| own == r) => {}
        Some(r) => errors
            .push("region", format!("{r} is not one of this connection's regions ({})", target.regions.join(", "))),
        None => errors.push("region", "missing: the region the event happened in"),
    }
    let Some(detail) = event.get("detail").filter(|d| d.is_object()) else {
        errors.push("detail", "missing or not an object: it holds the CloudTrail record");
        return Err(errors);
    };
    for field in ["eventID", "eventName", "eventSource", "eventTime"] {
        if text(detail, field).is_none() {
            errors.push(format!("detail.{field}"), "missing: every CloudTrail record has it");
        }
    }
    if text(detail, "eventTime")
        .is_some_and(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_err())
    {
        errors.push("detail.eventTime", "not an RFC 3339 time");
    }
    if let (Some(recipient), Some(account)) = (text(detail, "recipientAccountId"), account) {
        if recipient != account {
            errors.push("detail.recipientAccountId", format!("{recipient} differs from the event's account {account}"));
        }
    }
    if let (Some(aws_region), Some(region)) = (text(detail, "awsRegion"), region) {
        if aws_region != region {
            errors.push("detail.awsRegion", format!("{aws_region} differs from the event's region {region}"));
        }
    }
    errors.into_result()?;
    let ctx = RecordContext {
        connection_id: target.connection_id,
        account_id: target.account_id,
        region: region.unwrap_or_default(),
        fallback_time: now,
    };
    let mut normalized = normalize(detail, &ctx);
    normalized.event.via = IngestPath::Push;
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cloudtrail::{normalize_lookup, LookupEvent};

    fn record() -> Value {
        json!({
            "eventVersion": "1.08", "eventID": "0f3b7c1e-1", "eventTime": "2026-11-30T10:00:00Z",
            "eventName": "AuthorizeSecurityGroupIngress", "eventSource": "ec2.amazonaws.com",
            "awsRegion": "eu-west-1", "recipientAccountId": "222222222222", "readOnly": false,
            "userIdentity": {"type": "IAMUser", "userName": "alice"},
            "requestParameters": {"groupId": "sg-0abc"}
        })
    }

    fn envelope(detail: Value) -> Value {
        json!({"version": "0", "id": "6f1", "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
               "account": "222222222222", "time": "2026-11-30T10:00:01Z", "region": "eu-west-1",
               "resources": [], "detail": detail})
    }

    fn target(regions: &[String]) -> PushTarget<'_> {
        PushTarget { connection_id: Uuid::nil(), account_id: "222222222222", regions }
    }

    #[test]
    fn a_pushed_record_is_the_item_the_poll_would_store() {
        let regions = vec!["us-east-1".to_owned(), "eu-west-1".to_owned()];
        let pushed = read(&envelope(record()), target(&regions), OffsetDateTime::now_utc()).unwrap();
        assert_eq!(pushed.event.via, IngestPath::Push);
        let lookup = LookupEvent { cloudtrail_event: Some(record().to_string()), ..Default::default() };
        let ctx = RecordContext {
            connection_id: Uuid::nil(),
            account_id: "222222222222",
            region: "eu-west-1",
            fallback_time: OffsetDateTime::now_utc(),
        };
        let polled = normalize_lookup(&lookup, &ctx).event;
        assert_eq!(pushed.event.source_key, polled.source_key, "the join key of push and poll");
        assert_eq!(pushed.event.title, polled.title);
        assert_eq!(pushed.event.details, polled.details);
        assert_eq!(pushed.event.labels, polled.labels);
    }

    #[test]
    fn envelopes_that_do_not_fit_the_connection_are_refused_field_by_field() {
        let regions = vec!["us-east-1".to_owned()];
        let now = OffsetDateTime::now_utc();
        let fields = |v: Value| -> Vec<String> {
            read(&v, target(&regions), now).unwrap_err().0.into_iter().map(|e| e.field).collect()
        };
        let mut other_account = envelope(record());
        other_account["account"] = json!("333333333333");
        assert!(fields(other_account).contains(&"account".to_owned()));
        assert_eq!(fields(envelope(record())), ["region"], "eu-west-1 is not imported by this connection");
        let mut unknown = envelope(record());
        unknown["detail-type"] = json!("EC2 Instance State-change Notification");
        unknown["region"] = json!("us-east-1");
        unknown["detail"]["awsRegion"] = json!("us-east-1");
        assert_eq!(fields(unknown), ["detail-type"]);
        let mut bare = envelope(json!({"eventName": "RunInstances"}));
        bare["region"] = json!("us-east-1");
        assert_eq!(fields(bare), ["detail.eventID", "detail.eventSource", "detail.eventTime"]);
        assert_eq!(fields(json!([1])), ["body"]);
        let mut no_detail = envelope(json!("text"));
        no_detail["region"] = json!("us-east-1");
        assert_eq!(fields(no_detail), ["detail"]);
    }
}
