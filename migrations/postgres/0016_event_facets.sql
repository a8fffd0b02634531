-- The timeline's filters on an item's values (`source`, `actor`, `service`, `label`), each
-- served by an index that leads the scan: one row per (link, value), ordered like the link
-- table, so a page of items with a rare value is a short range scan instead of a walk back
-- through the environment's history. Facets: `source` (the item's source and its CloudTrail
-- event source), `actor`, and `label:{key}` for each label.
--
-- Triggers on the link table write them from the event's row and delete them with the link, so
-- every path that links an item (posting, imports, pushes, channels, re-links) keeps them
-- without knowing of them. They are statement-level, over the statement's rows at once: a
-- page of an import is one INSERT of its facets, not one per link.
CREATE TABLE event_facets (
    environment_id  UUID NOT NULL,
    facet           TEXT NOT NULL,
    value           TEXT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    event_id        UUID NOT NULL,
    PRIMARY KEY (environment_id, facet, value, occurred_at, event_id)
);
CREATE INDEX event_facets_by_event ON event_facets (event_id);

-- An event's facets: its source, its event source where that differs, its actor, and each
-- label as `label:{key}` (the backfill in 0017 reads the same).
CREATE FUNCTION event_facets_of_links() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_facets (environment_id, facet, value, occurred_at, event_id)
    SELECT n.environment_id, f.facet, f.value, n.occurred_at, n.event_id
    FROM new_links n
    JOIN events e ON e.id = n.event_id
    CROSS JOIN LATERAL (VALUES ('source', e.source), ('source', NULLIF(e.event_source, e.source)), ('actor', e.actor))
        AS f (facet, value)
    WHERE f.value IS NOT NULL
    ON CONFLICT DO NOTHING;
    INSERT INTO event_facets (environment_id, facet, value, occurred_at, event_id)
    SELECT n.environment_id, 'label:' || kv.key, kv.value, n.occurred_at, n.event_id
    FROM new_links n
    JOIN events e ON e.id = n.event_id
    CROSS JOIN LATERAL jsonb_each_text(e.labels) kv
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE FUNCTION event_facets_of_unlinks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM event_facets f USING old_links o
    WHERE f.event_id = o.event_id AND f.environment_id = o.environment_id AND f.occurred_at = o.occurred_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER event_facets_on_link AFTER INSERT ON event_environments
    REFERENCING NEW TABLE AS new_links FOR EACH STATEMENT EXECUTE FUNCTION event_facets_of_links();
CREATE TRIGGER event_facets_on_unlink AFTER DELETE ON event_environments
    REFERENCING OLD TABLE AS old_links FOR EACH STATEMENT EXECUTE FUNCTION event_facets_of_unlinks();
