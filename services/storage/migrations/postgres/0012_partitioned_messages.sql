-- Issue 11: partitioned history. `messages` becomes hash-partitioned by conversation, so
-- every message of a conversation lives in one partition and every hot-path statement
-- (they all name one conversation) reads or writes that partition alone. The same shape
-- (key (conversation_id, seq), every unique index holding conversation_id) is what a
-- distributed SQL engine that shards by a key needs; see docs/scaling.md.
--
-- 16 partitions (docs/scaling.md, "Choosing the partition count"): a hash partition of
-- modulus 16 can later be split in two of modulus 32 (remainders r and r + 16) one at a
-- time, without touching the others.
--
-- Existing installations: the table is rebuilt in place, in this migration's transaction
-- (a new partitioned table, every row copied, the old one dropped). Writers and readers
-- of messages wait for it; on a large installation run it in a maintenance window
-- (docs/operations.md, "Upgrading to partitioned history").
--
-- SQLite keeps one table (migrations/sqlite/0012); only the retry index changes there.

ALTER TABLE messages RENAME TO messages_unpartitioned;

-- The columns of 0001, 0002, 0005 in their order, same types and meaning.
CREATE TABLE messages (
    conversation_id BIGINT NOT NULL
        CONSTRAINT messages_conversation_id_fkey REFERENCES conversations(id),
    seq             BIGINT NOT NULL,
    sender_id       BIGINT NOT NULL CONSTRAINT messages_sender_id_fkey REFERENCES users(id),
    kind            TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    client_msg_id   TEXT,
    ts              BIGINT NOT NULL,
    author          TEXT,
    original_body   TEXT,
    edited_at       BIGINT,
    deleted_at      BIGINT,
    ref_seq         BIGINT,
    search          tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', regexp_replace(body, '[[:punct:]]+', ' ', 'g'))
    ) STORED
) PARTITION BY HASH (conversation_id);

DO $$
BEGIN
    FOR r IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE messages_p%s PARTITION OF messages FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            lpad(r::text, 2, '0'), r);
    END LOOP;
END
$$;

-- Copied before the indexes exist: building them once over the loaded rows is cheaper
-- than maintaining them row by row. (The generated column is computed again.)
INSERT INTO messages (conversation_id, seq, sender_id, kind, body, client_msg_id, ts, author,
                      original_body, edited_at, deleted_at, ref_seq)
SELECT conversation_id, seq, sender_id, kind, body, client_msg_id, ts, author,
       original_body, edited_at, deleted_at, ref_seq
FROM messages_unpartitioned;

-- Reactions refer to their message; the reference moves to the new table.
ALTER TABLE reactions DROP CONSTRAINT reactions_conversation_id_seq_fkey;
DROP TABLE messages_unpartitioned;

ALTER TABLE messages ADD PRIMARY KEY (conversation_id, seq);
-- A retry is found by (conversation, sender, key): every unique index of a partitioned
-- (or sharded) table must hold the partition key. A client names the conversation when
-- it retries, so the lookup reads one partition.
CREATE UNIQUE INDEX messages_idempotency ON messages (conversation_id, sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_search ON messages USING gin (conversation_id, search)
    WHERE deleted_at IS NULL AND kind IN ('text', 'broadcast', 'system');
CREATE INDEX messages_thread ON messages (conversation_id, ref_seq, kind, deleted_at)
    WHERE ref_seq IS NOT NULL;

ALTER TABLE reactions ADD CONSTRAINT reactions_conversation_id_seq_fkey
    FOREIGN KEY (conversation_id, seq) REFERENCES messages (conversation_id, seq);

ANALYZE messages;

-- append_batch (0003) again, with the retry found by (conversation, sender, key): the
-- lookup names its conversation, so it reads one partition (pruned when the plan runs,
-- per row: the plan is generic), and a key repeated in one batch is a retry only within
-- its conversation. Everything else as in 0003, whose comments explain it.
CREATE OR REPLACE FUNCTION append_batch(
    p_conversation BIGINT[],
    p_sender       BIGINT[],
    p_kind         TEXT[],
    p_body         TEXT[],
    p_key          TEXT[],
    p_ts           BIGINT,
    p_author       TEXT[]
)
RETURNS TABLE (
    i               INTEGER,
    outcome         SMALLINT,
    conversation_id BIGINT,
    seq             BIGINT,
    kind            TEXT,
    body            TEXT,
    ts              BIGINT,
    members         BIGINT[],
    author          TEXT
)
LANGUAGE plpgsql
-- Planned once per connection, not per call: planning the statement below costs about
-- as much as running it for a batch of ten. A cached plan outlives the statistics it was
-- made with (a new installation's tables are empty; a month later they hold millions of
-- rows), so it must not depend on them: every table is reached by a lookup on an indexed
-- key given per row (LATERAL and correlated scalar subqueries, whose LIMIT keeps the
-- planner from turning them into joins or hashed subplans that read the whole table;
-- `= ANY (ARRAY(...))`), and scans of whole tables are ruled out. Joins left to the
-- planner are between the batch's own rows.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    -- Lock the conversations first, in ascending id order: concurrent batches (other
    -- appenders, other storage replicas) then queue instead of deadlocking, and no
    -- membership change (which locks the row too) can interleave. The statement below
    -- takes its snapshot after these locks are held.
    PERFORM 1 FROM conversations c WHERE c.id = ANY (p_conversation) ORDER BY c.id FOR UPDATE;

    RETURN QUERY
    WITH k AS (
        SELECT t.i::INTEGER AS i, t.c, t.s, t.kind, t.body, t.key, t.author
        FROM UNNEST(p_conversation, p_sender, p_kind, p_body, p_key, p_author)
             WITH ORDINALITY AS t(c, s, kind, body, key, author, i)
    ),
    judged AS (
        SELECT k.*, p.conversation_id AS prior_c, p.seq AS prior_seq, p.kind AS prior_kind,
               p.body AS prior_body, p.ts AS prior_ts, p.author AS prior_author,
               CASE WHEN p.seq IS NOT NULL THEN 1
                    WHEN (SELECT c.id FROM conversations c WHERE c.id = k.c LIMIT 1) IS NULL
                        THEN 2
                    WHEN k.kind <> 'system' AND (
                        SELECT mb.user_id FROM members mb
                        WHERE mb.conversation_id = k.c AND mb.user_id = k.s LIMIT 1) IS NULL
                        THEN 3
                    ELSE 0 END AS verdict
        FROM k
        -- Stored before: a retry.
        LEFT JOIN LATERAL (
            SELECT m.conversation_id, m.seq, m.kind, m.body, m.ts, m.author
            FROM messages m
            WHERE m.conversation_id = k.c AND m.sender_id = k.s AND m.client_msg_id = k.key
            LIMIT 1
        ) p ON TRUE
    ),
    -- Of the allowed rows, each one's first copy in this batch (itself unless a repeat).
    firsts AS (
        SELECT j.i,
               CASE WHEN j.key IS NULL THEN j.i
                    ELSE min(j.i) OVER (PARTITION BY j.c, j.s, j.key) END AS first
        FROM judged j WHERE j.verdict = 0
    ),
    fresh AS (
        SELECT j.i, j.c, j.s, j.kind, j.body, j.key, j.author,
               row_number() OVER (PARTITION BY j.c ORDER BY j.i) AS n
        FROM judged j JOIN firsts f ON f.i = j.i AND f.first = j.i
    ),
    counts AS (SELECT fresh.c, count(*) AS n FROM fresh GROUP BY fresh.c),
    bumped AS (
        UPDATE conversations cv
        SET last_seq = cv.last_seq + (SELECT x.n FROM counts x WHERE x.c = cv.id)
        WHERE cv.id = ANY (ARRAY(SELECT x.c FROM counts x))
        RETURNING cv.id, cv.last_seq AS last
    ),
    placed AS (
        SELECT f.i, f.c, b.last - x.n + f.n AS seq, f.s, f.kind, f.body, f.key, f.author
        FROM fresh f JOIN bumped b ON b.id = f.c JOIN counts x ON x.c = f.c
    ),
    inserted AS (
        INSERT INTO messages AS m
            (conversation_id, seq, sender_id, kind, body, client_msg_id, ts, author)
        SELECT pl.c, pl.seq, pl.s, pl.kind, pl.body, pl.key, p_ts, pl.author FROM placed pl
    ),
    mem AS (
        SELECT mb.conversation_id, array_agg(mb.user_id) AS ids
        FROM members mb WHERE mb.conversation_id = ANY (ARRAY(SELECT b.id FROM bumped b))
        GROUP BY mb.conversation_id
    )
    SELECT j.i,
           (CASE WHEN j.verdict <> 0 THEN j.verdict WHEN pl.i IS NOT NULL THEN 0 ELSE 1 END)::SMALLINT,
           COALESCE(j.prior_c, pl.c, pf.c),
           COALESCE(j.prior_seq, pl.seq, pf.seq),
           COALESCE(j.prior_kind, j.kind),
           COALESCE(j.prior_body, j.body),
           COALESCE(j.prior_ts, p_ts),
           mem.ids,
           CASE WHEN j.verdict = 1 THEN j.prior_author ELSE j.author END
    FROM judged j
    LEFT JOIN placed pl ON pl.i = j.i
    LEFT JOIN firsts f ON f.i = j.i
    LEFT JOIN placed pf ON pl.i IS NULL AND pf.i = f.first
    LEFT JOIN mem ON mem.conversation_id = pl.c
    ORDER BY j.i;
END
$$;
