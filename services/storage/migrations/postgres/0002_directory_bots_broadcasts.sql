-- Issue 6: the organisation directory, bots, incoming webhooks and org broadcasts.
-- Same tables and meaning as migrations/sqlite; see that file for the comments.

ALTER TABLE users ADD COLUMN department TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN title TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN bot BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN broadcast_scope TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN broadcast_seen BIGINT NOT NULL DEFAULT 0;

ALTER TABLE messages ADD COLUMN author TEXT;

CREATE TABLE webhooks (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id BIGINT  NOT NULL REFERENCES conversations(id),
    creator_id      BIGINT  NOT NULL REFERENCES users(id),
    name            TEXT    NOT NULL,
    secret_hash     BYTEA   NOT NULL,
    created_at      BIGINT  NOT NULL,
    revoked         BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE broadcasts (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender_id    BIGINT  NOT NULL REFERENCES users(id),
    org          TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    ack_required BOOLEAN NOT NULL,
    priority     BOOLEAN NOT NULL,
    ts           BIGINT  NOT NULL
);

CREATE TABLE broadcast_acks (
    broadcast_id BIGINT NOT NULL REFERENCES broadcasts(id),
    user_id      BIGINT NOT NULL REFERENCES users(id),
    ts           BIGINT NOT NULL,
    PRIMARY KEY (broadcast_id, user_id)
);

