-- Switchboard's cluster schema (PostgreSQL). Times are milliseconds since the Unix epoch.
-- Same tables and meaning as migrations/sqlite; see that file for the comments.

CREATE TABLE users (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL DEFAULT '',
    org           TEXT    NOT NULL DEFAULT '',
    admin         BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash TEXT    NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'available',
    status_text   TEXT    NOT NULL DEFAULT '',
    created_at    BIGINT  NOT NULL
);

CREATE TABLE tokens (
    hash       BYTEA   PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users(id),
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX tokens_by_user ON tokens(user_id);

CREATE TABLE conversations (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('direct', 'group')),
    name       TEXT    NOT NULL DEFAULT '',
    direct_key TEXT    UNIQUE,
    owner_id   BIGINT  REFERENCES users(id),
    last_seq   BIGINT  NOT NULL DEFAULT 0,
    created_at BIGINT  NOT NULL
);

CREATE TABLE members (
    conversation_id BIGINT NOT NULL REFERENCES conversations(id),
    user_id         BIGINT NOT NULL REFERENCES users(id),
    read_seq        BIGINT NOT NULL DEFAULT 0,
    joined_at       BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_by_user ON members(user_id, conversation_id);

-- Keyed by (conversation_id, seq) so it can be partitioned or sharded by conversation.
CREATE TABLE messages (
    conversation_id BIGINT NOT NULL REFERENCES conversations(id),
    seq             BIGINT NOT NULL,
    sender_id       BIGINT NOT NULL REFERENCES users(id),
    kind            TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    client_msg_id   TEXT,
    ts              BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE UNIQUE INDEX messages_idempotency ON messages(sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
