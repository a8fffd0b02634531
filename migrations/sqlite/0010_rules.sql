-- Rules that page, and their outbox. A rule's settings (environment ids, match, action without
-- its secret) are one JSON document; the routing key or webhook secret is sealed by the
-- application (XChaCha20-Poly1305 under the server's secret key), never in the clear.
CREATE TABLE rules (
    id          BLOB PRIMARY KEY NOT NULL,
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    settings    TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX rules_by_org ON rules (org_id, id);

-- The outbox: one row per (rule, matched item), written in the transaction that stored the item,
-- so a delivery exists exactly when its item does. Workers lease due rows like import jobs.
CREATE TABLE rule_deliveries (
    id               BLOB PRIMARY KEY NOT NULL,
    org_id           BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    rule_id          BLOB NOT NULL REFERENCES rules (id) ON DELETE CASCADE,
    event_id         BLOB NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    alert_event_id   BLOB,
    status           TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    lease_owner      TEXT,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    UNIQUE (rule_id, event_id)
);
CREATE INDEX rule_deliveries_due ON rule_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX rule_deliveries_by_rule ON rule_deliveries (rule_id, id);

CREATE TABLE rule_delivery_attempts (
    delivery_id  BLOB NOT NULL REFERENCES rule_deliveries (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    http_status  INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Moved in the transaction of every change to the organisation's rules: the write paths keep
-- its parsed rules while this is unchanged (a count or a time could repeat; this cannot).
ALTER TABLE organizations ADD COLUMN rules_version INTEGER NOT NULL DEFAULT 0;
