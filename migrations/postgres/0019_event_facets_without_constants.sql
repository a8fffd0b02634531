-- Fewer facet rows, for the importer: a CloudTrail item had six (its source `aws.cloudtrail`,
-- its event source, its actor, and the labels `aws.account`, `aws.region`, `aws.service` that
-- changetrail derives), and writing them took the importer from 63% to 38% of the plain bulk
-- insert (BENCHMARKS.md). The rows left out are the ones an index helps least: every CloudTrail
-- item has the source `aws.cloudtrail`, and the `aws.*` labels repeat the account, region and
-- event source an environment is linked by, so their values are frequent and a page of them is
-- found quickly by walking the links. The timeline's query (storage::sql::timeline,
-- `driving_facet`) never asks the facets for these, so leaving them out changes no answer.
CREATE OR REPLACE FUNCTION event_facets_of_links() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_facets (environment_id, facet, value, occurred_at, event_id)
    SELECT n.environment_id, f.facet, f.value, n.occurred_at, n.event_id
    FROM new_links n
    CROSS JOIN LATERAL (SELECT e.source, e.event_source, e.actor, e.labels FROM events e WHERE e.id = n.event_id OFFSET 0) e
    CROSS JOIN LATERAL (
        SELECT 'source', NULLIF(e.source, 'aws.cloudtrail')
        UNION ALL SELECT 'source', NULLIF(e.event_source, e.source)
        UNION ALL SELECT 'actor', e.actor
        UNION ALL SELECT 'label:' || kv.key, kv.value FROM jsonb_each_text(e.labels) kv WHERE left(kv.key, 4) <> 'aws.'
    ) AS f (facet, value)
    WHERE f.value IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

DELETE FROM event_facets WHERE (facet = 'source' AND value = 'aws.cloudtrail') OR left(facet, 10) = 'label:aws.';
