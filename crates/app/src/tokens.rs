//! API tokens: created with their secret shown once, deleted but never the last admin token.

use domain::{ApiToken, Invalid, PageRequest, Scope, Scopes, TokenSecret};
use uuid::Uuid;

use crate::{App, AppError, AppResult, Refusal};

impl App {
    /// Deletes a token, but never the organisation's last admin token.
    pub async fn delete_token(&self, org_id: Uuid, token_id: Uuid) -> AppResult<()> {
        if self.store.delete_token(org_id, token_id).await? {
            self.lookups.forget_token(token_id);
            return Ok(());
        }
        let mut page = PageRequest { limit: domain::page::MAX_LIMIT, after: None };
        loop {
            let tokens = self.store.list_tokens(org_id, page).await?;
            if tokens.items.iter().any(|t| t.id == token_id) {
                return Err(AppError::refused(
                    Refusal::Conflict,
                    "last_admin_token",
                    "this is the organisation's last admin token; create another admin token before deleting it",
                ));
            }
            match (tokens.next_cursor, tokens.items.last()) {
                (Some(_), Some(last)) => page.after = Some(last.id),
                _ => return Err(AppError::NotFound("token")),
            }
        }
    }

    /// A new API token: its record, and its secret (shown once; only its hash is kept).
    pub async fn create_token(
        &self,
        org_id: Uuid,
        name: &str,
        scopes: &[String],
    ) -> AppResult<(ApiToken, TokenSecret)> {
        let mut errors = Invalid::default();
        let name = errors.check(domain::validation::text("name", name, 200));
        let mut parsed = Vec::new();
        for (i, s) in scopes.iter().enumerate().take(domain::token::MAX_SCOPES) {
            match Scope::parse(s) {
                Some(scope) => parsed.push(scope),
                None => errors.push(format!("scopes[{i}]"), format!("unknown scope {s:?}; use read, write or admin")),
            }
        }
        errors.check(domain::validation::at_most("scopes", scopes.len(), domain::token::MAX_SCOPES));
        let scopes = errors.check(Scopes::new(parsed));
        errors.into_result()?;
        let (name, scopes) = (name.unwrap_or_default(), scopes.unwrap_or_else(Scopes::admin));
        let secret = TokenSecret::generate();
        let token = self.store.create_token(org_id, &name, &scopes, &secret.display_prefix(), &secret.hash()).await?;
        Ok((token, secret))
    }
}
