-- Issue 4: the search index (FTS5) is no longer written inside the append's transaction.
-- Indexing a message there cost the single writer a fifth of its CPU per message and a
-- new index segment, with its pages, per commit (docs/benchmarks.md, "The search index
-- behind the appends"). Now an append only notes the message here; the store's indexer
-- (storage/src/sqlite/mod.rs) indexes what is noted in one transaction about every
-- 250 ms, and a search first indexes whatever is still noted, so it sees every message
-- stored before it as before.

-- Messages stored but not indexed yet, by their index rowid (conversation_id * 2^32 +
-- seq, migration 0004). Small: emptied by every indexing round.
CREATE TABLE message_search_pending (
    id INTEGER PRIMARY KEY
);

DROP TRIGGER message_search_insert;
CREATE TRIGGER message_search_insert AFTER INSERT ON messages
WHEN new.deleted_at IS NULL AND new.kind IN ('text', 'broadcast', 'system')
BEGIN
    INSERT INTO message_search_pending (id) VALUES (new.conversation_id * 4294967296 + new.seq);
END;

-- An edit or deletion of a message still noted changes nothing in the index: the indexer
-- reads the message as it then is (and skips it when deleted).
DROP TRIGGER message_search_update;
CREATE TRIGGER message_search_update AFTER UPDATE OF body, deleted_at ON messages
WHEN old.deleted_at IS NULL AND old.kind IN ('text', 'broadcast', 'system')
    AND NOT EXISTS (SELECT 1 FROM message_search_pending
                    WHERE id = old.conversation_id * 4294967296 + old.seq)
BEGIN
    DELETE FROM message_search WHERE rowid = old.conversation_id * 4294967296 + old.seq;
    INSERT INTO message_search (rowid, body, conv)
    SELECT new.conversation_id * 4294967296 + new.seq, new.body, 'c' || new.conversation_id
    WHERE new.deleted_at IS NULL;
END;

-- Removing a message still noted removes the note; otherwise its index entry.
DROP TRIGGER message_search_delete;
CREATE TRIGGER message_search_delete AFTER DELETE ON messages
WHEN old.deleted_at IS NULL AND old.kind IN ('text', 'broadcast', 'system')
BEGIN
    DELETE FROM message_search WHERE rowid = old.conversation_id * 4294967296 + old.seq
        AND NOT EXISTS (SELECT 1 FROM message_search_pending
                        WHERE id = old.conversation_id * 4294967296 + old.seq);
    DELETE FROM message_search_pending WHERE id = old.conversation_id * 4294967296 + old.seq;
END;
