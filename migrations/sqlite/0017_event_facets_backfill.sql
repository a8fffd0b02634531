-- The facets of the links that existed before 0016 (see the PostgreSQL migration of the same
-- number for why it is a migration of its own).
INSERT OR IGNORE INTO event_facets (environment_id, facet, value, occurred_at, event_id)
SELECT l.environment_id, 'source', e.source, l.occurred_at, l.event_id
    FROM event_environments l JOIN events e ON e.id = l.event_id
UNION SELECT l.environment_id, 'source', e.event_source, l.occurred_at, l.event_id
    FROM event_environments l JOIN events e ON e.id = l.event_id WHERE e.event_source IS NOT NULL
UNION SELECT l.environment_id, 'actor', e.actor, l.occurred_at, l.event_id
    FROM event_environments l JOIN events e ON e.id = l.event_id WHERE e.actor IS NOT NULL
UNION SELECT l.environment_id, 'label:' || kv.key, kv.value, l.occurred_at, l.event_id
    FROM event_environments l JOIN events e ON e.id = l.event_id, json_each(e.labels) kv;
