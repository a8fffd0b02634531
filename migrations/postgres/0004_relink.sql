-- Changing a connection's environment rules re-links the events it imported, in the background:
-- links_version counts rule changes, relinked_version is the last one applied to every event,
-- and relink_cursor is how far the re-link in progress has come (events are walked by id).
ALTER TABLE connections ADD COLUMN links_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN relinked_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN relink_cursor UUID;
ALTER TABLE connections ADD COLUMN relink_owner TEXT;
ALTER TABLE connections ADD COLUMN relink_leased_until BIGINT;
