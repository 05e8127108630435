-- Issue 6: the organisation directory, bots, incoming webhooks and org broadcasts.

ALTER TABLE users ADD COLUMN department TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN title TEXT NOT NULL DEFAULT '';
-- a bot account: posts through its API token, its messages carry an author
ALTER TABLE users ADD COLUMN bot INTEGER NOT NULL DEFAULT 0;
-- org-unit subtree this user may broadcast to ('' = none; admins may broadcast anywhere)
ALTER TABLE users ADD COLUMN broadcast_scope TEXT NOT NULL DEFAULT '';
-- highest broadcast id this user's sessions were sent; on sign-in the later ones are sent
ALTER TABLE users ADD COLUMN broadcast_seen INTEGER NOT NULL DEFAULT 0;

-- The name shown on an automated message (bot or webhook); NULL for people's messages.
ALTER TABLE messages ADD COLUMN author TEXT;

-- Incoming webhooks. The URL carries the id and a secret; only the secret's SHA-256 is kept.
CREATE TABLE webhooks (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    creator_id      INTEGER NOT NULL REFERENCES users(id),
    name            TEXT    NOT NULL,
    secret_hash     BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    revoked         INTEGER NOT NULL DEFAULT 0
);

-- One row per broadcast, whatever the number of recipients.
CREATE TABLE broadcasts (
    id           INTEGER PRIMARY KEY,
    sender_id    INTEGER NOT NULL REFERENCES users(id),
    org          TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    ack_required INTEGER NOT NULL,
    priority     INTEGER NOT NULL,
    ts           INTEGER NOT NULL
);

CREATE TABLE broadcast_acks (
    broadcast_id INTEGER NOT NULL REFERENCES broadcasts(id),
    user_id      INTEGER NOT NULL REFERENCES users(id),
    ts           INTEGER NOT NULL,
    PRIMARY KEY (broadcast_id, user_id)
) WITHOUT ROWID;
