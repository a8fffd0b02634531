-- The facets of the links that existed before 0016, as its trigger writes them. Separate from
-- it so that the triggers are in place (and their brief lock on the link table released) before
-- this long read: writes go on meanwhile, and what they link gets its facets from the trigger
-- (hence ON CONFLICT).
INSERT INTO event_facets (environment_id, facet, value, occurred_at, event_id)
SELECT l.environment_id, f.facet, f.value, l.occurred_at, l.event_id
FROM event_environments l
JOIN events e ON e.id = l.event_id
CROSS JOIN LATERAL (VALUES ('source', e.source), ('source', NULLIF(e.event_source, e.source)), ('actor', e.actor))
    AS f (facet, value)
WHERE f.value IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO event_facets (environment_id, facet, value, occurred_at, event_id)
SELECT l.environment_id, 'label:' || kv.key, kv.value, l.occurred_at, l.event_id
FROM event_environments l
JOIN events e ON e.id = l.event_id
CROSS JOIN LATERAL jsonb_each_text(e.labels) kv
ON CONFLICT DO NOTHING;
ANALYZE event_facets;
