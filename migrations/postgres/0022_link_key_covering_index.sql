-- no-transaction
-- The link table's key again, with the columns the timeline filters on included (0021), built
-- without blocking writes. It is alone in its migration because PostgreSQL builds an index
-- concurrently only outside a transaction. A build that fails leaves an invalid index of this
-- name: drop it (DROP INDEX CONCURRENTLY event_environments_covering) and start the service again.
CREATE UNIQUE INDEX CONCURRENTLY event_environments_covering ON event_environments (environment_id, occurred_at, event_id)
    INCLUDE (kind, read_only, title_lowered, resources_lowered);
