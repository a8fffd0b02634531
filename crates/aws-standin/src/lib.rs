//! A local stand-in for the parts of AWS changetrail uses, speaking their real wire protocols so
//! that the real SDK clients can be pointed at it with `AWS_ENDPOINT_URL`:
//!
//! - STS `AssumeRole` and `GetCallerIdentity` (awsQuery: a form POST, XML answers, XML errors);
//! - CloudTrail `LookupEvents` (awsJson1.1: `X-Amz-Target`, JSON errors with `__type`).
//!
//! Callers are recognised by the access key in their SigV4 `Authorization` header, and sessions
//! by their `X-Amz-Security-Token`; signatures themselves are not verified. Roles are declared
//! with the trust they grant (which principal, whether an external ID is required) and whether
//! they may call LookupEvents, so every outcome of role validation can be produced.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::Rng;
use time::OffsetDateTime;

/// A long-lived identity, like the service's own IAM user or role.
#[derive(Debug, Clone)]
pub struct Identity {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// What GetCallerIdentity answers for it.
    pub arn: String,
    /// What trust policies name to trust it (a role session's role, or the user itself).
    pub principal: String,
}

/// A role in a customer's account, as its trust and permission policies would make it behave.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RoleSpec {
    pub arn: String,
    /// The principal the trust policy allows.
    pub trusted_principal: String,
    /// `Some`: the trust policy requires `sts:ExternalId` to equal this. `None`: the condition
    /// is missing (the confused-deputy misconfiguration).
    pub required_external_id: Option<String>,
    /// Whether the permissions policy allows `cloudtrail:LookupEvents`.
    pub allow_lookup_events: bool,
    /// Makes GetCallerIdentity report sessions of this role as another ARN.
    #[serde(default)]
    pub reports_session_as: Option<String>,
}

#[derive(Debug, Clone)]
struct Session {
    session_token: String,
    role_arn: String,
    assumed_role_arn: String,
}

/// One call the stand-in answered, for tests to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub action: String,
    pub access_key_id: String,
    pub status: u16,
}

/// One LookupEvents call answered with events, for tests to inspect.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupCall {
    pub access_key_id: String,
    pub region: String,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub with_token: bool,
}

#[derive(Default)]
struct Inner {
    lookups: Vec<LookupCall>,
    identities: HashMap<String, Identity>,
    sessions: HashMap<String, Session>,
    roles: HashMap<String, RoleSpec>,
    /// While set, every STS call fails with this HTTP status.
    sts_failure: Option<u16>,
    calls: Vec<Call>,
    /// Events per (account, region), newest first.
    events: HashMap<(String, String), Vec<StandinEvent>>,
    page_tokens: HashMap<String, (String, Vec<serde_json::Value>)>,
    /// LookupEvents calls allowed per second per account and region (AWS: 2); `None`: no limit.
    lookup_rate_limit: Option<u32>,
    recent_calls: HashMap<(String, String), std::collections::VecDeque<std::time::Instant>>,
    /// The share of LookupEvents calls answered 500.
    failure_rate: f64,
    throttled: u64,
    lookups_served: u64,
}

#[derive(Clone, Default)]
pub struct Standin {
    inner: Arc<Mutex<Inner>>,
}

/// A running stand-in.
pub struct RunningStandin {
    pub standin: Standin,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RunningStandin {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningStandin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Standin {
    /// A stand-in with AWS's limit of 2 LookupEvents calls per second per account and region.
    pub fn new() -> Standin {
        let standin = Standin::default();
        standin.set_lookup_rate_limit(Some(2));
        standin
    }

    pub fn add_identity(&self, identity: Identity) {
        self.inner.lock().unwrap().identities.insert(identity.access_key_id.clone(), identity);
    }

    pub fn add_role(&self, role: RoleSpec) {
        self.inner.lock().unwrap().roles.insert(role.arn.clone(), role);
    }

    pub fn set_sts_failure(&self, status: Option<u16>) {
        self.inner.lock().unwrap().sts_failure = status;
    }

    /// Adds events to an account and region's trail.
    pub fn add_events(&self, account: &str, region: &str, events: impl IntoIterator<Item = StandinEvent>) {
        let mut inner = self.inner.lock().unwrap();
        let trail = inner.events.entry((account.to_owned(), region.to_owned())).or_default();
        trail.extend(events);
        trail.sort_by(|a, b| b.time_seconds.total_cmp(&a.time_seconds));
    }

    /// Makes every event held back so far visible now: a late delivery.
    pub fn deliver_all(&self) {
        let now = OffsetDateTime::now_utc();
        let mut inner = self.inner.lock().unwrap();
        for event in inner.events.values_mut().flatten() {
            event.visible_at = event.visible_at.min(now);
        }
    }

    pub fn set_lookup_rate_limit(&self, per_second: Option<u32>) {
        self.inner.lock().unwrap().lookup_rate_limit = per_second;
    }

    pub fn set_lookup_failure_rate(&self, rate: f64) {
        self.inner.lock().unwrap().failure_rate = rate;
    }

    /// (LookupEvents calls answered with events, calls throttled).
    pub fn lookup_counts(&self) -> (u64, u64) {
        let inner = self.inner.lock().unwrap();
        (inner.lookups_served, inner.throttled)
    }

    pub fn lookups(&self) -> Vec<LookupCall> {
        self.inner.lock().unwrap().lookups.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/", axum::routing::post(handle))
            // Not AWS: how a person trying changetrail declares the role they would have created.
            .route("/_standin/roles", axum::routing::post(declare_role))
            .with_state(self.clone())
    }

    /// Serves on `addr` (port 0 for a free one) until the returned value is dropped.
    pub async fn start(self, addr: SocketAddr) -> std::io::Result<RunningStandin> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let router = self.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(RunningStandin { standin: self, addr, task })
    }

    fn record(&self, action: &str, access_key_id: &str, status: u16) {
        self.inner.lock().unwrap().calls.push(Call {
            action: action.into(),
            access_key_id: access_key_id.into(),
            status,
        });
    }
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char).collect()
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ANY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The access key of a SigV4 `Authorization` header.
fn access_key_of(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    Some(credential.split('/').next()?.to_owned())
}

/// Who is calling: a long-lived identity or a session, as (principal ARN for trust, the ARN
/// GetCallerIdentity reports, the session if any).
enum Caller {
    Identity(Identity),
    Session(Session),
}

fn caller(inner: &Inner, headers: &HeaderMap) -> Option<Caller> {
    let key = access_key_of(headers)?;
    if let Some(identity) = inner.identities.get(&key) {
        return Some(Caller::Identity(identity.clone()));
    }
    let session = inner.sessions.get(&key)?;
    let token = headers.get("x-amz-security-token")?.to_str().ok()?;
    (token == session.session_token).then(|| Caller::Session(session.clone()))
}

async fn declare_role(State(standin): State<Standin>, axum::Json(role): axum::Json<RoleSpec>) -> StatusCode {
    standin.add_role(role);
    StatusCode::NO_CONTENT
}

async fn handle(State(standin): State<Standin>, headers: HeaderMap, body: Bytes) -> Response {
    match headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        Some(target) => cloudtrail(&standin, &headers, target, &body),
        None => sts(&standin, &headers, &body),
    }
}

// ---- STS (awsQuery) ----

const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn sts_error(status: u16, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"{STS_NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error>\
         <RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(message),
        uuid::Uuid::new_v4()
    );
    (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), [("content-type", "text/xml")], body)
        .into_response()
}

fn sts_ok(action: &str, result: &str) -> Response {
    let body = format!(
        "<{action}Response xmlns=\"{STS_NS}\"><{action}Result>{result}</{action}Result>\
         <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        uuid::Uuid::new_v4()
    );
    (StatusCode::OK, [("content-type", "text/xml")], body).into_response()
}

fn sts(standin: &Standin, headers: &HeaderMap, body: &[u8]) -> Response {
    let form: HashMap<String, String> = serde_html_form::from_bytes(body).unwrap_or_default();
    let action = form.get("Action").cloned().unwrap_or_default();
    let key = access_key_of(headers).unwrap_or_default();
    let (status, response) = sts_action(standin, headers, &action, &form);
    standin.record(&action, &key, status);
    response
}

fn sts_action(standin: &Standin, headers: &HeaderMap, action: &str, form: &HashMap<String, String>) -> (u16, Response) {
    let mut inner = standin.inner.lock().unwrap();
    if let Some(status) = inner.sts_failure {
        return (status, sts_error(status, "InternalFailure", "The stand-in was told to fail."));
    }
    let Some(who) = caller(&inner, headers) else {
        return (403, sts_error(403, "InvalidClientTokenId", "The security token included in the request is invalid."));
    };
    match action {
        "GetCallerIdentity" => {
            let (arn, account) = match &who {
                Caller::Identity(i) => (i.arn.clone(), account_of(&i.arn)),
                Caller::Session(s) => {
                    let reported = inner.roles.get(&s.role_arn).and_then(|r| r.reports_session_as.clone());
                    let arn = reported.unwrap_or_else(|| s.assumed_role_arn.clone());
                    let account = account_of(&arn);
                    (arn, account)
                }
            };
            let result = format!(
                "<Arn>{}</Arn><UserId>AIDA{}</UserId><Account>{account}</Account>",
                xml_escape(&arn),
                random_string(16, UPPER)
            );
            (200, sts_ok("GetCallerIdentity", &result))
        }
        "AssumeRole" => {
            let role_arn = form.get("RoleArn").cloned().unwrap_or_default();
            let session_name = form.get("RoleSessionName").cloned().unwrap_or_default();
            let caller_principal = match &who {
                Caller::Identity(i) => i.principal.clone(),
                Caller::Session(s) => s.role_arn.clone(),
            };
            let caller_arn = match &who {
                Caller::Identity(i) => i.arn.clone(),
                Caller::Session(s) => s.assumed_role_arn.clone(),
            };
            let denied = || {
                let message =
                    format!("User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}");
                (403, sts_error(403, "AccessDenied", &message))
            };
            let Some(role) = inner.roles.get(&role_arn).cloned() else { return denied() };
            if role.trusted_principal != caller_principal {
                return denied();
            }
            if let Some(required) = &role.required_external_id {
                if form.get("ExternalId") != Some(required) {
                    return denied();
                }
            }
            let duration: i64 =
                form.get("DurationSeconds").and_then(|d| d.parse().ok()).unwrap_or(3600).clamp(900, 3600);
            let expiration =
                (OffsetDateTime::now_utc() + time::Duration::seconds(duration)).replace_nanosecond(0).unwrap();
            let expiration = expiration.format(&time::format_description::well_known::Rfc3339).unwrap();
            let access_key_id = format!("ASIA{}", random_string(16, UPPER));
            let secret = random_string(40, ANY);
            let token = random_string(120, ANY);
            let role_name = role_arn.rsplit('/').next().unwrap_or_default();
            let assumed_role_arn =
                format!("arn:aws:sts::{}:assumed-role/{role_name}/{session_name}", account_of(&role_arn));
            inner.sessions.insert(
                access_key_id.clone(),
                Session {
                    session_token: token.clone(),
                    role_arn: role_arn.clone(),
                    assumed_role_arn: assumed_role_arn.clone(),
                },
            );
            let result = format!(
                "<AssumedRoleUser><AssumedRoleId>AROA{}:{}</AssumedRoleId><Arn>{}</Arn></AssumedRoleUser>\
                 <Credentials><AccessKeyId>{access_key_id}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
                 <SessionToken>{}</SessionToken><Expiration>{expiration}</Expiration></Credentials>",
                random_string(16, UPPER),
                xml_escape(&session_name),
                xml_escape(&assumed_role_arn),
                xml_escape(&secret),
                xml_escape(&token),
            );
            (200, sts_ok("AssumeRole", &result))
        }
        other => (400, sts_error(400, "InvalidAction", &format!("Could not find operation {other}"))),
    }
}

fn account_of(arn: &str) -> String {
    arn.split(':').nth(4).unwrap_or_default().to_owned()
}

// ---- CloudTrail (awsJson1.1) ----

fn json_error(status: u16, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({"__type": error_type, "message": message}).to_string();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "application/x-amz-json-1.1"), ("x-amzn-errortype", error_type)],
        body,
    )
        .into_response()
}

fn cloudtrail(standin: &Standin, headers: &HeaderMap, target: &str, body: &[u8]) -> Response {
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
    let (allowed, caller_arn, role_arn) = match &who {
        Caller::Identity(i) => (false, i.arn.clone(), i.arn.clone()),
        Caller::Session(s) => (
            inner.roles.get(&s.role_arn).is_some_and(|r| r.allow_lookup_events),
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
    let region = region_of(headers).unwrap_or_else(|| "us-east-1".to_owned());
    let key = (account, region);

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
