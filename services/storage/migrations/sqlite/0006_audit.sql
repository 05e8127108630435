-- The audit log (security-relevant events: sign-ins, admin actions, webhooks, bots,
-- broadcasts; never messages) and disabled accounts. docs/security.md says what is
-- recorded and who may read it.
--
-- One row per event, written in batches by the gateway's audit writer. `actor` is a
-- username as text, not a foreign key: a failed sign-in names a user that may not exist,
-- and the log must outlive the accounts it mentions. Pages go newest first by id.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY,
    ts     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL DEFAULT '',
    ip     TEXT    NOT NULL DEFAULT '',
    detail TEXT    NOT NULL DEFAULT ''
);
-- The filters an admin pages with: by actor, by action, by time.
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_ts ON audit_log (ts, id);

-- A disabled account cannot sign in and its tokens stop working; enabling it again
-- brings the tokens back (they are not revoked, only refused while disabled).
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
