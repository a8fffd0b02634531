-- The `q` and `resource` filters had no index: the page's query walked the environment's links
-- newest first and read each link's event to test its title or resources, about 7 µs a link, so
-- a word on few items read the busy day's 30,532 links in 215 ms (10 M items, BENCHMARKS.md).
-- Each link now carries the two lowered texts the filters test, which the next two migrations put
-- into the link table's key as included columns: the walk then tests them in the index itself
-- (an index-only scan) and reads only the matching events.
--
-- NULL means "not copied": a link written by a binary older than this one, or a lowered text longer
-- than 1,000 bytes (a B-tree entry must stay under a third of a page). The filter treats NULL as a
-- possible match and tests the event itself, as before, so no answer depends on the copies.
-- The backfill updates every link once; it holds row locks only, so new items keep coming in.
ALTER TABLE event_environments ADD COLUMN IF NOT EXISTS title_lowered TEXT,
                               ADD COLUMN IF NOT EXISTS resources_lowered TEXT;
UPDATE event_environments l
SET title_lowered = CASE WHEN octet_length(LOWER(e.title)) <= 1000 THEN LOWER(e.title) END,
    resources_lowered = CASE WHEN octet_length(LOWER(CAST(e.resources AS TEXT))) <= 1000
                             THEN LOWER(CAST(e.resources AS TEXT)) END
FROM events e
WHERE e.id = l.event_id;
