//! The storage trait. Each backend (SQLite, PostgreSQL) implements it in the storage crate, and
//! one conformance suite holds both to the same behaviour.

use async_trait::async_trait;
use uuid::Uuid;

use crate::environment::{Environment, EnvironmentPatch, EnvironmentRef, NewEnvironment};
use crate::organization::Organization;
use crate::page::{Page, PageRequest};
use crate::token::{ApiToken, Scopes, TokenHash};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the string names what already exists.
    #[error("{0}")]
    Conflict(String),
    #[error("storage failed: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Every method that touches tenant data takes the caller's organisation and never returns rows
/// of another: "not found" is the answer for both a missing row and someone else's.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Readiness: the database answers and the migrations are applied.
    async fn ping(&self) -> StoreResult<()>;

    async fn create_organization(&self, name: &str) -> StoreResult<Organization>;
    async fn organization_exists(&self) -> StoreResult<bool>;
    async fn get_organization(&self, org_id: Uuid) -> StoreResult<Option<Organization>>;

    async fn create_token(
        &self,
        org_id: Uuid,
        name: &str,
        scopes: &Scopes,
        prefix: &str,
        hash: &TokenHash,
    ) -> StoreResult<ApiToken>;
    /// The token whose secret hashes to `hash`, across all organisations: this is how a request
    /// finds out which organisation it acts for.
    async fn find_token(&self, hash: &TokenHash) -> StoreResult<Option<ApiToken>>;
    async fn list_tokens(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<ApiToken>>;
    async fn delete_token(&self, org_id: Uuid, token_id: Uuid) -> StoreResult<bool>;

    async fn create_environment(&self, org_id: Uuid, env: &NewEnvironment) -> StoreResult<Environment>;
    async fn list_environments(&self, org_id: Uuid, page: PageRequest) -> StoreResult<Page<Environment>>;
    async fn get_environment(&self, org_id: Uuid, env: &EnvironmentRef) -> StoreResult<Option<Environment>>;
    async fn update_environment(
        &self,
        org_id: Uuid,
        env_id: Uuid,
        patch: &EnvironmentPatch,
    ) -> StoreResult<Option<Environment>>;
    async fn delete_environment(&self, org_id: Uuid, env_id: Uuid) -> StoreResult<bool>;
}
