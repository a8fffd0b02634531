-- Live timelines read what was stored after a position, newest last: this index leads that
-- scan (an organisation's items by the time changetrail stored them).
CREATE INDEX events_by_creation ON events (org_id, created_at, id);
