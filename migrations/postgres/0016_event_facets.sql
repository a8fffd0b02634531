-- The timeline's filters on an item's values (`source`, `actor`, `service`, `label`), each
-- served by an index that leads the scan: one row per (link, value), ordered like the link
-- table, so a page of items with a rare value is a short range scan instead of a walk back
-- through the environment's history. Facets: `source` (the item's source and its CloudTrail
-- event source), `actor`, and `label:{key}` for each label.
--
-- The link table's trigger writes them from the event's row, so every path that links an item
-- (posting, imports, pushes, channels, re-links) keeps them without knowing of them; deleting a
-- link deletes its facets.
CREATE TABLE event_facets (
    environment_id  UUID NOT NULL,
    facet           TEXT NOT NULL,
    value           TEXT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    event_id        UUID NOT NULL,
    PRIMARY KEY (environment_id, facet, value, occurred_at, event_id),
    FOREIGN KEY (environment_id, occurred_at, event_id)
        REFERENCES event_environments (environment_id, occurred_at, event_id) ON DELETE CASCADE
);
CREATE INDEX event_facets_by_event ON event_facets (event_id);

-- An event's facets, for the trigger and for the backfill.
CREATE FUNCTION facets_of(e events) RETURNS TABLE (facet TEXT, value TEXT) LANGUAGE sql STABLE AS $$
    SELECT 'source', e.source
    UNION SELECT 'source', e.event_source WHERE e.event_source IS NOT NULL
    UNION SELECT 'actor', e.actor WHERE e.actor IS NOT NULL
    UNION SELECT 'label:' || kv.key, kv.value FROM jsonb_each_text(e.labels) kv
$$;

CREATE FUNCTION event_facets_of_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_facets (environment_id, facet, value, occurred_at, event_id)
    SELECT NEW.environment_id, f.facet, f.value, NEW.occurred_at, NEW.event_id
    FROM events e CROSS JOIN LATERAL facets_of(e) f
    WHERE e.id = NEW.event_id
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER event_facets_on_link AFTER INSERT ON event_environments
    FOR EACH ROW EXECUTE FUNCTION event_facets_of_link();
