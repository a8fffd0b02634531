-- The lease table of the CloudTrail importer: one row per (connection, region). A worker claims
-- due rows by setting leased_until; a row whose lease has passed is free again, so a dead
-- worker's regions are taken over.
CREATE TABLE import_jobs (
    connection_id    BLOB NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    region           TEXT NOT NULL,
    org_id           BLOB NOT NULL,
    account_id       TEXT NOT NULL,
    next_run_at      INTEGER NOT NULL,
    leased_until     INTEGER,
    lease_owner      TEXT,
    -- Consecutive failed runs, for backoff; reset by a successful run.
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    -- Every window up to this time has been walked to its last page.
    scanned_until    INTEGER NOT NULL,
    -- The walk in progress, so a restart resumes it: its fixed window and next page.
    window_start     INTEGER,
    window_end       INTEGER,
    next_token       TEXT,
    last_run_at      INTEGER,
    last_success_at  INTEGER,
    events_imported  INTEGER NOT NULL DEFAULT 0,
    events_flagged   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (connection_id, region)
);
CREATE INDEX import_jobs_due ON import_jobs (next_run_at);

-- LookupEvents allows 2 calls per second per account and region. Each call first reserves the
-- next free slot here, so every worker process shares one budget per account and region.
CREATE TABLE lookup_pacing (
    account_id    TEXT NOT NULL,
    region        TEXT NOT NULL,
    next_slot_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, region)
);
