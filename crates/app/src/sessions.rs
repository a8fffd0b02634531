//! Web view sessions: a pasted API token exchanged for a session, which acts as that token
//! until it is signed out, expires, or the token is deleted.

use domain::session::{SessionSecret, SESSION_LIFETIME};
use domain::token::TokenHash;
use domain::{ApiToken, Scope};

use crate::{App, AppError, AppResult, Refusal};

impl App {
    /// The token whose secret this is, compared in constant time once found by its hash.
    /// A token found in the last second is not looked up again (`lookups.rs`).
    pub async fn authenticate(&self, secret: &str) -> AppResult<Option<ApiToken>> {
        let hash = TokenHash::of(secret);
        if let Some(token) = self.lookups.token(&hash.0) {
            return Ok(Some(token));
        }
        let token = self.store.find_token(&hash).await?.filter(|token| token.secret_hash.matches(&hash.0));
        if let Some(token) = &token {
            self.lookups.remember_token(hash.0, token);
        }
        Ok(token)
    }

    /// Signs in with an API token: a new session of it.
    pub async fn sign_in(&self, token_secret: &str) -> AppResult<SessionSecret> {
        let token = self.authenticate(token_secret.trim()).await?.ok_or_else(|| {
            AppError::refused(
                Refusal::Unauthenticated,
                "invalid_token",
                "that is not a valid API token; it may have been deleted",
            )
        })?;
        if !token.scopes.allows(Scope::Read) {
            return Err(AppError::refused(
                Refusal::Forbidden,
                "forbidden",
                "this token cannot read the timeline; sign in with a token that has the read or admin scope",
            ));
        }
        let session = SessionSecret::generate();
        let expires_at = domain::time_util::now() + SESSION_LIFETIME;
        self.store.create_session(token.id, &session.hash(), expires_at).await?;
        Ok(session)
    }

    /// The token a live session acts as; `None` for an expired, signed-out or revoked one.
    pub async fn session(&self, session: &SessionSecret) -> AppResult<Option<ApiToken>> {
        Ok(self.store.find_session(&session.hash(), domain::time_util::now()).await?)
    }

    pub async fn sign_out(&self, session: &SessionSecret) -> AppResult<()> {
        Ok(self.store.delete_session(&session.hash()).await?)
    }
}
