-- The `q` and `resource` filters had no index: the page's query walked the environment's links
-- newest first and read each link's event to test its title or resources. Each link now carries
-- the two lowered texts the filters test. The link table is WITHOUT ROWID, so its rows are its
-- key's B-tree: the walk tests them where it reads the link and reads only the matching events.
--
-- NULL means "not copied" (a text longer than 1,000 bytes, as on PostgreSQL, where an index
-- entry must stay small): the filter then tests the event itself, so no answer depends on the copies.
ALTER TABLE event_environments ADD COLUMN title_lowered TEXT;
ALTER TABLE event_environments ADD COLUMN resources_lowered TEXT;
UPDATE event_environments
SET title_lowered = (SELECT CASE WHEN length(CAST(LOWER(e.title) AS BLOB)) <= 1000 THEN LOWER(e.title) END
                     FROM events e WHERE e.id = event_environments.event_id),
    resources_lowered = (SELECT CASE WHEN length(CAST(LOWER(CAST(e.resources AS TEXT)) AS BLOB)) <= 1000
                                     THEN LOWER(CAST(e.resources AS TEXT)) END
                         FROM events e WHERE e.id = event_environments.event_id);
