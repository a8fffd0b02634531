//! CloudTrail Lake-compatible channels: integrations that call cloudtrail-data's
//! `PutAuditEvents` send their activity to a channel, and each accepted audit event becomes a
//! timeline item. The request's rules (limits, per-event checks, codes) are AWS's.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::environment::EnvironmentSlug;
use crate::event::{Details, EventKind, IngestPath, NewEvent};
use crate::validation::{self, Invalid};

pub const MAX_EVENTS: usize = 100;
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// An `eventData` larger than this is `FieldTooLong` (the whole request may hold 1 MB).
pub const MAX_EVENT_DATA_BYTES: usize = 256 * 1024;
/// The cloudtrail-data service name that SigV4 signatures must be scoped to.
pub const SIGNING_SERVICE: &str = "cloudtrail-data";

/// What an admin chooses for a channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ChannelSettings {
    pub name: String,
    /// The integration's name (`okta`, `my-deploy-tool`), as the timeline's `source` filter reads
    /// nothing of it: items carry their events' `eventSource`.
    pub source: String,
    pub environments: Vec<EnvironmentSlug>,
    /// When set, every call must carry it (`externalId=`), as a channel's resource policy can ask.
    pub external_id: Option<String>,
}

impl ChannelSettings {
    pub fn parse(
        name: &str,
        source: &str,
        environments: &[String],
        external_id: Option<&str>,
    ) -> Result<ChannelSettings, Invalid> {
        let mut errors = Invalid::default();
        let name = errors.check(validation::text("name", name, 200));
        let source = errors.check(validation::text("source", source, 200));
        if environments.is_empty() {
            errors.push("environments", "give at least one environment the channel's events belong to");
        }
        let mut slugs = Vec::new();
        for (i, e) in environments.iter().enumerate() {
            if let Some(slug) = errors.check(EnvironmentSlug::parse(&format!("environments[{i}]"), e)) {
                if !slugs.contains(&slug) {
                    slugs.push(slug);
                }
            }
        }
        let external_id = external_id.map(str::to_owned);
        if let Some(id) = &external_id {
            if id.len() < 2
                || id.len() > 1224
                || !id.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c))
            {
                errors.push("external_id", "2–1224 characters of letters, digits and +=,.@:/-_");
            }
        }
        errors.into_result()?;
        Ok(ChannelSettings { name: name.unwrap(), source: source.unwrap(), environments: slugs, external_id })
    }
}

/// A channel as stored: its secret access key sealed (see `secret_box`), never in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: Uuid,
    pub org_id: Uuid,
    pub settings: ChannelSettings,
    pub access_key_id: String,
    pub sealed_secret: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// How many of a channel's events had one outcome (`accepted`, or a failure code), and when
/// the last of them arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOutcome {
    pub outcome: String,
    pub events: u64,
    pub last_at: OffsetDateTime,
}

/// An ARN the SDKs accept as `channelArn`; the channel's id is its last part.
pub fn channel_arn(id: Uuid) -> String {
    format!("arn:aws:cloudtrail:us-east-1:000000000000:channel/{id}")
}

/// The channel a `channelArn` names: an ARN of [`channel_arn`]'s shape, or the bare id.
pub fn channel_id_of(arn: &str) -> Option<Uuid> {
    let id = arn.rsplit_once("channel/").map_or(arn, |(_, id)| id);
    Uuid::try_parse(id).ok()
}

/// A new access key pair: an id shaped like AWS's (20 upper-case letters and digits) and a
/// 40-character secret, 238 bits of randomness.
pub fn generate_access_key() -> (String, String) {
    use rand::distributions::{Alphanumeric, DistString};
    use rand::Rng;
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::rngs::OsRng;
    let id: String = (0..16).map(|_| UPPER[rng.gen_range(0..UPPER.len())] as char).collect();
    (format!("CTCH{id}"), Alphanumeric.sample_string(&mut rng, 40))
}

/// One request-level failure, named as AWS names it (`x-amzn-ErrorType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFailure {
    pub code: &'static str,
    pub message: String,
}

fn request_failure(code: &'static str, message: impl Into<String>) -> RequestFailure {
    RequestFailure { code, message: message.into() }
}

/// One audit event as the request carries it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: String,
    pub event_data: String,
    #[serde(default)]
    pub event_data_checksum: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutAuditEventsBody {
    audit_events: Vec<AuditEvent>,
}

/// The request's body read and checked as a whole: 1–100 events, ids well-formed and unique.
pub fn read_request(body: &[u8]) -> Result<Vec<AuditEvent>, RequestFailure> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(request_failure("ValidationException", "the request is larger than 1 MB"));
    }
    let parsed: PutAuditEventsBody = serde_json::from_slice(body).map_err(|e| {
        request_failure("SerializationException", format!("the body is not a PutAuditEvents request: {e}"))
    })?;
    let events = parsed.audit_events;
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(request_failure(
            "ValidationException",
            format!(
                "1 validation error detected: Value at 'auditEvents' failed to satisfy constraint: Member must have length between 1 and {MAX_EVENTS} (got {})",
                events.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for event in &events {
        let valid = (1..=128).contains(&event.id.len())
            && event.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(request_failure(
                "ValidationException",
                format!("the audit event id {:?} must be 1–128 characters of [-_A-Za-z0-9]", event.id),
            ));
        }
        if !seen.insert(event.id.as_str()) {
            return Err(request_failure(
                "DuplicatedAuditEventId",
                format!("the audit event id {:?} appears more than once in the request", event.id),
            ));
        }
    }
    Ok(events)
}

/// Why one event was refused, as the answer's `failed` entries say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFailure {
    pub code: &'static str,
    pub message: String,
}

fn failure(code: &'static str, message: impl Into<String>) -> EventFailure {
    EventFailure { code, message: message.into() }
}

fn field<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    data.pointer(path).filter(|v| !v.is_null() && v.as_str() != Some(""))
}

/// The fields of the integrations event schema every event has, with the longest each may be.
const REQUIRED: [(&str, usize); 8] = [
    ("/version", 64),
    ("/userIdentity/type", 128),
    ("/userIdentity/principalId", 1024),
    ("/eventSource", 1024),
    ("/eventName", 1024),
    ("/eventTime", 64),
    ("/UID", 1024),
    ("/recipientAccountId", 64),
];

/// Reads one audit event into a timeline item of the channel, or says why it is refused.
pub fn read_event(event: &AuditEvent, channel: &Channel, environment_ids: &[Uuid]) -> Result<NewEvent, EventFailure> {
    if event.event_data.len() > MAX_EVENT_DATA_BYTES {
        return Err(failure("FieldTooLong", format!("eventData is longer than {MAX_EVENT_DATA_BYTES} bytes")));
    }
    if let Some(given) = &event.event_data_checksum {
        let actual = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(event.event_data.as_bytes()));
        if !bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), actual.as_bytes())) {
            return Err(failure("InvalidChecksum", "eventDataChecksum is not the base64 SHA-256 of eventData"));
        }
    }
    let data: Value = serde_json::from_str(&event.event_data)
        .map_err(|e| failure("InvalidData", format!("eventData is not JSON: {e}")))?;
    if !data.is_object() {
        return Err(failure("InvalidData", "eventData must be a JSON object"));
    }
    for (path, max) in REQUIRED {
        let name = path.trim_start_matches('/').replace('/', ".");
        match field(&data, path) {
            None => return Err(failure("FieldNotFound", format!("eventData has no {name}"))),
            Some(Value::String(s)) if s.len() > max => {
                return Err(failure("FieldTooLong", format!("{name} is longer than {max} characters")))
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(failure("InvalidData", format!("{name} must be a string"))),
        }
    }
    let text = |path: &str| field(&data, path).and_then(Value::as_str);
    let occurred_at = OffsetDateTime::parse(text("/eventTime").unwrap_or_default(), &Rfc3339)
        .map_err(|_| failure("InvalidData", "eventTime is not an RFC 3339 time (2026-12-01T12:00:00Z)"))?;
    let (event_name, event_source, uid) = (
        text("/eventName").unwrap_or_default(),
        text("/eventSource").unwrap_or_default(),
        text("/UID").unwrap_or_default(),
    );
    let actor = text("/userIdentity/details/name")
        .or(text("/userIdentity/details/email"))
        .or(text("/userIdentity/details/userName"))
        .or(text("/userIdentity/principalId"))
        .map(str::to_owned);
    let resources = crate::cloudtrail::resources_from_request(&data);
    let error_code = text("/errorCode");
    let title = crate::cloudtrail::title(
        actor.as_deref(),
        event_name,
        event_source,
        resources.first().map(|r| r.name.as_str()),
        error_code,
    );
    let mut labels = BTreeMap::new();
    labels.insert("channel".to_owned(), channel.settings.name.clone());
    labels.insert("integration".to_owned(), channel.settings.source.clone());
    Ok(NewEvent {
        kind: EventKind::Custom,
        source: event_source.to_owned(),
        source_key: format!("channel:{uid}"),
        connection_id: None,
        occurred_at,
        title,
        actor,
        read_only: false,
        resources,
        labels,
        links: Vec::new(),
        details: Details::Other(json!({
            "event_name": event_name, "event_source": event_source, "uid": uid,
            "channel_id": channel.id, "recipient_account_id": text("/recipientAccountId"),
            "identity_type": text("/userIdentity/type"), "principal_id": text("/userIdentity/principalId"),
            "error_code": error_code, "error_message": text("/errorMessage"),
            "source_ip": text("/sourceIPAddress"), "user_agent": text("/userAgent"),
        })),
        original: Some(data.clone()),
        environment_ids: environment_ids.to_vec(),
        via: IngestPath::Channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> Channel {
        Channel {
            id: Uuid::nil(),
            org_id: Uuid::nil(),
            settings: ChannelSettings::parse("okta", "okta", &["production".into()], None).unwrap(),
            access_key_id: "CTCHX".into(),
            sealed_secret: String::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn data() -> Value {
        json!({"version": "1.0", "userIdentity": {"type": "User", "principalId": "00u1", "details": {"name": "alice"}},
               "eventSource": "okta.example.com", "eventName": "DeleteGroup", "eventTime": "2026-11-30T10:00:00Z",
               "UID": "u-1", "recipientAccountId": "123456789012", "requestParameters": {"groupName": "admins"}})
    }

    fn event(data: &Value) -> AuditEvent {
        AuditEvent { id: "e1".into(), event_data: data.to_string(), event_data_checksum: None }
    }

    #[test]
    fn an_audit_event_becomes_an_item_in_words() {
        let item = read_event(&event(&data()), &channel(), &[]).unwrap();
        assert_eq!(item.title, "alice deleted group admins (okta.example.com)");
        assert_eq!((item.source.as_str(), item.source_key.as_str()), ("okta.example.com", "channel:u-1"));
        assert_eq!(item.via, IngestPath::Channel);
        assert_eq!(item.original, Some(data()));
    }

    #[test]
    fn each_check_names_its_code() {
        let code = |e: AuditEvent| read_event(&e, &channel(), &[]).unwrap_err().code;
        let mut missing = data();
        missing.as_object_mut().unwrap().remove("UID");
        assert_eq!(code(event(&missing)), "FieldNotFound");
        let mut long = data();
        long["eventName"] = json!("x".repeat(2000));
        assert_eq!(code(event(&long)), "FieldTooLong");
        assert_eq!(
            code(AuditEvent { id: "e".into(), event_data: "{".into(), event_data_checksum: None }),
            "InvalidData"
        );
        let mut bad_sum = event(&data());
        bad_sum.event_data_checksum = Some("AAAA".into());
        assert_eq!(code(bad_sum), "InvalidChecksum");
        let mut good_sum = event(&data());
        good_sum.event_data_checksum =
            Some(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(good_sum.event_data.as_bytes())));
        assert!(read_event(&good_sum, &channel(), &[]).is_ok());
        let dup = br#"{"auditEvents": [{"id": "a", "eventData": "{}"}, {"id": "a", "eventData": "{}"}]}"#;
        assert_eq!(read_request(dup).unwrap_err().code, "DuplicatedAuditEventId");
        assert_eq!(read_request(br#"{"auditEvents": []}"#).unwrap_err().code, "ValidationException");
        assert_eq!(channel_id_of(&channel_arn(Uuid::nil())), Some(Uuid::nil()));
    }
}
