//! Environments: renaming or deleting one that connections' rules name would silently unlink
//! their new events, so it is refused, naming the connections.

use domain::{Connection, Environment, EnvironmentPatch, EnvironmentRef, EnvironmentSlug, Invalid, PageRequest};
use uuid::Uuid;

use crate::{App, AppError, AppResult, Refusal};

impl App {
    pub async fn update_environment(
        &self,
        org_id: Uuid,
        env: &str,
        patch: &EnvironmentPatch,
    ) -> AppResult<Environment> {
        let existing = self.stored_environment(org_id, env).await?;
        if patch.slug.as_ref().is_some_and(|slug| *slug != existing.slug) {
            self.refuse_if_named(&existing, "renamed").await?;
        }
        let updated = self.store.update_environment(org_id, existing.id, patch).await?;
        self.lookups.forget_environment(existing.id);
        updated.ok_or(AppError::NotFound("environment"))
    }

    pub async fn delete_environment(&self, org_id: Uuid, env: &str) -> AppResult<()> {
        let existing = self.stored_environment(org_id, env).await?;
        self.refuse_if_named(&existing, "deleted").await?;
        let deleted = self.store.delete_environment(org_id, existing.id).await?;
        self.lookups.forget_environment(existing.id);
        match deleted {
            true => Ok(()),
            false => Err(AppError::NotFound("environment")),
        }
    }

    /// Every environment named (each with the field that names it) must exist in the
    /// organisation: all checked in one query, each missing one reported on its field.
    pub(crate) async fn require_environments(
        &self,
        org_id: Uuid,
        named: &[(String, EnvironmentSlug)],
    ) -> AppResult<()> {
        let refs: Vec<EnvironmentRef> = named.iter().map(|(_, slug)| EnvironmentRef::Slug(slug.clone())).collect();
        let found = self.store.find_environments(org_id, &refs).await?;
        let mut errors = Invalid::default();
        for (field, slug) in named.iter().filter(|(_, slug)| !found.iter().any(|e| &e.slug == slug)) {
            errors.push(field, format!("no environment '{slug}' in your organisation; create it first"));
        }
        Ok(errors.into_result()?)
    }

    async fn refuse_if_named(&self, env: &Environment, what: &str) -> AppResult<()> {
        let users = self.connections_naming(env).await?;
        if users.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = users.iter().map(|c| format!("{:?} ({})", c.settings.name, c.id)).collect();
        Err(AppError::refused(
            Refusal::Conflict,
            "environment_in_use",
            format!(
                "environment {} cannot be {what}: the rules or default environment of connection(s) {} name it; \
                 change those first",
                env.slug,
                names.join(", ")
            ),
        ))
    }

    /// The organisation's connections whose rules or default environment name `env`.
    async fn connections_naming(&self, env: &Environment) -> AppResult<Vec<Connection>> {
        let mut found = Vec::new();
        let mut page = PageRequest { limit: domain::page::MAX_LIMIT, after: None };
        loop {
            let connections = self.store.list_connections(env.org_id, page).await?;
            found.extend(
                connections
                    .items
                    .iter()
                    .filter(|c| Connection::referenced_environments(&c.settings).iter().any(|(_, s)| *s == env.slug))
                    .cloned(),
            );
            match (connections.next_cursor, connections.items.last()) {
                (Some(_), Some(last)) => page.after = Some(last.id),
                _ => return Ok(found),
            }
        }
    }
}
