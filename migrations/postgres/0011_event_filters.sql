-- A connection's event filter (include/exclude globs and the default exclusion of session
-- noise, as one JSON document; `{}` is the default filter) and the count of the events it
-- dropped, each counted once however often a walk or a re-import meets it again.
ALTER TABLE connections ADD COLUMN event_filter JSONB NOT NULL DEFAULT '{}';
ALTER TABLE connections ADD COLUMN events_excluded BIGINT NOT NULL DEFAULT 0;
CREATE TABLE excluded_events (
    connection_id  UUID NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    source_key     TEXT NOT NULL,
    PRIMARY KEY (connection_id, source_key)
);
