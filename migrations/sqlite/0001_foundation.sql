CREATE TABLE organizations (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           BLOB PRIMARY KEY NOT NULL,
    org_id       BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL
);
CREATE INDEX api_tokens_by_org ON api_tokens (org_id, id);

CREATE TABLE environments (
    id           BLOB PRIMARY KEY NOT NULL,
    org_id       BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    slug         TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (org_id, slug)
);
CREATE INDEX environments_by_org ON environments (org_id, id);

-- Every timeline item: CloudTrail events, deploys, alerts, pull requests, custom changes.
CREATE TABLE events (
    id             BLOB PRIMARY KEY NOT NULL,
    org_id         BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,
    source         TEXT NOT NULL,
    -- The source's own ID of the item (CloudTrail EventId, a deploy's external_id, ...):
    -- de-duplication is this uniqueness, not a check before insert.
    source_key     TEXT NOT NULL,
    connection_id  BLOB,
    occurred_at    INTEGER NOT NULL,
    title          TEXT NOT NULL,
    actor          TEXT,
    read_only      INTEGER NOT NULL DEFAULT 0,
    resources      TEXT NOT NULL DEFAULT '[]',
    labels         TEXT NOT NULL DEFAULT '{}',
    links          TEXT NOT NULL DEFAULT '[]',
    details        TEXT NOT NULL DEFAULT '{}',
    original       TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (org_id, source, source_key)
);

-- The timeline index: one row per (environment, event), keyed so that "this environment, newest
-- first, after this cursor" is a range scan with no sort. The environment belongs to exactly one
-- organisation, so the key is tenant-scoped too.
CREATE TABLE event_environments (
    environment_id  BLOB NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    occurred_at     INTEGER NOT NULL,
    event_id        BLOB NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    read_only       INTEGER NOT NULL,
    PRIMARY KEY (environment_id, occurred_at, event_id)
) WITHOUT ROWID;
CREATE INDEX event_environments_by_event ON event_environments (event_id);
