-- Attachments. Same tables and meaning as migrations/sqlite/0010_attachments.sql; see
-- that file for the comments.
CREATE TABLE attachments (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    uploader_id     BIGINT NOT NULL REFERENCES users(id),
    name            TEXT   NOT NULL,
    content_type    TEXT   NOT NULL,
    size            BIGINT NOT NULL,
    sha256          TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    storage_key     TEXT   NOT NULL UNIQUE,
    FOREIGN KEY (conversation_id, seq) REFERENCES messages(conversation_id, seq)
);
CREATE INDEX attachments_message ON attachments(conversation_id, seq);

CREATE TABLE attachment_trash (
    storage_key TEXT   PRIMARY KEY,
    queued_at   BIGINT NOT NULL
);
