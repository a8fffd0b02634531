//! AWS CloudTrail connections: which account and regions to import, under which generated
//! external ID, and how imported events map to environments.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::aws::{partition_of_region, ExternalId, RoleArn};
use crate::environment::EnvironmentSlug;
use crate::validation::{self, Invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Created; waiting for an admin to create the role and register its ARN.
    PendingRole,
    /// The role is registered and validated; its regions are imported.
    Active,
    /// The registered role stopped working; `last_error` says why.
    Error,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::PendingRole => "pending_role",
            ConnectionStatus::Active => "active",
            ConnectionStatus::Error => "error",
        }
    }

    pub fn from_stored(s: &str) -> ConnectionStatus {
        match s {
            "active" => ConnectionStatus::Active,
            "error" => ConnectionStatus::Error,
            _ => ConnectionStatus::PendingRole,
        }
    }
}

/// What a connection reaches: one account, or an AWS Organization's accounts through members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// One account, imported through its role (or changetrail's own identity).
    Account,
    /// A role in an organisation's management (or delegated administrator) account that may
    /// list its accounts. It imports nothing itself: discovery keeps one member per account.
    Organization,
    /// One account of an organisation connection, created and kept by discovery.
    Member,
}

impl ConnectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::Account => "account",
            ConnectionKind::Organization => "organization",
            ConnectionKind::Member => "member",
        }
    }

    pub fn from_stored(s: &str) -> ConnectionKind {
        match s {
            "organization" => ConnectionKind::Organization,
            "member" => ConnectionKind::Member,
            _ => ConnectionKind::Account,
        }
    }
}

/// Whose credentials read the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// AssumeRole on the registered role (or chain) with the external ID.
    Role,
    /// changetrail's own AWS identity (aws-config's chain), no AssumeRole: the account it
    /// belongs to. Only where the operator allows it.
    Service,
}

/// A member account as AWS Organizations last listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAccount {
    pub name: String,
    /// AWS's `Status` (`ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`), or `LEFT` once the account is
    /// no longer listed.
    pub status: String,
}

/// The account status of a member that is no longer in its organisation.
pub const MEMBER_LEFT: &str = "LEFT";

/// The default name of the role StackSets create in every member account.
pub const DEFAULT_MEMBER_ROLE_NAME: &str = "changetrail-reader";

/// A role name (the part after `role/`), as IAM allows it.
pub fn parse_member_role_name(name: &str) -> Result<String, Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Invalid::one(
            "member_role_name",
            "must be an IAM role name: 1-64 letters, digits and +=,.@_- (the role the StackSet creates in each member account)",
        ))
    }
}

/// Links imported events to an environment when every condition given matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentRule {
    pub environment: EnvironmentSlug,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_sources: Option<Vec<String>>,
    /// A glob over resource names and ARNs, e.g. `arn:aws:ecs:*:*:service/prod-*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_pattern: Option<String>,
    /// A glob over the actor (user, role session), e.g. `deploy-bot*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_pattern: Option<String>,
}

/// Why a connection's role does not work, as shown to an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionProblem {
    pub code: String,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: Uuid,
    pub org_id: Uuid,
    /// What an admin chose; the rest of a connection is generated or found by validation.
    pub settings: ConnectionSettings,
    pub external_id: ExternalId,
    pub status: ConnectionStatus,
    pub role_arn: Option<String>,
    /// The roles assumed in turn before `role_arn`, first to last (empty: none).
    pub role_via: Vec<String>,
    pub account_id: Option<String>,
    pub assumed_role_arn: Option<String>,
    pub validated_at: Option<OffsetDateTime>,
    pub last_error: Option<ConnectionProblem>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Counts the changes of what links its events (rules, default environment): a page
    /// linked under an older count is refused, so no import stores links the rules no longer make.
    pub links_version: i64,
    /// The EventBridge push secret's hash, once an admin created one (the secret itself is shown
    /// once and never stored).
    pub push_secret: Option<crate::token::TokenHash>,
    pub push_secret_created_at: Option<OffsetDateTime>,
    /// Events its `event_filter` dropped, on import and push.
    pub events_excluded: i64,
    pub kind: ConnectionKind,
    /// Of a member: its organisation connection.
    pub parent_id: Option<Uuid>,
    /// Of an organisation connection: the role's name in each member account.
    pub member_role_name: Option<String>,
    /// Of a member: its account as AWS Organizations last listed it.
    pub member_account: Option<MemberAccount>,
    /// Of a member: its settings were changed on it, so the parent's no longer replace them.
    pub settings_overridden: bool,
    pub credentials: CredentialSource,
    /// Of an organisation connection: when its accounts were last listed, and why the last
    /// listing failed.
    pub discovered_at: Option<OffsetDateTime>,
    pub discovery_error: Option<String>,
}

pub const DEFAULT_LOOKBACK_DAYS: u16 = 7;
/// AssumeRole's default and bounds for `DurationSeconds`.
pub const DEFAULT_SESSION_SECONDS: u32 = 3600;
pub const MIN_SESSION_SECONDS: u32 = 900;
pub const MAX_SESSION_SECONDS: u32 = 43_200;
/// LookupEvents keeps 90 days.
pub const MAX_LOOKBACK_DAYS: u16 = 90;
pub const MAX_RULES: usize = 100;
/// The longest role chain, as Brinqa allows.
pub const MAX_CHAIN_HOPS: usize = 5;

/// A role chain as an admin gives it (`role_chain`), each ARN checked: 1–5 roles, none twice.
/// The last is the role whose account is imported.
pub fn parse_role_chain(chain: &[String]) -> Result<Vec<RoleArn>, Invalid> {
    let mut errors = Invalid::default();
    if chain.is_empty() || chain.len() > MAX_CHAIN_HOPS {
        errors.push("role_chain", format!("give 1 to {MAX_CHAIN_HOPS} role ARNs, assumed in turn"));
    }
    let mut roles: Vec<RoleArn> = Vec::new();
    for (i, arn) in chain.iter().enumerate() {
        match RoleArn::parse(&format!("role_chain[{i}]"), arn) {
            Ok(role) if roles.iter().any(|r| r.to_string() == role.to_string()) => {
                errors.push(format!("role_chain[{i}]"), "is already in the chain");
            }
            Ok(role) => roles.push(role),
            Err(e) => errors.0.extend(e.0),
        }
    }
    errors.into_result().map(|()| roles)
}

/// The settings an admin chooses, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub name: String,
    pub regions: Vec<String>,
    pub default_environment: Option<EnvironmentSlug>,
    pub environment_rules: Vec<EnvironmentRule>,
    pub lookback_days: u16,
    pub include_read_only: bool,
    /// A disabled connection keeps its role and progress but is not imported.
    pub enabled: bool,
    /// Which events are kept, on import and push alike.
    pub event_filter: crate::noise::EventFilter,
    /// How long the role's sessions last (`DurationSeconds`), 900–43,200: the role's
    /// `MaxSessionDuration` must allow it.
    pub session_duration_seconds: u32,
}

pub fn parse_name(name: &str) -> Result<String, Invalid> {
    validation::text("name", name, 200)
}

/// At least one region, each known, no duplicates (order kept).
pub fn parse_regions(regions: &[String]) -> Result<Vec<String>, Invalid> {
    let mut errors = Invalid::default();
    if regions.is_empty() {
        errors.push("regions", "give at least one region, e.g. [\"us-east-1\"] (IAM events are recorded there)");
    }
    let mut seen = Vec::new();
    for (i, region) in regions.iter().enumerate() {
        if partition_of_region(region).is_none() {
            errors.push(format!("regions[{i}]"), format!("{region:?} is not a known AWS region"));
        } else if seen.contains(region) {
            errors.push(format!("regions[{i}]"), format!("{region:?} is listed twice"));
        } else {
            seen.push(region.clone());
        }
    }
    errors.into_result().map(|()| seen)
}

pub fn parse_lookback_days(days: Option<i64>) -> Result<u16, Invalid> {
    match days {
        None => Ok(DEFAULT_LOOKBACK_DAYS),
        Some(d) if (1..=MAX_LOOKBACK_DAYS as i64).contains(&d) => Ok(d as u16),
        Some(_) => Err(Invalid::one(
            "lookback_days",
            format!("must be between 1 and {MAX_LOOKBACK_DAYS} (LookupEvents keeps 90 days)"),
        )),
    }
}

pub fn parse_session_duration(seconds: i64) -> Result<u32, Invalid> {
    let range = i64::from(MIN_SESSION_SECONDS)..=i64::from(MAX_SESSION_SECONDS);
    if range.contains(&seconds) {
        Ok(seconds as u32)
    } else {
        Err(Invalid::one(
            "session_duration",
            format!(
                "must be between {MIN_SESSION_SECONDS} and {MAX_SESSION_SECONDS} seconds (AssumeRole's bounds; the role's MaxSessionDuration must allow it)"
            ),
        ))
    }
}

/// Checks each rule's globs and region names; whether its environments exist is for the caller,
/// which can ask storage.
pub fn parse_rules(rules: Vec<EnvironmentRule>) -> Result<Vec<EnvironmentRule>, Invalid> {
    let mut errors = Invalid::default();
    if rules.len() > MAX_RULES {
        errors.push("environment_rules", format!("at most {MAX_RULES} rules"));
    }
    for (i, rule) in rules.iter().enumerate() {
        for (name, pattern) in [("resource_pattern", &rule.resource_pattern), ("actor_pattern", &rule.actor_pattern)] {
            if let Some(pattern) = pattern {
                if let Err(e) = globset::Glob::new(pattern) {
                    errors.push(
                        format!("environment_rules[{i}].{name}"),
                        format!("{pattern:?} is not a valid glob: {}", e.kind()),
                    );
                }
            }
        }
        for (j, region) in rule.regions.iter().flatten().enumerate() {
            if partition_of_region(region).is_none() {
                errors.push(
                    format!("environment_rules[{i}].regions[{j}]"),
                    format!("{region:?} is not a known AWS region"),
                );
            }
        }
        for (j, source) in rule.event_sources.iter().flatten().enumerate() {
            if source.is_empty() || source.len() > 256 || source.chars().any(char::is_whitespace) {
                errors.push(
                    format!("environment_rules[{i}].event_sources[{j}]"),
                    "must be an event source like ec2.amazonaws.com",
                );
            }
        }
    }
    errors.into_result().map(|()| rules)
}

/// An account as AWS Organizations' ListAccounts lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationAccount {
    pub id: String,
    pub name: String,
    /// `ACTIVE`, `SUSPENDED` or `PENDING_CLOSURE`.
    pub status: String,
}

/// A member connection as discovery creates it: the parent's settings under the account's
/// name, and the external ID the StackSet's trust policy requires in that account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    pub account: OrganizationAccount,
    pub settings: ConnectionSettings,
    pub external_id: ExternalId,
    pub role_arn: String,
}

impl NewMember {
    pub fn of(parent: &Connection, account: &OrganizationAccount) -> NewMember {
        let role_name = parent.member_role_name.as_deref().unwrap_or(DEFAULT_MEMBER_ROLE_NAME);
        let partition = parent.role_arn.as_deref().and_then(|arn| arn.split(':').nth(1)).unwrap_or("aws");
        let name: String = format!("{} ({})", account.name, account.id).chars().take(200).collect();
        NewMember {
            account: account.clone(),
            settings: ConnectionSettings { name, ..parent.settings.clone() },
            external_id: parent.external_id.for_member(&account.id),
            role_arn: format!("arn:{partition}:iam::{}:role/{role_name}", account.id),
        }
    }
}

impl Connection {
    /// The roles assumed in turn to reach this connection's account, its registered role last;
    /// empty without a role (`credentials: service`, or none registered yet).
    pub fn role_chain(&self) -> Result<Vec<RoleArn>, Invalid> {
        self.role_via.iter().chain(self.role_arn.iter()).map(|arn| RoleArn::parse("role_arn", arn)).collect()
    }

    /// The environments the rules and default name, for checking that they exist.
    pub fn referenced_environments(settings: &ConnectionSettings) -> Vec<(String, EnvironmentSlug)> {
        let mut refs: Vec<(String, EnvironmentSlug)> =
            settings.default_environment.iter().map(|slug| ("default_environment".to_owned(), slug.clone())).collect();
        for (i, rule) in settings.environment_rules.iter().enumerate() {
            refs.push((format!("environment_rules[{i}].environment"), rule.environment.clone()));
        }
        refs
    }
}

/// Regions of a role must be in its partition: an aws-cn role cannot read us-east-1.
pub fn check_regions_in_partition(role: &RoleArn, regions: &[String]) -> Result<(), Invalid> {
    let mut errors = Invalid::default();
    for (i, region) in regions.iter().enumerate() {
        if partition_of_region(region) != Some(role.partition.as_str()) {
            errors.push(format!("regions[{i}]"), format!("{region} is not in the role's partition {}", role.partition));
        }
    }
    errors.into_result()
}

/// A role that passed validation, as it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredRole {
    /// `None` for changetrail's own identity (`credentials: service`).
    pub role_arn: Option<String>,
    /// The roles assumed in turn before `role_arn` (a role chain); empty when changetrail
    /// assumes `role_arn` itself.
    pub via: Vec<String>,
    pub account_id: String,
    pub assumed_role_arn: String,
    pub validated_at: OffsetDateTime,
    pub credentials: CredentialSource,
}

/// Settings as an admin writes them, before validation: what is `None` stays as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsPatch {
    pub name: Option<String>,
    pub regions: Option<Vec<String>>,
    /// `Some(None)` removes the default environment.
    pub default_environment: Option<Option<String>>,
    /// Each rule as it came, so a malformed one is reported with its index.
    pub environment_rules: Option<Vec<serde_json::Value>>,
    pub lookback_days: Option<i64>,
    pub include_read_only: Option<bool>,
    pub enabled: Option<bool>,
    /// The filter as it came, replacing the old one whole.
    pub event_filter: Option<serde_json::Value>,
    pub session_duration: Option<i64>,
    /// The admin tried to set the external ID, which is always an error.
    pub external_id_given: bool,
}

pub const IMMUTABLE_EXTERNAL_ID: &str = "is generated by changetrail and can never be set or changed";

impl ConnectionSettings {
    /// What a new connection starts from, before the admin's settings apply.
    pub fn new_connection() -> ConnectionSettings {
        ConnectionSettings {
            name: String::new(),
            regions: Vec::new(),
            default_environment: None,
            environment_rules: Vec::new(),
            lookback_days: DEFAULT_LOOKBACK_DAYS,
            include_read_only: false,
            enabled: true,
            event_filter: crate::noise::EventFilter::default(),
            session_duration_seconds: DEFAULT_SESSION_SECONDS,
        }
    }

    /// These settings with `patch` applied, every problem reported at once. Whether the
    /// environments it names exist is for the caller, which can ask storage.
    pub fn apply(&self, patch: SettingsPatch) -> Result<ConnectionSettings, Invalid> {
        let mut errors = Invalid::default();
        let mut settings = self.clone();
        if patch.external_id_given {
            errors.push("external_id", IMMUTABLE_EXTERNAL_ID);
        }
        if let Some(name) = patch.name.as_deref() {
            settings.name = errors.check(parse_name(name)).unwrap_or_default();
        }
        if let Some(regions) = patch.regions.as_deref() {
            settings.regions = errors.check(parse_regions(regions)).unwrap_or_default();
        }
        if let Some(default) = patch.default_environment {
            settings.default_environment = match default {
                None => None,
                Some(slug) => errors.check(EnvironmentSlug::parse("default_environment", &slug)),
            };
        }
        if let Some(rules) = patch.environment_rules {
            let mut parsed = Vec::new();
            for (i, rule) in rules.into_iter().enumerate() {
                match serde_json::from_value::<EnvironmentRule>(rule) {
                    Ok(rule) => parsed.push(rule),
                    Err(e) => errors.push(format!("environment_rules[{i}]"), e.to_string()),
                }
            }
            settings.environment_rules = errors.check(parse_rules(parsed)).unwrap_or_default();
        }
        if patch.lookback_days.is_some() {
            settings.lookback_days = errors.check(parse_lookback_days(patch.lookback_days)).unwrap_or_default();
        }
        if let Some(filter) = patch.event_filter {
            settings.event_filter = errors.check(crate::noise::EventFilter::parse(filter)).unwrap_or_default();
        }
        if let Some(seconds) = patch.session_duration {
            settings.session_duration_seconds = errors.check(parse_session_duration(seconds)).unwrap_or_default();
        }
        settings.include_read_only = patch.include_read_only.unwrap_or(settings.include_read_only);
        settings.enabled = patch.enabled.unwrap_or(settings.enabled);
        errors.into_result().map(|()| settings)
    }

    /// Whether events must be linked again: the rules or the default environment changed.
    pub fn links_differ(&self, other: &ConnectionSettings) -> bool {
        self.environment_rules != other.environment_rules || self.default_environment != other.default_environment
    }
}
