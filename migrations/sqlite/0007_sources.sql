-- Webhook sources (GitHub, PagerDuty) and the log of their deliveries. A source's settings are one
-- JSON document (name aside); its secrets are sealed by the application (XChaCha20-Poly1305 under
-- the server's secret key), never stored in the clear.
CREATE TABLE sources (
    id          BLOB PRIMARY KEY NOT NULL,
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    settings    TEXT NOT NULL,
    secrets     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX sources_by_org ON sources (org_id, id);

-- One row per delivery id: a provider's redelivery updates its row rather than adding one.
CREATE TABLE source_deliveries (
    source_id    BLOB NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    delivery_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    item_id      BLOB,
    detail       TEXT,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (source_id, delivery_id)
);
CREATE INDEX source_deliveries_newest ON source_deliveries (source_id, received_at);
