-- What the planner knows of the `q` and `resource` filters, which no index serves: the page's
-- query walks the environment's links newest first and stops after a page of matches, or reads
-- the whole window in bulk and sorts it. Without statistics on the filtered expressions the
-- planner guesses that `LOWER(title) LIKE '%created%'` matches almost nothing, so for a word on
-- one item in six it read and sorted all 30,532 links of a busy day (313 ms at 10 M items) where
-- the walk stops after about 600. Statistics on the two expressions give it the real share of
-- matching rows; they cost nothing on writes (they are computed by ANALYZE, which autovacuum runs).
CREATE STATISTICS IF NOT EXISTS events_title_lowered ON (LOWER(title)) FROM events;
CREATE STATISTICS IF NOT EXISTS events_resources_lowered ON (LOWER(CAST(resources AS TEXT))) FROM events;
ANALYZE events;
