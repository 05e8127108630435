-- Emoji reactions. Same table and meaning as migrations/sqlite/0008_reactions.sql; see
-- that file for the comments. (0007 and 0008 are left to work developed alongside.)
CREATE TABLE reactions (
    conversation_id BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    emoji           TEXT   NOT NULL,
    user_id         BIGINT NOT NULL REFERENCES users(id),
    ts              BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq, emoji, user_id),
    FOREIGN KEY (conversation_id, seq) REFERENCES messages(conversation_id, seq)
);
