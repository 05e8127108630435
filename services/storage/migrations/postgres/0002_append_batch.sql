-- Group commit in one round trip: the storage service calls this once per batch of
-- appends, outside an explicit transaction, so the whole batch (lock, checks, seqs,
-- inserts, members) is one statement and one commit. See
-- services/storage/src/postgres/append.rs for the contract.
--
-- Outcome per input row (in input order, `i` from 1):
--   0 stored now: conversation_id, seq, ts of the new row; members as of the commit
--   1 a retry of a message stored before (or of an earlier copy in this batch): the
--     stored conversation_id, seq, kind, body, ts; no members
--   2 the conversation does not exist
--   3 the sender is not a member of it
CREATE FUNCTION append_batch(
    p_conversation BIGINT[],
    p_sender       BIGINT[],
    p_kind         TEXT[],
    p_body         TEXT[],
    p_key          TEXT[],
    p_ts           BIGINT
)
RETURNS TABLE (
    i               INTEGER,
    outcome         SMALLINT,
    conversation_id BIGINT,
    seq             BIGINT,
    kind            TEXT,
    body            TEXT,
    ts              BIGINT,
    members         BIGINT[]
)
LANGUAGE plpgsql
-- Planned once per connection, not per call: planning the statement below costs about
-- as much as running it for a small batch. A plan made while the tables were small (a
-- new installation) would scan them whole for as long as the connection lives, so the
-- plan may not scan tables: every access below is a lookup by a key that has an index.
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
        SELECT t.i::INTEGER AS i, t.c, t.s, t.kind, t.body, t.key
        FROM UNNEST(p_conversation, p_sender, p_kind, p_body, p_key)
             WITH ORDINALITY AS t(c, s, kind, body, key, i)
    ),
    prior AS (
        SELECT k.i, m.conversation_id, m.seq, m.kind, m.body, m.ts
        FROM k JOIN messages m ON m.sender_id = k.s AND m.client_msg_id = k.key
    ),
    judged AS (
        SELECT k.*,
               CASE WHEN p.i IS NOT NULL THEN 1
                    WHEN c.id IS NULL THEN 2
                    WHEN mb.user_id IS NULL THEN 3
                    ELSE 0 END AS verdict
        FROM k
        LEFT JOIN prior p ON p.i = k.i
        LEFT JOIN conversations c ON c.id = k.c
        LEFT JOIN members mb ON mb.conversation_id = k.c AND mb.user_id = k.s
    ),
    -- Of the allowed rows, each one's first copy in this batch (itself unless a repeat).
    firsts AS (
        SELECT j.i,
               CASE WHEN j.key IS NULL THEN j.i
                    ELSE min(j.i) OVER (PARTITION BY j.s, j.key) END AS first
        FROM judged j WHERE j.verdict = 0
    ),
    fresh AS (
        SELECT j.i, j.c, j.s, j.kind, j.body, j.key,
               row_number() OVER (PARTITION BY j.c ORDER BY j.i) AS n
        FROM judged j JOIN firsts f ON f.i = j.i AND f.first = j.i
    ),
    bumped AS (
        UPDATE conversations cv SET last_seq = cv.last_seq + x.n
        FROM (SELECT fresh.c, count(*) AS n FROM fresh GROUP BY fresh.c) x
        WHERE cv.id = x.c
        RETURNING cv.id, cv.last_seq - x.n AS base
    ),
    placed AS (
        SELECT f.i, f.c, b.base + f.n AS seq, f.s, f.kind, f.body, f.key
        FROM fresh f JOIN bumped b ON b.id = f.c
    ),
    inserted AS (
        INSERT INTO messages AS m (conversation_id, seq, sender_id, kind, body, client_msg_id, ts)
        SELECT pl.c, pl.seq, pl.s, pl.kind, pl.body, pl.key, p_ts FROM placed pl
    ),
    mem AS (
        SELECT mb.conversation_id, array_agg(mb.user_id) AS ids
        FROM members mb WHERE mb.conversation_id IN (SELECT b.id FROM bumped b)
        GROUP BY mb.conversation_id
    )
    SELECT j.i,
           (CASE WHEN j.verdict <> 0 THEN j.verdict WHEN pl.i IS NOT NULL THEN 0 ELSE 1 END)::SMALLINT,
           COALESCE(p.conversation_id, pl.c, pf.c),
           COALESCE(p.seq, pl.seq, pf.seq),
           COALESCE(p.kind, j.kind),
           COALESCE(p.body, j.body),
           COALESCE(p.ts, p_ts),
           mem.ids
    FROM judged j
    LEFT JOIN prior p ON p.i = j.i
    LEFT JOIN placed pl ON pl.i = j.i
    LEFT JOIN firsts f ON f.i = j.i
    LEFT JOIN placed pf ON pl.i IS NULL AND pf.i = f.first
    LEFT JOIN mem ON mem.conversation_id = pl.c
    ORDER BY j.i;
END
$$;
