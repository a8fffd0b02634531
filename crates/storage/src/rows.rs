//! Rows as both backends return them, and their conversion into domain types.

use domain::time_util::from_micros;
use domain::token::TokenHash;
use domain::{ApiToken, Environment, EnvironmentSlug, Organization, Scopes, StoreError};
use uuid::Uuid;

#[derive(sqlx::FromRow)]
pub struct OrganizationRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: i64,
}

impl From<OrganizationRow> for Organization {
    fn from(r: OrganizationRow) -> Self {
        Organization { id: r.id, name: r.name, created_at: from_micros(r.created_at) }
    }
}

#[derive(sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub scopes: String,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
}

/// A stored SHA-256; a value of another length (never written) reads as none.
fn token_hash(bytes: &[u8]) -> Option<TokenHash> {
    bytes.try_into().ok().map(TokenHash)
}

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> Self {
        // A stored hash of the wrong length matches no secret: all zeros is nobody's SHA-256.
        let hash = token_hash(&r.secret_hash).unwrap_or(TokenHash([0u8; 32]));
        ApiToken {
            id: r.id,
            org_id: r.org_id,
            name: r.name,
            scopes: Scopes::from_stored(&r.scopes),
            prefix: r.prefix,
            created_at: from_micros(r.created_at),
            secret_hash: hash,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct EnvironmentRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<EnvironmentRow> for Environment {
    type Error = StoreError;

    fn try_from(r: EnvironmentRow) -> Result<Self, StoreError> {
        let slug = EnvironmentSlug::parse("slug", &r.slug)
            .map_err(|e| StoreError::Backend(format!("stored environment {} has an invalid slug: {e}", r.id)))?;
        Ok(Environment {
            id: r.id,
            org_id: r.org_id,
            slug,
            name: r.name,
            description: r.description,
            created_at: from_micros(r.created_at),
            updated_at: from_micros(r.updated_at),
        })
    }
}

/// Maps a database error to the store's: a broken uniqueness rule becomes a conflict naming
/// `what`, anything else a backend failure with its cause.
pub fn db_error(what: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| match e.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Conflict(what.to_owned()),
        _ => StoreError::Backend(e.to_string()),
    }
}

pub fn backend(e: sqlx::Error) -> StoreError {
    // 57014 is PostgreSQL's query_canceled (statement_timeout); 9 is SQLITE_INTERRUPT (the
    // progress handler's deadline).
    let stopped = matches!(&e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("57014") | Some("9")));
    if stopped {
        return StoreError::TimedOut;
    }
    StoreError::Backend(e.to_string())
}

#[derive(sqlx::FromRow)]
pub struct ConnectionRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub regions: sqlx::types::Json<Vec<String>>,
    pub default_environment: Option<String>,
    pub environment_rules: sqlx::types::Json<Vec<domain::EnvironmentRule>>,
    pub lookback_days: i32,
    pub include_read_only: bool,
    pub enabled: bool,
    pub external_id: String,
    pub status: String,
    pub role_arn: Option<String>,
    pub account_id: Option<String>,
    pub assumed_role_arn: Option<String>,
    pub validated_at: Option<i64>,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
    pub last_error_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub links_version: i64,
    pub push_secret_hash: Option<Vec<u8>>,
    pub push_secret_created_at: Option<i64>,
    pub event_filter: sqlx::types::Json<domain::noise::EventFilter>,
    pub events_excluded: i64,
    pub session_duration_seconds: i32,
    pub role_via: sqlx::types::Json<Vec<String>>,
    pub kind: String,
    pub parent_id: Option<Uuid>,
    pub member_role_name: Option<String>,
    pub member_account_name: Option<String>,
    pub member_account_status: Option<String>,
    pub settings_overridden: bool,
    pub credentials: String,
    pub discovered_at: Option<i64>,
    pub discovery_error: Option<String>,
}

pub const CONNECTION_COLUMNS: &str =
    "id, org_id, name, regions, default_environment, environment_rules, lookback_days, \
     include_read_only, enabled, external_id, status, role_arn, account_id, assumed_role_arn, validated_at, \
     last_error_code, last_error_message, last_error_at, created_at, updated_at, links_version, \
     push_secret_hash, push_secret_created_at, event_filter, events_excluded, session_duration_seconds, role_via, \
     kind, parent_id, member_role_name, member_account_name, member_account_status, settings_overridden, \
     credentials, discovered_at, discovery_error";

impl TryFrom<ConnectionRow> for domain::Connection {
    type Error = StoreError;

    fn try_from(r: ConnectionRow) -> Result<Self, StoreError> {
        let default_environment =
            r.default_environment.map(|s| EnvironmentSlug::parse("default_environment", &s)).transpose().map_err(
                |e| StoreError::Backend(format!("stored connection {} has an invalid default environment: {e}", r.id)),
            )?;
        let last_error = match (r.last_error_code, r.last_error_message, r.last_error_at) {
            (Some(code), Some(message), Some(at)) => {
                Some(domain::connection::ConnectionProblem { code, message, at: from_micros(at) })
            }
            _ => None,
        };
        Ok(domain::Connection {
            id: r.id,
            org_id: r.org_id,
            settings: domain::ConnectionSettings {
                name: r.name,
                regions: r.regions.0,
                default_environment,
                environment_rules: r.environment_rules.0,
                lookback_days: r.lookback_days.clamp(1, 90) as u16,
                include_read_only: r.include_read_only,
                enabled: r.enabled,
                event_filter: r.event_filter.0,
                session_duration_seconds: r.session_duration_seconds.clamp(900, 43_200) as u32,
            },
            external_id: domain::ExternalId::from_stored(r.external_id),
            status: domain::ConnectionStatus::from_stored(&r.status),
            role_arn: r.role_arn,
            role_via: r.role_via.0,
            account_id: r.account_id,
            assumed_role_arn: r.assumed_role_arn,
            validated_at: r.validated_at.map(from_micros),
            last_error,
            created_at: from_micros(r.created_at),
            updated_at: from_micros(r.updated_at),
            links_version: r.links_version,
            push_secret: r.push_secret_hash.as_deref().and_then(token_hash),
            push_secret_created_at: r.push_secret_created_at.map(from_micros),
            events_excluded: r.events_excluded,
            kind: domain::connection::ConnectionKind::from_stored(&r.kind),
            parent_id: r.parent_id,
            member_role_name: r.member_role_name,
            member_account: r.member_account_name.map(|name| domain::connection::MemberAccount {
                name,
                status: r.member_account_status.unwrap_or_default(),
            }),
            settings_overridden: r.settings_overridden,
            credentials: match r.credentials.as_str() {
                "service" => domain::connection::CredentialSource::Service,
                _ => domain::connection::CredentialSource::Role,
            },
            discovered_at: r.discovered_at.map(from_micros),
            discovery_error: r.discovery_error,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct ImportJobRow {
    pub connection_id: Uuid,
    pub region: String,
    pub org_id: Uuid,
    pub account_id: String,
    pub next_run_at: i64,
    pub leased_until: Option<i64>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub scanned_until: i64,
    pub window_start: Option<i64>,
    pub window_end: Option<i64>,
    pub next_token: Option<String>,
    pub last_run_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub events_imported: i64,
    pub events_flagged: i64,
}

pub const IMPORT_JOB_COLUMNS: &str =
    "j.connection_id, j.region, j.org_id, j.account_id, j.next_run_at, j.leased_until, \
     j.attempts, j.last_error, j.scanned_until, j.window_start, j.window_end, j.next_token, j.last_run_at, \
     j.last_success_at, j.events_imported, j.events_flagged";

impl From<ImportJobRow> for domain::import::ImportJob {
    fn from(r: ImportJobRow) -> Self {
        let walk = match (r.window_start, r.window_end) {
            (Some(start), Some(end)) => Some(domain::import::Walk {
                start: from_micros(start),
                end: from_micros(end),
                next_token: r.next_token,
            }),
            _ => None,
        };
        domain::import::ImportJob {
            connection_id: r.connection_id,
            region: r.region,
            org_id: r.org_id,
            account_id: r.account_id,
            next_run_at: from_micros(r.next_run_at),
            leased_until: r.leased_until.map(from_micros),
            attempts: r.attempts.max(0) as u32,
            last_error: r.last_error,
            scanned_until: from_micros(r.scanned_until),
            walk,
            last_run_at: r.last_run_at.map(from_micros),
            last_success_at: r.last_success_at.map(from_micros),
            events_imported: r.events_imported,
            events_flagged: r.events_flagged,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct TimelineRow {
    pub id: Uuid,
    pub kind: String,
    pub source: String,
    pub occurred_at: i64,
    pub title: String,
    pub actor: Option<String>,
    pub read_only: bool,
    pub resources: sqlx::types::Json<Vec<domain::event::Resource>>,
    pub labels: sqlx::types::Json<std::collections::BTreeMap<String, String>>,
    pub links: sqlx::types::Json<Vec<domain::event::Link>>,
    /// Read as text and parsed by `Details::from_stored`, once, into the type its kind has.
    pub details: sqlx::types::Json<Box<serde_json::value::RawValue>>,
    pub created_at: i64,
    pub ingested_via: String,
}

/// A timeline row with the slugs of its environments, as a page reads it.
#[derive(sqlx::FromRow)]
pub struct PageRow {
    #[sqlx(flatten)]
    pub item: TimelineRow,
    pub environments: sqlx::types::Json<Vec<String>>,
}

impl PageRow {
    pub fn into_item(self) -> domain::timeline::TimelineItem {
        self.item.into_item(self.environments.0)
    }
}

/// A timeline row with the original record, for one item in full.
#[derive(sqlx::FromRow)]
pub struct EventRow {
    #[sqlx(flatten)]
    pub item: TimelineRow,
    pub original: Option<sqlx::types::Json<serde_json::Value>>,
}

/// A stored kind; one this version does not know reads as `custom`.
pub fn stored_kind(kind: &str) -> domain::event::EventKind {
    domain::event::EventKind::parse(kind).unwrap_or(domain::event::EventKind::Custom)
}

impl TimelineRow {
    pub fn into_item(self, environments: Vec<String>) -> domain::timeline::TimelineItem {
        let kind = stored_kind(&self.kind);
        domain::timeline::TimelineItem {
            id: self.id,
            kind,
            source: self.source,
            occurred_at: from_micros(self.occurred_at),
            title: self.title,
            actor: self.actor,
            read_only: self.read_only,
            environments,
            resources: self.resources.0,
            labels: self.labels.0,
            links: self.links.0,
            details: domain::event::Details::from_stored(kind, self.details.0.get()),
            ingested_at: from_micros(self.created_at),
            ingested_via: domain::event::IngestPath::from_stored(&self.ingested_via),
        }
    }
}

/// `%value%` for LIKE, with LIKE's own wildcards in the value escaped (`ESCAPE '\'`).
pub fn like_pattern(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}
