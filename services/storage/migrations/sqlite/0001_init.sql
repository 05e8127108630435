-- Switchboard's embedded schema (SQLite). Times are milliseconds since the Unix epoch.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL DEFAULT '',
    org           TEXT    NOT NULL DEFAULT '',
    admin         INTEGER NOT NULL DEFAULT 0,
    -- argon2id PHC string
    password_hash TEXT    NOT NULL,
    -- the status the user chose; shown while they have a session
    status        TEXT    NOT NULL DEFAULT 'available',
    status_text   TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL
);

-- Bearer tokens, stored as SHA-256 of the token: a leaked database leaks no usable token.
CREATE TABLE tokens (
    hash       BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_by_user ON tokens(user_id);

CREATE TABLE conversations (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('direct', 'group')),
    name       TEXT    NOT NULL DEFAULT '',
    -- 'low:high' user ids for a direct conversation, so each pair has exactly one
    direct_key TEXT    UNIQUE,
    owner_id   INTEGER REFERENCES users(id),
    -- seq of the newest message; the next message gets last_seq + 1 in the same transaction
    last_seq   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE members (
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    user_id         INTEGER NOT NULL REFERENCES users(id),
    read_seq        INTEGER NOT NULL DEFAULT 0,
    joined_at       INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members(user_id, conversation_id);

CREATE TABLE messages (
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    seq             INTEGER NOT NULL,
    sender_id       INTEGER NOT NULL REFERENCES users(id),
    kind            TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    client_msg_id   TEXT,
    ts              INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
-- A retried send finds its first copy here instead of storing a second one.
CREATE UNIQUE INDEX messages_idempotency ON messages(sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
