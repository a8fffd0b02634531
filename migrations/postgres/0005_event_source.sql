-- The AWS service a CloudTrail event came from (`ec2.amazonaws.com`), as its own column: the
-- timeline's `source` filter matches it without reading the details JSON.
ALTER TABLE events ADD COLUMN event_source TEXT;
UPDATE events SET event_source = details ->> 'event_source' WHERE kind = 'cloudtrail';
