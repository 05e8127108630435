-- Retention policies and legal holds. Same tables and meaning as
-- migrations/sqlite/0009_retention.sql; see that file for the comments.
CREATE TABLE retention_policies (
    conversation_id BIGINT PRIMARY KEY,
    keep_days       BIGINT CHECK (keep_days IS NULL OR keep_days >= 1),
    updated_at      BIGINT NOT NULL
);

CREATE TABLE legal_holds (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT REFERENCES users(id),
    conversation_id BIGINT REFERENCES conversations(id),
    reason          TEXT   NOT NULL DEFAULT '',
    created_by      BIGINT NOT NULL REFERENCES users(id),
    created_at      BIGINT NOT NULL,
    CHECK ((user_id IS NULL) <> (conversation_id IS NULL))
);
CREATE INDEX legal_holds_user ON legal_holds(user_id) WHERE user_id IS NOT NULL;
CREATE INDEX legal_holds_conversation ON legal_holds(conversation_id)
    WHERE conversation_id IS NOT NULL;
