//! What nearly every request looks up before its real work, remembered for a second: the token
//! a bearer secret names, and the environment a path names. A timeline read under load then
//! costs one query instead of three.
//!
//! Why a second is acceptable: a deleted token or environment is forgotten at once by the
//! process that deleted it, and by every other process within `FRESH_FOR` — the bound the
//! issue sets for this process, met by all of them without a notification channel to keep
//! running. Token scopes never change after creation, so a remembered token is never more
//! powerful than the stored one. Only hits are remembered: a stream of wrong secrets fills
//! nothing.

use std::time::{Duration, Instant};

use domain::{ApiToken, Environment};
use uuid::Uuid;

/// How long a looked-up value is used without asking the store again.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// At most this many of each are remembered; the least useful go first.
const CAPACITY: usize = 10_000;

#[derive(Clone)]
struct Fresh<T> {
    value: T,
    until: Instant,
}

pub(crate) struct Lookups {
    /// By the SHA-256 of the secret.
    tokens: quick_cache::sync::Cache<[u8; 32], Fresh<ApiToken>>,
    /// By organisation and the reference as the path gave it (slug or UUID).
    environments: quick_cache::sync::Cache<(Uuid, String), Fresh<Environment>>,
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups {
            tokens: quick_cache::sync::Cache::new(CAPACITY),
            environments: quick_cache::sync::Cache::new(CAPACITY),
        }
    }
}

fn fresh<T: Clone>(entry: Option<Fresh<T>>) -> Option<T> {
    entry.filter(|e| Instant::now() < e.until).map(|e| e.value)
}

impl Lookups {
    pub(crate) fn token(&self, hash: &[u8; 32]) -> Option<ApiToken> {
        fresh(self.tokens.get(hash))
    }

    pub(crate) fn remember_token(&self, hash: [u8; 32], token: &ApiToken) {
        self.tokens.insert(hash, Fresh { value: token.clone(), until: Instant::now() + FRESH_FOR });
    }

    pub(crate) fn forget_token(&self, token_id: Uuid) {
        self.tokens.retain(|_, entry| entry.value.id != token_id);
    }

    pub(crate) fn environment(&self, org_id: Uuid, reference: &str) -> Option<Environment> {
        fresh(self.environments.get(&(org_id, reference.to_owned())))
    }

    pub(crate) fn remember_environment(&self, reference: &str, environment: &Environment) {
        let key = (environment.org_id, reference.to_owned());
        self.environments.insert(key, Fresh { value: environment.clone(), until: Instant::now() + FRESH_FOR });
    }

    pub(crate) fn forget_environment(&self, environment_id: Uuid) {
        self.environments.retain(|_, entry| entry.value.id != environment_id);
    }
}
