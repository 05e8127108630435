-- Retention policies and legal holds (see services/storage/src/sql/retention.rs).

-- One row per conversation with its own policy, and conversation_id 0 for the
-- organisation's default. keep_days NULL: keep forever (on a conversation, this
-- overrides a default that deletes).
CREATE TABLE retention_policies (
    conversation_id INTEGER PRIMARY KEY,
    keep_days       INTEGER CHECK (keep_days IS NULL OR keep_days >= 1),
    updated_at      INTEGER NOT NULL
);

-- A legal hold keeps every message of a user (user_id) or of a conversation
-- (conversation_id), whatever the policy, until an admin removes it.
CREATE TABLE legal_holds (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER REFERENCES users(id),
    conversation_id INTEGER REFERENCES conversations(id),
    reason          TEXT    NOT NULL DEFAULT '',
    created_by      INTEGER NOT NULL REFERENCES users(id),
    created_at      INTEGER NOT NULL,
    CHECK ((user_id IS NULL) <> (conversation_id IS NULL))
);
CREATE INDEX legal_holds_user ON legal_holds(user_id) WHERE user_id IS NOT NULL;
CREATE INDEX legal_holds_conversation ON legal_holds(conversation_id)
    WHERE conversation_id IS NOT NULL;
