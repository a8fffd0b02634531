//! The one posting path every source uses: validate → resolve environments in one query →
//! store → hand the stored item to whatever reacts to new items.

use domain::posted::Posted;
use domain::timeline::TimelineItem;
use domain::{EnvironmentRef, Invalid, StoreError};
use uuid::Uuid;

use crate::{App, AppError, AppResult};

/// A stored item, as the reactions to new items receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub org_id: Uuid,
    pub item: TimelineItem,
    /// False when the item updated one with the same (source, external id).
    pub created: bool,
}

impl App {
    /// Stores a posted item: new, or an update of the one with the same (source, key).
    pub async fn post(&self, org_id: Uuid, mut posted: Posted) -> AppResult<NewItem> {
        let refs: Vec<EnvironmentRef> = posted.environments.iter().cloned().map(EnvironmentRef::Slug).collect();
        let found = self.store.find_environments(org_id, &refs).await?;
        let mut errors = Invalid::default();
        for slug in &posted.environments {
            match found.iter().find(|e| &e.slug == slug) {
                Some(env) => posted.event.environment_ids.push(env.id),
                None => errors.push("environments", format!("no environment '{slug}' in your organisation")),
            }
        }
        errors.into_result()?;
        let (id, created) = self.store.upsert_event(org_id, &posted.event).await?;
        let stored = self
            .store
            .get_event(org_id, id)
            .await?
            .ok_or(AppError::Store(StoreError::Backend("a stored item vanished".into())))?;
        let new = NewItem { org_id, item: stored.item, created };
        // No receiver is fine: nothing reacts yet.
        let _ = self.new_items.send(new.clone());
        Ok(new)
    }
}
