-- The facets of the links that existed before 0016. Separate from it so that the trigger is in
-- place (and its brief lock on the link table released) before this long read: writes go on
-- meanwhile, and what they link gets its facets from the trigger (hence ON CONFLICT).
INSERT INTO event_facets (environment_id, facet, value, occurred_at, event_id)
SELECT l.environment_id, f.facet, f.value, l.occurred_at, l.event_id
FROM event_environments l
JOIN events e ON e.id = l.event_id
CROSS JOIN LATERAL facets_of(e) f
ON CONFLICT DO NOTHING;
ANALYZE event_facets;
