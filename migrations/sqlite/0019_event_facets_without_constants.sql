-- Fewer facet rows, for the importer: a CloudTrail item's source `aws.cloudtrail` and its
-- `aws.*` labels are no longer written (why: PostgreSQL's 0019). The timeline's query never
-- asks the facets for them (storage::sql::timeline, `driving_facet`).
DROP TRIGGER event_facets_on_link;
CREATE TRIGGER event_facets_on_link AFTER INSERT ON event_environments
BEGIN
    INSERT OR IGNORE INTO event_facets (environment_id, facet, value, occurred_at, event_id)
    SELECT NEW.environment_id, f.facet, f.value, NEW.occurred_at, NEW.event_id
    FROM (
        SELECT 'source' AS facet, e.source AS value FROM events e
            WHERE e.id = NEW.event_id AND e.source <> 'aws.cloudtrail'
        UNION ALL SELECT 'source', e.event_source FROM events e
            WHERE e.id = NEW.event_id AND e.event_source IS NOT NULL AND e.event_source IS NOT e.source
        UNION ALL SELECT 'actor', e.actor FROM events e WHERE e.id = NEW.event_id AND e.actor IS NOT NULL
        UNION ALL SELECT 'label:' || kv.key, kv.value FROM events e, json_each(e.labels) kv
            WHERE e.id = NEW.event_id AND substr(kv.key, 1, 4) <> 'aws.'
    ) f;
END;

DELETE FROM event_facets WHERE (facet = 'source' AND value = 'aws.cloudtrail') OR substr(facet, 1, 10) = 'label:aws.';
