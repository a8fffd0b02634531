-- Sessions of the web view: a signed-in browser holds a random secret in a cookie; only its
-- hash is kept. A session acts with its token's organisation and scopes, and ends with the
-- token (ON DELETE CASCADE) or at its expiry, whichever comes first.
CREATE TABLE ui_sessions (
    secret_hash  BYTEA PRIMARY KEY,
    token_id     UUID NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX ui_sessions_by_token ON ui_sessions (token_id);
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_at);
