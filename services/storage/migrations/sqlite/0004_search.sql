-- Issue 7: full-text search over messages (FTS5), and the columns edits and deletions
-- need. (0003 is left to the audit log, developed alongside.)

-- The text as first sent, kept when the message is edited (body then holds the edited
-- text); NULL for a message never edited. For the compliance export.
ALTER TABLE messages ADD COLUMN original_body TEXT;
-- When the body was last edited.
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
-- When the sender deleted it: history shows a tombstone, search no longer finds it; the
-- text stays for the compliance export until retention removes the row.
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;
-- On an edit or delete entry: the seq of the message it changed.
ALTER TABLE messages ADD COLUMN ref_seq INTEGER;

-- The search index. Contentless (the text lives in messages only); each row's rowid is
-- conversation_id * 2^32 + seq, so a message finds its entry without a lookup table.
-- `conv` holds one token, "c" and the conversation id, so a search names the searcher's
-- conversations in the MATCH and reads only their entries. unicode61 without diacritic
-- removal splits and lower-cases words as PostgreSQL's 'simple' configuration does.
CREATE VIRTUAL TABLE message_search USING fts5(
    body, conv, content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 0'
);

-- Triggers keep the index in step with every path that writes messages (appends, edits,
-- deletions, retention). Searchable: text, broadcast and system messages not deleted.
CREATE TRIGGER message_search_insert AFTER INSERT ON messages
WHEN new.deleted_at IS NULL AND new.kind IN ('text', 'broadcast', 'system')
BEGIN
    INSERT INTO message_search (rowid, body, conv)
    VALUES (new.conversation_id * 4294967296 + new.seq, new.body, 'c' || new.conversation_id);
END;

CREATE TRIGGER message_search_update AFTER UPDATE OF body, deleted_at ON messages
WHEN old.deleted_at IS NULL AND old.kind IN ('text', 'broadcast', 'system')
BEGIN
    DELETE FROM message_search WHERE rowid = old.conversation_id * 4294967296 + old.seq;
    INSERT INTO message_search (rowid, body, conv)
    SELECT new.conversation_id * 4294967296 + new.seq, new.body, 'c' || new.conversation_id
    WHERE new.deleted_at IS NULL;
END;

CREATE TRIGGER message_search_delete AFTER DELETE ON messages
WHEN old.deleted_at IS NULL AND old.kind IN ('text', 'broadcast', 'system')
BEGIN
    DELETE FROM message_search WHERE rowid = old.conversation_id * 4294967296 + old.seq;
END;

-- Messages stored before this migration.
INSERT INTO message_search (rowid, body, conv)
SELECT conversation_id * 4294967296 + seq, body, 'c' || conversation_id FROM messages
WHERE kind IN ('text', 'broadcast', 'system');
