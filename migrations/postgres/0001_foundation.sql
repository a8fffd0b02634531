CREATE TABLE organizations (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id           UUID PRIMARY KEY,
    org_id       UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL
);
CREATE INDEX api_tokens_by_org ON api_tokens (org_id, id);

CREATE TABLE environments (
    id           UUID PRIMARY KEY,
    org_id       UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    slug         TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (org_id, slug)
);
CREATE INDEX environments_by_org ON environments (org_id, id);

-- Every timeline item: CloudTrail events, deploys, alerts, pull requests, custom changes.
CREATE TABLE events (
    id             UUID PRIMARY KEY,
    org_id         UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,
    source         TEXT NOT NULL,
    -- The source's own ID of the item (CloudTrail EventId, a deploy's external_id, ...):
    -- de-duplication is this uniqueness, not a check before insert.
    source_key     TEXT NOT NULL,
    connection_id  UUID,
    occurred_at    BIGINT NOT NULL,
    title          TEXT NOT NULL,
    actor          TEXT,
    read_only      BOOLEAN NOT NULL DEFAULT FALSE,
    resources      JSONB NOT NULL DEFAULT '[]',
    labels         JSONB NOT NULL DEFAULT '{}',
    links          JSONB NOT NULL DEFAULT '[]',
    details        JSONB NOT NULL DEFAULT '{}',
    original       JSONB,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (org_id, source, source_key)
);

-- The timeline index: one row per (environment, event), keyed so that "this environment, newest
-- first, after this cursor" is a range scan with no sort. The environment belongs to exactly one
-- organisation, so the key is tenant-scoped too.
CREATE TABLE event_environments (
    environment_id  UUID NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    occurred_at     BIGINT NOT NULL,
    event_id        UUID NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    read_only       BOOLEAN NOT NULL,
    PRIMARY KEY (environment_id, occurred_at, event_id)
);
CREATE INDEX event_environments_by_event ON event_environments (event_id);
