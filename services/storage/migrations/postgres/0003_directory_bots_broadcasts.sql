-- Issue 6: the organisation directory, bots, incoming webhooks and org broadcasts.
-- Same tables and meaning as migrations/sqlite; see that file for the comments.

ALTER TABLE users ADD COLUMN department TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN title TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN bot BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN broadcast_scope TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN broadcast_seen BIGINT NOT NULL DEFAULT 0;

ALTER TABLE messages ADD COLUMN author TEXT;

CREATE TABLE webhooks (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id BIGINT  NOT NULL REFERENCES conversations(id),
    creator_id      BIGINT  NOT NULL REFERENCES users(id),
    name            TEXT    NOT NULL,
    secret_hash     BYTEA   NOT NULL,
    created_at      BIGINT  NOT NULL,
    revoked         BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE broadcasts (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender_id    BIGINT  NOT NULL REFERENCES users(id),
    org          TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    ack_required BOOLEAN NOT NULL,
    priority     BOOLEAN NOT NULL,
    ts           BIGINT  NOT NULL
);

CREATE TABLE broadcast_acks (
    broadcast_id BIGINT NOT NULL REFERENCES broadcasts(id),
    user_id      BIGINT NOT NULL REFERENCES users(id),
    ts           BIGINT NOT NULL,
    PRIMARY KEY (broadcast_id, user_id)
);

-- append_batch (0002) again, with the messages' author: each input row may carry one
-- (bots, webhooks), stored in messages.author and answered back. A `system` message (a
-- webhook post) is stored without its sender being a member. Otherwise unchanged; see
-- 0002_append_batch.sql for the contract and outcomes.
DROP FUNCTION append_batch(BIGINT[], BIGINT[], TEXT[], TEXT[], TEXT[], BIGINT);
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
-- As in 0002: re-planning for every batch would double the function's cost.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM conversations c WHERE c.id = ANY (p_conversation) ORDER BY c.id FOR UPDATE;

    RETURN QUERY
    WITH k AS (
        SELECT t.i::INTEGER AS i, t.c, t.s, t.kind, t.body, t.key, t.author
        FROM UNNEST(p_conversation, p_sender, p_kind, p_body, p_key, p_author)
             WITH ORDINALITY AS t(c, s, kind, body, key, author, i)
    ),
    prior AS (
        SELECT k.i, m.conversation_id, m.seq, m.kind, m.body, m.ts, m.author
        FROM k JOIN messages m ON m.sender_id = k.s AND m.client_msg_id = k.key
    ),
    judged AS (
        SELECT k.*,
               CASE WHEN p.i IS NOT NULL THEN 1
                    WHEN c.id IS NULL THEN 2
                    WHEN mb.user_id IS NULL AND k.kind <> 'system' THEN 3
                    ELSE 0 END AS verdict
        FROM k
        LEFT JOIN prior p ON p.i = k.i
        LEFT JOIN conversations c ON c.id = k.c
        LEFT JOIN members mb ON mb.conversation_id = k.c AND mb.user_id = k.s
    ),
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
    bumped AS (
        UPDATE conversations cv SET last_seq = cv.last_seq + x.n
        FROM (SELECT fresh.c, count(*) AS n FROM fresh GROUP BY fresh.c) x
        WHERE cv.id = x.c
        RETURNING cv.id, cv.last_seq - x.n AS base
    ),
    placed AS (
        SELECT f.i, f.c, b.base + f.n AS seq, f.s, f.kind, f.body, f.key, f.author
        FROM fresh f JOIN bumped b ON b.id = f.c
    ),
    inserted AS (
        INSERT INTO messages AS m (conversation_id, seq, sender_id, kind, body, client_msg_id, ts,
                                   author)
        SELECT pl.c, pl.seq, pl.s, pl.kind, pl.body, pl.key, p_ts, pl.author FROM placed pl
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
           mem.ids,
           CASE WHEN p.i IS NOT NULL THEN p.author ELSE j.author END
    FROM judged j
    LEFT JOIN prior p ON p.i = j.i
    LEFT JOIN placed pl ON pl.i = j.i
    LEFT JOIN firsts f ON f.i = j.i
    LEFT JOIN placed pf ON pl.i IS NULL AND pf.i = f.first
    LEFT JOIN mem ON mem.conversation_id = pl.c
    ORDER BY j.i;
END
$$;
