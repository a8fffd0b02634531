//! CloudTrail `LookupEvents`, in the awsJson1.1 protocol: `X-Amz-Target`, JSON errors with
//! `__type`.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use crate::sts::account_of;
use crate::*;

pub(crate) fn json_error(status: u16, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({"__type": error_type, "message": message}).to_string();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "application/x-amz-json-1.1"), ("x-amzn-errortype", error_type)],
        body,
    )
        .into_response()
}

pub(crate) fn cloudtrail(standin: &Standin, headers: &HeaderMap, target: &str, body: &[u8]) -> Response {
    let action = target.rsplit('.').next().unwrap_or(target).to_owned();
    let key = access_key_of(headers).unwrap_or_default();
    let (status, response) = cloudtrail_action(standin, headers, &action, body);
    standin.record(&action, &key, status);
    response
}

fn cloudtrail_action(standin: &Standin, headers: &HeaderMap, action: &str, body: &[u8]) -> (u16, Response) {
    let mut inner = standin.inner.lock().unwrap();
    let Some(who) = caller(&inner, headers) else {
        return (
            400,
            json_error(400, "UnrecognizedClientException", "The security token included in the request is invalid."),
        );
    };
    if action != "LookupEvents" {
        return (400, json_error(400, "UnknownOperationException", &format!("{action} is not served by the stand-in")));
    }
    let region = region_of(headers).unwrap_or_else(|| "us-east-1".to_owned());
    let (allowed, caller_arn, role_arn) = match &who {
        Caller::Identity(i) => (inner.identity_lookups.contains(&i.access_key_id), i.arn.clone(), i.arn.clone()),
        Caller::Session(s) => (
            inner
                .roles
                .get(&s.role_arn)
                .is_some_and(|r| r.allow_lookup_events && !r.lookup_denied_regions.contains(&region)),
            s.assumed_role_arn.clone(),
            s.role_arn.clone(),
        ),
    };
    if !allowed {
        let message = format!(
            "User: {caller_arn} is not authorized to perform: cloudtrail:LookupEvents because no identity-based policy allows the cloudtrail:LookupEvents action"
        );
        return (400, json_error(400, "AccessDeniedException", &message));
    }
    let account = account_of(&role_arn);
    let key = (account, region);

    if inner.throttle_next > 0 {
        inner.throttle_next -= 1;
        inner.throttled += 1;
        return (400, json_error(400, "ThrottlingException", "Rate exceeded"));
    }
    // AWS's limit: 2 calls per second per account and region, whoever calls.
    if let Some(limit) = inner.lookup_rate_limit {
        let now = std::time::Instant::now();
        let recent = inner.recent_calls.entry(key.clone()).or_default();
        while recent.front().is_some_and(|t| now.duration_since(*t) >= std::time::Duration::from_secs(1)) {
            recent.pop_front();
        }
        if recent.len() >= limit as usize {
            inner.throttled += 1;
            return (400, json_error(400, "ThrottlingException", "Rate exceeded"));
        }
        recent.push_back(now);
    }
    if inner.failure_rate > 0.0 && rand::thread_rng().gen_bool(inner.failure_rate.min(1.0)) {
        return (500, json_error(500, "InternalFailure", "The stand-in failed on purpose."));
    }

    let request: LookupRequest = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return (400, json_error(400, "SerializationException", &e.to_string())),
    };
    let max = request.max_results.unwrap_or(50);
    if !(1..=50).contains(&max) {
        return (400, json_error(400, "InvalidMaxResultsException", "MaxResults must be between 1 and 50"));
    }
    if request.lookup_attributes.len() > 1 {
        return (
            400,
            json_error(400, "InvalidLookupAttributesException", "You can only specify one lookup attribute."),
        );
    }
    if let (Some(start), Some(end)) = (request.start_time, request.end_time) {
        if start > end {
            return (400, json_error(400, "InvalidTimeRangeException", "StartTime must be before EndTime."));
        }
    }
    // A NextToken is bound to the parameters of the walk it belongs to.
    let fingerprint =
        format!("{:?}|{:?}|{:?}|{:?}", key, request.start_time, request.end_time, request.lookup_attributes);
    let remaining = match &request.next_token {
        Some(token) => match inner.page_tokens.remove(token) {
            Some((bound_to, remaining)) if bound_to == fingerprint => remaining,
            _ => return (400, json_error(400, "InvalidNextTokenException", "Invalid NextToken.")),
        },
        None => {
            let now = OffsetDateTime::now_utc();
            let attribute = request.lookup_attributes.first();
            inner
                .events
                .get(&key)
                .map(|events| {
                    events
                        .iter()
                        .filter(|e| e.visible_at <= now)
                        .filter(|e| request.start_time.is_none_or(|s| e.time_seconds >= s))
                        .filter(|e| request.end_time.is_none_or(|end| e.time_seconds <= end))
                        .filter(|e| attribute.is_none_or(|a| e.matches(a)))
                        .map(|e| e.api_event.clone())
                        .collect()
                })
                .unwrap_or_default()
        }
    };
    let (page, rest) = remaining.split_at(remaining.len().min(max as usize));
    let mut answer = serde_json::json!({ "Events": page });
    if !rest.is_empty() {
        let token = random_string(48, UPPER);
        inner.page_tokens.insert(token.clone(), (fingerprint, rest.to_vec()));
        answer["NextToken"] = serde_json::Value::String(token);
    }
    inner.lookups_served += 1;
    inner.lookups.push(LookupCall {
        access_key_id: access_key_of(headers).unwrap_or_default(),
        region: key.1.clone(),
        start_time: request.start_time,
        end_time: request.end_time,
        with_token: request.next_token.is_some(),
    });
    (200, (StatusCode::OK, [("content-type", "application/x-amz-json-1.1")], answer.to_string()).into_response())
}

fn region_of(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    Some(credential.split('/').nth(2)?.to_owned())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LookupRequest {
    #[serde(default)]
    lookup_attributes: Vec<LookupAttribute>,
    start_time: Option<f64>,
    end_time: Option<f64>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LookupAttribute {
    attribute_key: String,
    attribute_value: String,
}

/// An event as the stand-in keeps it: the API's shape, and when it becomes visible.
#[derive(Debug, Clone)]
pub struct StandinEvent {
    pub time_seconds: f64,
    pub visible_at: OffsetDateTime,
    pub api_event: serde_json::Value,
}

impl StandinEvent {
    fn matches(&self, attribute: &LookupAttribute) -> bool {
        let field = |name: &str| self.api_event.get(name).and_then(|v| v.as_str());
        let value = attribute.attribute_value.as_str();
        match attribute.attribute_key.as_str() {
            // A record without readOnly is served as a change.
            "ReadOnly" => field("ReadOnly").unwrap_or("false") == value,
            "EventId" => field("EventId") == Some(value),
            "EventName" => field("EventName") == Some(value),
            "EventSource" => field("EventSource") == Some(value),
            "Username" => field("Username") == Some(value),
            "AccessKeyId" => field("AccessKeyId") == Some(value),
            "ResourceType" | "ResourceName" => {
                let key = if attribute.attribute_key == "ResourceType" { "ResourceType" } else { "ResourceName" };
                self.api_event["Resources"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r.get(key).and_then(|v| v.as_str()) == Some(value)))
            }
            _ => false,
        }
    }

    /// Converts a CloudTrail trail record (the S3 delivery format) into the event `LookupEvents`
    /// answers with, moved `shift` later in time. `None` for a record with no time at all.
    pub fn from_record(record: &serde_json::Value, shift: time::Duration, lag: time::Duration) -> Option<StandinEvent> {
        use time::format_description::well_known::Rfc3339;
        let text =
            |path: &[&str]| path.iter().try_fold(record, |v, k| v.get(k)).and_then(|v| v.as_str()).map(str::to_owned);
        let recorded = text(&["eventTime"]);
        let placed = recorded.clone().or_else(|| text(&["@timestamp"]))?;
        let time = OffsetDateTime::parse(&placed, &Rfc3339).ok()? + shift;
        let mut shifted = record.clone();
        if recorded.is_some() {
            shifted["eventTime"] = serde_json::Value::String(time.format(&Rfc3339).ok()?);
        }
        let username = match text(&["userIdentity", "type"]).as_deref() {
            Some("AssumedRole") => text(&["userIdentity", "arn"]).and_then(|a| a.rsplit('/').next().map(str::to_owned)),
            _ => text(&["userIdentity", "userName"]),
        };
        let resources: Vec<serde_json::Value> = record["resources"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|r| serde_json::json!({"ResourceType": r.get("type"), "ResourceName": r.get("ARN").or(r.get("arn"))}))
                    .collect()
            })
            .unwrap_or_default();
        let seconds = time.unix_timestamp() as f64 + time.nanosecond() as f64 / 1e9;
        let mut api_event = serde_json::json!({
            "EventId": record.get("eventID"),
            "EventName": record.get("eventName"),
            "EventSource": record.get("eventSource"),
            "Username": username,
            "AccessKeyId": text(&["userIdentity", "accessKeyId"]),
            "Resources": resources,
            "CloudTrailEvent": shifted.to_string(),
        });
        // Records from a Logstash pipeline lost eventTime: the API event then has none either.
        if recorded.is_some() {
            api_event["EventTime"] = serde_json::json!(seconds);
        }
        if let Some(read_only) = record.get("readOnly").and_then(|v| v.as_bool()) {
            api_event["ReadOnly"] = serde_json::Value::String(read_only.to_string());
        }
        let api_event = serde_json::Value::Object(
            api_event.as_object()?.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect(),
        );
        Some(StandinEvent { time_seconds: seconds, visible_at: time + lag, api_event })
    }
}
