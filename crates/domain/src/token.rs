//! API tokens: random secrets shown once, stored only as a SHA-256 hash, with scopes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::validation::Invalid;

/// What a token may do. `admin` may do everything; `read` and `write` are independent, so a
/// CI system can post deploys with a token that cannot read the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// A non-empty set of scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn new(mut scopes: Vec<Scope>) -> Result<Self, Invalid> {
        if scopes.is_empty() {
            return Err(Invalid::one("scopes", "at least one of read, write, admin is required"));
        }
        scopes.sort();
        scopes.dedup();
        Ok(Scopes(scopes))
    }

    pub fn admin() -> Self {
        Scopes(vec![Scope::Admin])
    }

    /// Parses the stored form, a comma-separated list.
    pub fn from_stored(s: &str) -> Self {
        Scopes(s.split(',').filter_map(Scope::parse).collect())
    }

    pub fn to_stored(&self) -> String {
        self.0.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
    }

    pub fn allows(&self, needed: Scope) -> bool {
        self.0.contains(&Scope::Admin) || self.0.contains(&needed)
    }

    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }
}

/// A token as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub scopes: Scopes,
    /// The first characters of the secret, so people can tell their tokens apart.
    pub prefix: String,
    pub created_at: OffsetDateTime,
    /// What storage keeps instead of the secret; compared in constant time on every request.
    pub secret_hash: TokenHash,
}

/// A token secret in the clear. It exists only between generation and the response that shows
/// it once; it deliberately has no `Debug` or `Display` so it cannot end up in a log line.
pub struct TokenSecret(String);

pub const TOKEN_PREFIX: &str = "ct_";
/// A token names each of its three scopes at most a few times over.
pub const MAX_SCOPES: usize = 10;
/// A bootstrap token chosen by an operator must still be hard to guess.
pub const MIN_CHOSEN_TOKEN_CHARS: usize = 24;

impl TokenSecret {
    /// 256 bits from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        TokenSecret(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A token an operator chose (`CHANGETRAIL_BOOTSTRAP_TOKEN`).
    pub fn chosen(secret: &str) -> Result<Self, Invalid> {
        if secret.len() < MIN_CHOSEN_TOKEN_CHARS || secret.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(Invalid::one(
                "CHANGETRAIL_BOOTSTRAP_TOKEN",
                format!("must be at least {MIN_CHOSEN_TOKEN_CHARS} printable ASCII characters without spaces"),
            ));
        }
        Ok(TokenSecret(secret.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }

    pub fn display_prefix(&self) -> String {
        self.0.chars().take(TOKEN_PREFIX.len() + 6).collect()
    }
}

/// SHA-256 of a token secret: what storage keeps and looks tokens up by. The secret has at least
/// 128 bits of entropy, so a fast hash is enough; a slow one would only slow every request.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(secret: &str) -> Self {
        TokenHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Compared in constant time, so timing says nothing about how much of a guess was right.
    pub fn matches(&self, other: &[u8]) -> bool {
        other.len() == self.0.len() && bool::from(self.0.as_slice().ct_eq(other))
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_long_distinct_and_hash_stably() {
        let a = TokenSecret::generate();
        let b = TokenSecret::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().len() >= TOKEN_PREFIX.len() + 43);
        assert!(a.hash().matches(&TokenHash::of(a.expose()).0));
        assert!(!a.hash().matches(&b.hash().0));
        assert!(!a.hash().matches(&[0u8; 3]));
    }

    #[test]
    fn chosen_tokens_must_be_long_and_printable() {
        assert!(TokenSecret::chosen("short").is_err());
        assert!(TokenSecret::chosen("has a space in it and is long").is_err());
        assert!(TokenSecret::chosen("a-long-enough-token-value-1234").is_ok());
    }

    #[test]
    fn admin_allows_everything_and_read_write_are_separate() {
        let admin = Scopes::admin();
        assert!(Scope::ALL.iter().all(|s| admin.allows(*s)));
        let write = Scopes::new(vec![Scope::Write]).unwrap();
        assert!(write.allows(Scope::Write));
        assert!(!write.allows(Scope::Read));
        assert!(!write.allows(Scope::Admin));
        assert!(Scopes::new(vec![]).is_err());
        assert_eq!(
            Scopes::from_stored(&Scopes::new(vec![Scope::Write, Scope::Read]).unwrap().to_stored()).as_slice(),
            &[Scope::Read, Scope::Write]
        );
    }
}
