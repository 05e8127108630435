-- The word dictionary (`search_words`, migration 0013) is kept off the append path. 0013's
-- statement triggers looked up every appended message's words inside `append_batch`,
-- while the batch held its conversations' row locks: about 15% of PostgreSQL's CPU per
-- delivered message (docs/benchmarks.md, "What indexing costs the append path"). Now a
-- background task of the storage service, the harvester (src/postgres/search_words.rs),
-- adds the words of new messages about once a second, so a prefix search sees a new
-- word that late (docs/protocol.md, "search"). PostgreSQL only, as 0013.

-- Dropped first: DROP TRIGGER locks `messages` until this migration commits, so an
-- append still running finishes (its words added by the trigger) before the progress
-- below is read, and every later append is the harvester's.
DROP TRIGGER messages_search_words_insert ON messages;
DROP TRIGGER messages_search_words_update ON messages;
DROP FUNCTION search_words_add();

-- Per conversation, the seq up to which the harvester has added its messages' words. No
-- foreign key to `conversations`: checking one would lock the conversation's row (FOR
-- KEY SHARE), which appends hold FOR UPDATE. A conversation without a row has none
-- harvested yet. Only the harvester writes here.
CREATE TABLE search_words_progress (
    conversation_id BIGINT PRIMARY KEY,
    seq             BIGINT NOT NULL
);

-- The triggers kept the dictionary current up to now.
INSERT INTO search_words_progress (conversation_id, seq)
SELECT id, last_seq FROM conversations WHERE last_seq > 0;
