//! Sessions of the web view. A browser signs in by pasting an API token; it gets a session
//! secret (in an `HttpOnly` cookie) in exchange, so the token itself is never kept by the
//! browser, shown in a page or put in a URL. The session acts as its token, until the token is
//! deleted or the session expires or is signed out.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::token::TokenHash;

/// How long a session lasts after sign-in: a working day (or an on-call night).
pub const SESSION_LIFETIME: time::Duration = time::Duration::hours(12);

/// A session secret in the clear, as the cookie carries it; no `Debug`, so no log line shows it.
pub struct SessionSecret(String);

impl SessionSecret {
    /// 256 bits from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SessionSecret(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// What a cookie says; anything but the 43 characters a generated secret has is no session.
    pub fn from_cookie(value: &str) -> Option<Self> {
        (value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .then(|| SessionSecret(value.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What storage keeps and finds the session by.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }

    /// The session's CSRF token: derived from the secret (so nothing more is stored), yet
    /// telling nothing about it. A page's forms carry it; a cross-site form cannot know it.
    pub fn csrf_token(&self) -> String {
        csrf_of(&self.0)
    }

    /// Whether a form's CSRF token is this session's, compared in constant time.
    pub fn csrf_matches(&self, given: &str) -> bool {
        bool::from(self.csrf_token().as_bytes().ct_eq(given.as_bytes()))
    }
}

/// The CSRF token of a pre-session value (the sign-in form's double-submit cookie) or a session.
pub fn csrf_of(secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"changetrail web view csrf\0");
    hasher.update(secret.as_bytes());
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// Constant-time equality of two CSRF tokens.
pub fn csrf_equal(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_distinct_parse_back_and_have_their_own_csrf_token() {
        let (a, b) = (SessionSecret::generate(), SessionSecret::generate());
        assert_ne!(a.expose(), b.expose());
        let parsed = SessionSecret::from_cookie(a.expose()).expect("a generated secret reads back");
        assert!(parsed.hash().matches(&a.hash().0));
        assert!(a.csrf_matches(&a.csrf_token()));
        assert!(!a.csrf_matches(&b.csrf_token()));
        assert!(!a.csrf_matches(""));
        assert_ne!(a.csrf_token(), a.expose(), "the CSRF token is not the secret");
    }

    #[test]
    fn cookies_that_no_session_could_have_are_refused() {
        for bad in
            ["", "short", &"a".repeat(44), &format!("{}!", "a".repeat(42)), "ct_not-a-session-at-all-but-43-chars-long"]
        {
            assert!(SessionSecret::from_cookie(bad).is_none(), "{bad:?}");
        }
    }
}
