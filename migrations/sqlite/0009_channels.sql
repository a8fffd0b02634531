-- CloudTrail Lake-compatible channels (PutAuditEvents). A channel's settings are one JSON document
-- (name and source aside); its secret access key is sealed by the application (XChaCha20-Poly1305
-- under the server's secret key) because SigV4 verification needs it back; never in the clear.
CREATE TABLE channels (
    id             BLOB PRIMARY KEY NOT NULL,
    org_id         BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    source         TEXT NOT NULL,
    settings       TEXT NOT NULL,
    access_key_id  TEXT NOT NULL UNIQUE,
    secret         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX channels_by_org ON channels (org_id, id);

-- What became of a channel's events: one row per outcome ('accepted', or a failure code), counted.
CREATE TABLE channel_outcomes (
    channel_id  BLOB NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    outcome     TEXT NOT NULL,
    events      INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    PRIMARY KEY (channel_id, outcome)
);
