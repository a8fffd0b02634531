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

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> Self {
        let mut hash = [0u8; 32];
        if r.secret_hash.len() == hash.len() {
            hash.copy_from_slice(&r.secret_hash);
        }
        ApiToken {
            id: r.id,
            org_id: r.org_id,
            name: r.name,
            scopes: Scopes::from_stored(&r.scopes),
            prefix: r.prefix,
            created_at: from_micros(r.created_at),
            secret_hash: TokenHash(hash),
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
    StoreError::Backend(e.to_string())
}
