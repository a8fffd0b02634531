-- The link trigger of 0016 read the new links' events through a join with the statement's
-- transition table, which the planner must size without statistics; the importer fell from
-- 3,035 to 1,071 events/s (20,000 events, BENCHMARKS.md). Reading each link's event once, by its
-- key, brought it to 2,196 (OFFSET 0 keeps that lateral lookup from being planned as the join
-- again).
CREATE OR REPLACE FUNCTION event_facets_of_links() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_facets (environment_id, facet, value, occurred_at, event_id)
    SELECT n.environment_id, f.facet, f.value, n.occurred_at, n.event_id
    FROM new_links n
    CROSS JOIN LATERAL (SELECT e.source, e.event_source, e.actor, e.labels FROM events e WHERE e.id = n.event_id OFFSET 0) e
    CROSS JOIN LATERAL (
        SELECT 'source', e.source
        UNION ALL SELECT 'source', NULLIF(e.event_source, e.source)
        UNION ALL SELECT 'actor', e.actor
        UNION ALL SELECT 'label:' || kv.key, kv.value FROM jsonb_each_text(e.labels) kv
    ) AS f (facet, value)
    WHERE f.value IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
