-- Group commit in one round trip: the storage service calls this once per batch of
-- appends, outside an explicit transaction, so the whole batch (lock, checks, seqs,
-- inserts, members) is one statement and one commit. See
-- services/storage/src/postgres/append.rs for the caller.
--
-- Each input row may carry an author (bots, webhooks), stored in messages.author. A
-- `system` message (a webhook post) is stored without its sender being a member.
--
-- Outcome per input row (in input order, `i` from 1):
--   0 stored now: conversation_id, seq, ts of the new row; members as of the commit
--   1 a retry of a message stored before (or of an earlier copy in this batch): the
--     stored conversation_id, seq, kind, body, ts, author; no members
--   2 the conversation does not exist
--   3 the sender is not a member of it
CREATE FUNCTION append_batch(
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
            FROM messages m WHERE m.sender_id = k.s AND m.client_msg_id = k.key
            LIMIT 1
        ) p ON TRUE
    ),
    -- Of the allowed rows, each one's first copy in this batch (itself unless a repeat).
    firsts AS (
        SELECT j.i,
               CASE WHEN j.key IS NULL THEN j.i
                    ELSE min(j.i) OVER (PARTITION BY j.s, j.key) END AS first
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
