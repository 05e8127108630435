-- Emoji reactions: who reacted to which message with what. Each change is also stored
-- as a `react` or `unreact` entry in messages (the delivery path); this table is what
-- history counts. (0006 and 0007 are left to work developed alongside.)
CREATE TABLE reactions (
    conversation_id INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    emoji           TEXT    NOT NULL,
    user_id         INTEGER NOT NULL REFERENCES users(id),
    ts              INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq, emoji, user_id),
    FOREIGN KEY (conversation_id, seq) REFERENCES messages(conversation_id, seq)
) WITHOUT ROWID;
