-- Organisation connections and their members, and connections on changetrail's own identity.
-- kind: 'account' (one account through a role), 'organization' (a role in the management or a
-- delegated-administrator account that lists the organisation's accounts; it imports nothing
-- itself) or 'member' (one account of an organisation connection, kept by discovery: its
-- parent_id is the organisation connection, its settings the parent's until overridden).
ALTER TABLE connections ADD COLUMN kind TEXT NOT NULL DEFAULT 'account';
ALTER TABLE connections ADD COLUMN parent_id BLOB REFERENCES connections (id) ON DELETE CASCADE;
-- Of an organisation connection: the role's name in every member account.
ALTER TABLE connections ADD COLUMN member_role_name TEXT;
-- Of a member: the account as AWS Organizations last listed it (its status is ACTIVE,
-- SUSPENDED or PENDING_CLOSURE, or LEFT once it is no longer listed).
ALTER TABLE connections ADD COLUMN member_account_name TEXT;
ALTER TABLE connections ADD COLUMN member_account_status TEXT;
ALTER TABLE connections ADD COLUMN settings_overridden BOOLEAN NOT NULL DEFAULT 0;
-- 'role' (AssumeRole, possibly a chain) or 'service' (changetrail's own identity, no role).
ALTER TABLE connections ADD COLUMN credentials TEXT NOT NULL DEFAULT 'role';
-- The discovery of an organisation's accounts, leased like the re-link: due at discovery_due_at.
ALTER TABLE connections ADD COLUMN discovery_due_at BIGINT;
ALTER TABLE connections ADD COLUMN discovery_owner TEXT;
ALTER TABLE connections ADD COLUMN discovery_leased_until BIGINT;
ALTER TABLE connections ADD COLUMN discovered_at BIGINT;
ALTER TABLE connections ADD COLUMN discovery_error TEXT;
CREATE UNIQUE INDEX connections_member_account ON connections (parent_id, account_id) WHERE parent_id IS NOT NULL;
CREATE INDEX connections_discovery_due ON connections (discovery_due_at) WHERE discovery_due_at IS NOT NULL;
