-- The lease table of the CloudTrail importer: one row per (connection, region). A worker claims
-- due rows by setting leased_until; a row whose lease has passed is free again, so a dead
-- worker's regions are taken over.
CREATE TABLE import_jobs (
    connection_id    UUID NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    region           TEXT NOT NULL,
    org_id           UUID NOT NULL,
    account_id       TEXT NOT NULL,
    next_run_at      BIGINT NOT NULL,
    leased_until     BIGINT,
    lease_owner      TEXT,
    -- Consecutive failed runs, for backoff; reset by a successful run.
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    -- Every window up to this time has been walked to its last page.
    scanned_until    BIGINT NOT NULL,
    -- The walk in progress, so a restart resumes it: its fixed window and next page.
    window_start     BIGINT,
    window_end       BIGINT,
    next_token       TEXT,
    last_run_at      BIGINT,
    last_success_at  BIGINT,
    events_imported  BIGINT NOT NULL DEFAULT 0,
    events_flagged   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (connection_id, region)
);
CREATE INDEX import_jobs_due ON import_jobs (next_run_at);

-- LookupEvents allows 2 calls per second per account and region. Each call first reserves the
-- next free slot here, so every worker process shares one budget per account and region.
CREATE TABLE lookup_pacing (
    account_id    TEXT NOT NULL,
    region        TEXT NOT NULL,
    next_slot_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, region)
);
