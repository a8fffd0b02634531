//! One module per resource, each exporting its router with its OpenAPI paths.

pub mod alerts;
pub mod audit_events;
pub mod batch;
pub mod changes;
pub mod channels;
pub mod connections;
pub mod deploys;
pub mod environments;
pub mod events;
pub mod health;
pub mod hooks;
pub mod push;
pub mod rules;
pub mod sources;
pub mod timeline;
pub mod tokens;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// `limit` and `cursor`, shared by every list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items per page, 1–500 (default 50).
    #[serde(default, deserialize_with = "domain::validation::query_value")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    pub fn page(&self) -> Result<domain::PageRequest, ApiError> {
        domain::PageRequest::parse(self.limit, self.cursor.as_deref()).map_err(|e| match e {
            domain::page::PageError::Limit => ApiError::invalid_field("limit", e.to_string()),
            domain::page::PageError::Cursor => ApiError::bad_request("invalid_cursor", e.to_string()),
        })
    }
}

/// A page of a list: follow `next_cursor` until it is null to see every item exactly once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> ListResponse<T> {
    pub fn from_page<U>(page: domain::Page<U>, f: impl FnMut(U) -> T) -> Self {
        let page = page.map(f);
        ListResponse { items: page.items, next_cursor: page.next_cursor }
    }
}

/// For PATCH bodies: tells an absent field (leave as is) from an explicit `null` (clear it).
pub fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// A UUID in a path. Something that is not a UUID cannot name a resource, so it is "not found".
pub fn path_id(value: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(value).map_err(|_| ApiError::not_found(what))
}
