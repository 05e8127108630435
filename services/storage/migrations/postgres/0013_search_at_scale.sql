-- Issue 7, search at 10 million messages (docs/benchmarks.md, "Message search"): a time
-- column in the search index, so a search for a common word reads only its newest
-- matches, and a dictionary of the indexed words, so a prefix becomes a few whole words.
-- PostgreSQL only: SQLite's FTS5 (the embedded server's scale) needs neither.
--
-- Upgrading builds a second GIN index and reads every message once (the dictionary):
-- minutes at 10 million messages, in a maintenance window (docs/operations.md).

SET LOCAL maintenance_work_mem = '256MB';

-- The search index again, with a coarse time column between conversation and words: the
-- bucket of 2^28 ms (3.1 days) a message was sent in. A search that expects many matches
-- asks for the newest buckets first (`bucket = ANY(...)`): GIN intersects the three
-- posting lists, so it fetches only those buckets' matches instead of every match in the
-- searcher's conversations. A search that names no bucket reads the index as before.
CREATE INDEX messages_search_by_time ON messages
    USING gin (conversation_id, (ts / 268435456), search)
    WHERE deleted_at IS NULL AND kind IN ('text', 'broadcast', 'system');
DROP INDEX messages_search;

-- Every word that is or was in a searchable message, for prefixes: `proj*` searches the
-- most frequent words starting with "proj" (frequencies from the planner's statistics
-- on messages.search) instead of a GIN partial match, which collects every entry of
-- every such word in the whole table for each conversation searched. Words are only
-- added (by the triggers below, with the message); a word no message holds any more
-- stays and matches nothing. "C" collation: byte order, so a prefix is a range.
CREATE TABLE search_words (
    word TEXT COLLATE "C" PRIMARY KEY
);

-- New words of the inserted or updated rows (edits change the words; deletions and
-- reactions update rows whose words are known already, which costs only lookups).
-- Sorted, so two transactions adding the same new words wait for each other in one
-- order and cannot deadlock; ON CONFLICT DO NOTHING leaves known words untouched (no
-- row lock, no write), so appends to busy conversations do not queue on common words.
CREATE FUNCTION search_words_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_words (word)
    SELECT DISTINCT w.word FROM new_rows r, unnest(tsvector_to_array(r.search)) AS w(word)
    WHERE r.deleted_at IS NULL AND r.kind IN ('text', 'broadcast', 'system')
    ORDER BY w.word
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_search_words_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION search_words_add();
CREATE TRIGGER messages_search_words_update AFTER UPDATE ON messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION search_words_add();

-- The words of messages stored before this migration.
INSERT INTO search_words (word)
SELECT word FROM ts_stat(
    'SELECT search FROM messages
     WHERE deleted_at IS NULL AND kind IN (''text'', ''broadcast'', ''system'')'
);

-- Word frequencies for prefixes and for choosing how to search come from ANALYZE.
ANALYZE messages;
