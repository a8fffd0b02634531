-- How long a connection's role sessions last (AssumeRole's DurationSeconds), and the roles
-- assumed in turn before its role (a role chain; `[]` when changetrail assumes the role itself).
ALTER TABLE connections ADD COLUMN session_duration_seconds INTEGER NOT NULL DEFAULT 3600;
ALTER TABLE connections ADD COLUMN role_via TEXT NOT NULL DEFAULT '[]';
