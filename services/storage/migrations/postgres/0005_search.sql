-- Issue 7: full-text search over messages, and the columns edits and deletions need.
-- (0004 is left to the audit log, developed alongside.) Same meaning as
-- migrations/sqlite/0004_search.sql; see that file for the column comments.
--
-- Upgrading rewrites the messages table once (the stored tsvector column): on a large
-- installation run it in a maintenance window (docs/operations.md).

-- Lets one GIN index hold both the conversation id and the words, so a search reads only
-- the searcher's conversations' entries for each word.
CREATE EXTENSION IF NOT EXISTS btree_gin;

ALTER TABLE messages ADD COLUMN original_body TEXT;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted_at BIGINT;
ALTER TABLE messages ADD COLUMN ref_seq BIGINT;

-- The words of the body as it reads now ('simple': lower-cased words, no stemming and no
-- stop words, whatever the language). Punctuation is blanked first, so words split as
-- SQLite's FTS5 splits them ("budget-2027" is the words budget and 2027, not budget and
-- the number -2027; an e-mail address is its parts). Stored, so ranking reads it instead
-- of parsing every candidate's body again; an edit updates body and so this.
ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (
        to_tsvector('simple', regexp_replace(body, '[[:punct:]]+', ' ', 'g'))
    ) STORED;

-- Only what a search may find: readable messages, not deleted ones (a deletion takes the
-- row out of the index), not edit or delete entries.
CREATE INDEX messages_search ON messages USING gin (conversation_id, search)
    WHERE deleted_at IS NULL AND kind IN ('text', 'broadcast', 'system');
