//! What the posting routes (deploys, alerts, changes) share: one item through the application's
//! posting path, and batches where one bad item never costs the others.

use axum::http::StatusCode;
use domain::posted::Posted;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::timeline::TimelineItemView;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::Caller;
use crate::AppState;

pub const MAX_BATCH: usize = 500;

/// Stores a posted item: 201 when new, 200 when its `external_id` updated an existing one.
pub async fn store(state: &AppState, caller: &Caller, posted: Posted) -> ApiResult<(StatusCode, TimelineItemView)> {
    let stored = state.post(caller.org_id, posted).await?;
    Ok((if stored.created { StatusCode::CREATED } else { StatusCode::OK }, stored.item.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// 1–500 items, each an object shaped as the single POST's body. An item that is not an
    /// object fails the whole request (422); an object that is invalid fails only itself.
    #[schema(value_type = Vec<Object>, min_items = 1, max_items = 500)]
    pub items: Vec<Value>,
}

/// The outcome of one item of a batch.
#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    pub index: usize,
    /// 201 created, 200 updated, or the status of its problem.
    pub status: u16,
    pub item: Option<TimelineItemView>,
    pub problem: Option<Problem>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    pub created: usize,
    pub updated: usize,
    pub failed: usize,
    pub results: Vec<BatchResult>,
}

/// Runs `one` on every item; a failing item is reported in its place and the others go on.
pub async fn run<T, F, Fut>(batch: Batch, mut one: F) -> ApiResult<BatchResponse>
where
    T: DeserializeOwned,
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = ApiResult<(StatusCode, TimelineItemView)>>,
{
    if batch.items.is_empty() || batch.items.len() > MAX_BATCH {
        return Err(ApiError::invalid_field("items", format!("give 1 to {MAX_BATCH} items")));
    }
    // An item that is not an object is not an item of any kind: the request is malformed as a
    // whole (and serde would otherwise read an array as the struct's fields in order).
    if let Some(index) = batch.items.iter().position(|item| !item.is_object()) {
        return Err(ApiError::invalid_field(&format!("items[{index}]"), "must be an object"));
    }
    let mut response = BatchResponse { created: 0, updated: 0, failed: 0, results: Vec::new() };
    for (index, value) in batch.items.into_iter().enumerate() {
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let outcome = match crate::extract::parse_json::<T>(&bytes) {
            Ok(input) => one(input).await,
            Err(e) => Err(e),
        };
        let result = match outcome {
            Ok((status, item)) => {
                if status == StatusCode::CREATED {
                    response.created += 1;
                } else {
                    response.updated += 1;
                }
                BatchResult { index, status: status.as_u16(), item: Some(item), problem: None }
            }
            Err(e) => {
                response.failed += 1;
                BatchResult { index, status: e.status.as_u16(), item: None, problem: Some(e.to_problem()) }
            }
        };
        response.results.push(result);
    }
    Ok(response)
}
