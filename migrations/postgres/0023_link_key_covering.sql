-- The covering index of 0022 becomes the link table's primary key, in place of the key it repeats:
-- one index to write per link, not two. Swapping takes the table's lock for a moment only (the
-- index is already built), and the key's columns, order and uniqueness are the same.
ALTER TABLE event_environments
    DROP CONSTRAINT event_environments_pkey,
    ADD CONSTRAINT event_environments_pkey PRIMARY KEY USING INDEX event_environments_covering;
