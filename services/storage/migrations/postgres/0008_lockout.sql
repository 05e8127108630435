-- Failed sign-ins per account, kept in storage so every gateway of a cluster sees the
-- same count and it survives restarts. `failed_logins` counts consecutive failures (a
-- success resets it); `locked_until` (Unix ms, 0 = not locked) refuses password checks
-- until then.
ALTER TABLE users ADD COLUMN failed_logins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until BIGINT NOT NULL DEFAULT 0;
