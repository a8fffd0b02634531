//! The outbox: a delivery per match, tried until its target accepts it, refuses it for good, or
//! a day has passed. What is sent (PagerDuty Events v2 bodies, a Standard Webhooks message) and
//! when to try again are decided here; the worker only sends.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use serde_json::{json, Value};
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Rule;
use crate::timeline::TimelineItem;

/// Deliveries are tried for this long after the match, then marked failed.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
const FIRST_RETRY: Duration = Duration::from_secs(5);
const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);
/// What of an answer's body an attempt keeps, for the deliveries list.
pub const KEPT_ANSWER_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet accepted; tried again at `next_attempt_at`.
    Pending,
    Delivered,
    /// Refused for good (a 4xx other than 429) or still failing after a day.
    Failed,
    /// Not sent: the rule was disabled, or its item is gone.
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn from_stored(s: &str) -> DeliveryStatus {
        match s {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            "cancelled" => DeliveryStatus::Cancelled,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One try: when, what the target answered (no status when it could not be reached), and why
/// it did not count when it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub at: OffsetDateTime,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// A delivery with its attempts, as `GET /v1/rules/{id}/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDelivery {
    pub id: Uuid,
    pub rule_id: Uuid,
    pub event_id: Uuid,
    pub alert_event_id: Option<Uuid>,
    pub status: DeliveryStatus,
    pub created_at: OffsetDateTime,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub attempts: Vec<DeliveryAttempt>,
}

/// A delivery a worker has leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: Uuid,
    pub org_id: Uuid,
    pub rule_id: Uuid,
    pub event_id: Uuid,
    pub attempts: u32,
    pub created_at: OffsetDateTime,
}

/// How an attempt ended, as far as retrying goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx.
    Accepted(u16),
    /// 429, 5xx, a timeout or a failure to connect: worth another try.
    Retryable { status: Option<u16>, error: String },
    /// Any other answer (a 400, a 403, a refused target): trying again would get the same.
    Refused { status: Option<u16>, error: String },
}

impl AttemptResult {
    pub fn of_status(status: u16, body: &str) -> AttemptResult {
        let kept: String = body.chars().take(KEPT_ANSWER_CHARS).collect();
        match status {
            200..=299 => AttemptResult::Accepted(status),
            429 | 500..=599 | 408 => AttemptResult::Retryable { status: Some(status), error: kept },
            _ => AttemptResult::Refused { status: Some(status), error: kept },
        }
    }
}

/// What to record after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    Failed,
    RetryAt(OffsetDateTime),
}

/// After the `attempts`-th attempt (1 for the first) of a delivery made at `created_at`:
/// exponential backoff from 5 s to 15 min with jitter (so many deliveries that failed together
/// do not retry together), until a day after the match.
pub fn next_step(result: &AttemptResult, attempts: u32, created_at: OffsetDateTime, now: OffsetDateTime) -> NextStep {
    match result {
        AttemptResult::Accepted(_) => NextStep::Delivered,
        AttemptResult::Refused { .. } => NextStep::Failed,
        AttemptResult::Retryable { .. } => {
            let base = FIRST_RETRY.saturating_mul(1 << attempts.saturating_sub(1).min(12)).min(LONGEST_WAIT);
            let jittered = base.mul_f64(rand::thread_rng().gen_range(0.5..1.0));
            let at = now + jittered;
            if at - created_at > GIVE_UP_AFTER {
                NextStep::Failed
            } else {
                NextStep::RetryAt(at)
            }
        }
    }
}

/// PagerDuty's de-duplication key: the same match never opens a second incident, however many
/// times it is sent.
pub fn dedup_key(rule_id: Uuid, item_id: Uuid) -> String {
    format!("changetrail-{rule_id}-{item_id}")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn summary(rule: &Rule, item: &TimelineItem) -> String {
    format!("{}: {}", rule.settings.name, item.title).chars().take(1024).collect()
}

fn custom_details(rule: &Rule, item: &TimelineItem) -> Value {
    json!({
        "rule": rule.settings.name,
        "rule_id": rule.id,
        "item_id": item.id,
        "kind": item.kind.as_str(),
        "actor": item.actor,
        "environments": item.environments,
        "resources": item.resources,
        "details": item.details.to_json(),
    })
}

/// Where the item's record came from, for PagerDuty's `source`: the account and region of a
/// CloudTrail change, the item's source otherwise.
fn origin(item: &TimelineItem) -> String {
    match item.details.cloudtrail() {
        Some(d) => format!("aws:{}:{}", d.account_id, d.region),
        None => item.source.clone(),
    }
}

fn links(item: &TimelineItem) -> Value {
    Value::Array(item.links.iter().map(|l| json!({"href": l.href, "text": l.text})).collect())
}

/// `POST /v2/enqueue`: trigger an incident.
pub fn pagerduty_alert_body(routing_key: &str, severity: &str, rule: &Rule, item: &TimelineItem) -> Value {
    let cloudtrail = item.details.cloudtrail();
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(rule.id, item.id),
        "payload": {
            "summary": summary(rule, item),
            "source": origin(item),
            "severity": severity,
            "timestamp": rfc3339(item.occurred_at),
            "component": cloudtrail.map(|d| d.event_source.clone()),
            "group": item.environments.first(),
            "class": cloudtrail.map(|d| d.event_name.clone()),
            "custom_details": custom_details(rule, item),
        },
        "links": links(item),
        "client": "changetrail",
    })
}

/// `POST /v2/change/enqueue`: a change shown in PagerDuty's "recent changes".
pub fn pagerduty_change_body(routing_key: &str, rule: &Rule, item: &TimelineItem) -> Value {
    json!({
        "routing_key": routing_key,
        "payload": {
            "summary": summary(rule, item),
            "timestamp": rfc3339(item.occurred_at),
            "source": origin(item),
            "custom_details": custom_details(rule, item),
        },
        "links": links(item),
    })
}

/// The body of a webhook delivery.
pub fn webhook_body(rule: &Rule, item: &TimelineItem, sent_at: OffsetDateTime) -> Value {
    json!({
        "type": "rule.matched",
        "timestamp": rfc3339(sent_at),
        "data": {
            "rule": {"id": rule.id, "name": rule.settings.name},
            "item": {
                "id": item.id,
                "kind": item.kind.as_str(),
                "occurred_at": rfc3339(item.occurred_at),
                "title": item.title,
                "actor": item.actor,
                "source": item.source,
                "environments": item.environments,
                "resources": item.resources,
                "labels": item.labels,
                "details": item.details.to_json(),
            },
        },
    })
}

/// Standard Webhooks' prefix of a signing secret.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and base64 of 32 random bytes.
pub fn generate_webhook_secret() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{WEBHOOK_SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The key bytes of a Standard Webhooks secret (`whsec_` + base64 of 24–64 bytes).
pub fn webhook_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix(WEBHOOK_SECRET_PREFIX).ok_or("must start with whsec_")?;
    let key = STANDARD.decode(encoded).map_err(|_| "must be whsec_ followed by base64")?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!("must hold 24 to 64 bytes of key, not {}", key.len()));
    }
    Ok(key)
}

/// `webhook-signature`: `v1,` and base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`.
pub fn webhook_signature(key: &[u8], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(format!("{message_id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}
