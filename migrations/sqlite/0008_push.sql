-- Near-real-time CloudTrail through EventBridge. A connection's push secret is stored only as its
-- SHA-256 (it is a random 256-bit value, so a plain hash is as strong as a slow one); NULL until
-- an admin creates one.
ALTER TABLE connections ADD COLUMN push_secret_hash BLOB;
ALTER TABLE connections ADD COLUMN push_secret_created_at BIGINT;

-- How each item arrived: 'poll' (LookupEvents), 'push' (EventBridge), 'api' (posted), 'webhook'
-- (GitHub, PagerDuty). `created_at` is when it was stored, so freshness is created_at - occurred_at.
-- Items stored before this version: CloudTrail ones were polled, GitHub's came by webhook, the rest
-- read 'api' (a PagerDuty webhook's incidents cannot be told from posted alerts any more).
ALTER TABLE events ADD COLUMN ingested_via TEXT NOT NULL DEFAULT 'poll';
UPDATE events SET ingested_via = CASE WHEN source = 'github' THEN 'webhook' ELSE 'api' END WHERE kind <> 'cloudtrail';

-- A connection's pushed items of the last hour, for its import status, without reading its polled ones.
CREATE INDEX events_pushed ON events (connection_id, created_at) WHERE ingested_via = 'push';
