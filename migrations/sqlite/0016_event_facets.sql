-- The timeline's filters on an item's values (`source`, `actor`, `service`, `label`), each
-- served by an index that leads the scan: one row per (link, value), ordered like the link
-- table, so a page of items with a rare value is a short range scan instead of a walk back
-- through the environment's history. Facets: `source` (the item's source and its CloudTrail
-- event source), `actor`, and `label:{key}` for each label.
--
-- Triggers on the link table write them from the event's row and delete them with the link, so
-- every path that links an item (posting, imports, pushes, channels, re-links) keeps them
-- without knowing of them.
CREATE TABLE event_facets (
    environment_id  BLOB NOT NULL,
    facet           TEXT NOT NULL,
    value           TEXT NOT NULL,
    occurred_at     INTEGER NOT NULL,
    event_id        BLOB NOT NULL,
    PRIMARY KEY (environment_id, facet, value, occurred_at, event_id)
) WITHOUT ROWID;
CREATE INDEX event_facets_by_event ON event_facets (event_id, environment_id, occurred_at);

CREATE TRIGGER event_facets_on_link AFTER INSERT ON event_environments
BEGIN
    INSERT OR IGNORE INTO event_facets (environment_id, facet, value, occurred_at, event_id)
    SELECT NEW.environment_id, f.facet, f.value, NEW.occurred_at, NEW.event_id
    FROM (
        SELECT 'source' AS facet, e.source AS value FROM events e WHERE e.id = NEW.event_id
        UNION ALL SELECT 'source', e.event_source FROM events e
            WHERE e.id = NEW.event_id AND e.event_source IS NOT NULL AND e.event_source IS NOT e.source
        UNION ALL SELECT 'actor', e.actor FROM events e WHERE e.id = NEW.event_id AND e.actor IS NOT NULL
        UNION ALL SELECT 'label:' || kv.key, kv.value FROM events e, json_each(e.labels) kv WHERE e.id = NEW.event_id
    ) f;
END;

CREATE TRIGGER event_facets_on_unlink AFTER DELETE ON event_environments
BEGIN
    DELETE FROM event_facets
    WHERE event_id = OLD.event_id AND environment_id = OLD.environment_id AND occurred_at = OLD.occurred_at;
END;
