//! A local stand-in for the parts of AWS changetrail uses, speaking their real wire protocols so
//! that the real SDK clients can be pointed at it with `AWS_ENDPOINT_URL`:
//!
//! - STS `AssumeRole` and `GetCallerIdentity` (awsQuery: a form POST, XML answers, XML errors);
//! - CloudTrail `LookupEvents` (awsJson1.1: `X-Amz-Target`, JSON errors with `__type`);
//! - Organizations `ListAccounts` (awsJson1.1, paged by `NextToken`, 20 accounts a page at most).
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
use axum::response::Response;
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
    /// A loose condition instead: `StringLike sts:ExternalId` with this pattern (`*` matches
    /// any text), so any external ID that matches is admitted. Used when `required_external_id`
    /// is `None`.
    #[serde(default)]
    pub external_id_like: Option<String>,
    /// Regions where LookupEvents is denied all the same (a service control policy).
    #[serde(default)]
    pub lookup_denied_regions: Vec<String>,
    /// Makes GetCallerIdentity report sessions of this role as another ARN.
    #[serde(default)]
    pub reports_session_as: Option<String>,
    /// The role's `MaxSessionDuration` in seconds (AWS's default, 3,600, when `None`): a longer
    /// `DurationSeconds` is refused, as AWS refuses it.
    #[serde(default)]
    pub max_session_duration: Option<u32>,
    /// Whether the permissions policy allows `organizations:ListAccounts` (which also needs the
    /// role to be in the organisation's management account).
    #[serde(default)]
    pub allow_list_accounts: bool,
}

impl RoleSpec {
    /// A role as changetrail's setup creates it: trusting `trusted_principal`, requiring
    /// `required_external_id` (`None`: the condition is missing), allowed LookupEvents, nothing
    /// else. Tests change what they need with struct update syntax.
    pub fn reader(
        arn: impl Into<String>,
        trusted_principal: impl Into<String>,
        required_external_id: Option<String>,
    ) -> RoleSpec {
        RoleSpec {
            arn: arn.into(),
            trusted_principal: trusted_principal.into(),
            required_external_id,
            allow_lookup_events: true,
            external_id_like: None,
            lookup_denied_regions: Vec::new(),
            reports_session_as: None,
            max_session_duration: None,
            allow_list_accounts: false,
        }
    }
}

/// An account of the stand-in's AWS Organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandinAccount {
    pub id: String,
    pub name: String,
    /// `ACTIVE`, `SUSPENDED` or `PENDING_CLOSURE`.
    pub status: String,
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
    /// This many of the next LookupEvents calls are throttled, whatever the rate.
    throttle_next: u32,
    throttled: u64,
    lookups_served: u64,
    /// Long-lived identities (by access key) whose policies allow LookupEvents in their own
    /// account.
    identity_lookups: std::collections::HashSet<String>,
    /// The organisation: its management account and its accounts, in the order listed.
    organization: Option<(String, Vec<StandinAccount>)>,
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

    /// Lets a long-lived identity call LookupEvents in its own account.
    pub fn allow_identity_lookups(&self, access_key_id: &str) {
        self.inner.lock().unwrap().identity_lookups.insert(access_key_id.to_owned());
    }

    /// Makes `management_account` the management account of an organisation of `accounts`.
    pub fn set_organization(&self, management_account: &str, accounts: Vec<StandinAccount>) {
        self.inner.lock().unwrap().organization = Some((management_account.to_owned(), accounts));
    }

    /// Adds an account to the organisation, or changes the status of one already in it.
    pub fn put_organization_account(&self, account: StandinAccount) {
        let mut inner = self.inner.lock().unwrap();
        let Some((_, accounts)) = inner.organization.as_mut() else { return };
        match accounts.iter_mut().find(|a| a.id == account.id) {
            Some(existing) => *existing = account,
            None => accounts.push(account),
        }
    }

    /// Removes an account from the organisation (it left).
    pub fn remove_organization_account(&self, account_id: &str) {
        let mut inner = self.inner.lock().unwrap();
        if let Some((_, accounts)) = inner.organization.as_mut() {
            accounts.retain(|a| a.id != account_id);
        }
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

    /// Throttles the next `calls` LookupEvents calls, as AWS does when others use the budget.
    pub fn throttle_next(&self, calls: u32) {
        self.inner.lock().unwrap().throttle_next = calls;
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
        Some(target) if target.starts_with("AWSOrganizationsV20161128.") => {
            organizations::organizations(&standin, &headers, target, &body)
        }
        Some(target) => cloudtrail::cloudtrail(&standin, &headers, target, &body),
        None => sts::sts(&standin, &headers, &body),
    }
}
mod cloudtrail;
mod organizations;
mod sts;

pub use cloudtrail::StandinEvent;
