-- At most one bootstrap ever: the first `serve` or `api` on an empty database creates the
-- default organisation together with this row, so two processes starting at once cannot both.
CREATE TABLE bootstrap (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    org_id  UUID NOT NULL
);
INSERT INTO bootstrap (id, org_id) SELECT 1, id FROM organizations ORDER BY id LIMIT 1;
