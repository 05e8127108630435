// Retention policies and legal holds: SQL shared by the SQLite and PostgreSQL stores
// (included into each backend's `queries` module; see `backend.rs`).
//
// `retention_policies` has one row per conversation with its own policy, and row 0 for
// the organisation's default; `keep_days` NULL means keep forever. `legal_holds` keeps a
// user's messages (`user_id`) or a whole conversation (`conversation_id`). The sweep
// (`crate::retention`) asks for the conversations a policy applies to, then deletes in
// small transactions; deletes take the search index with them (SQLite's trigger,
// PostgreSQL's tsvector lives in the row), and `conversations.last_seq` never moves back,
// so seqs stay unique and increasing: history just starts later.

/// The policy row standing for the organisation's default.
const ORG_POLICY: i64 = 0;

pub async fn set_retention(
    pool: &Pool,
    conversation: Option<i64>,
    keep_days: Option<i64>,
) -> Result<()> {
    if keep_days.is_some_and(|d| d < 1) {
        return Err(StoreError::Invalid("keep_days must be at least 1".into()));
    }
    let mut tx = pool.begin().await?;
    if let Some(id) = conversation {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM conversations WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        exists.ok_or(StoreError::ConversationNotFound(id))?;
    }
    sqlx::query(
        "INSERT INTO retention_policies (conversation_id, keep_days, updated_at)
         VALUES ($1, $2, $3)
         ON CONFLICT (conversation_id) DO UPDATE SET keep_days = $2, updated_at = $3",
    )
    .bind(conversation.unwrap_or(ORG_POLICY))
    .bind(keep_days)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes a conversation's own policy (it follows the default again), or the default
/// (everything without its own policy is kept forever).
pub async fn clear_retention(pool: &Pool, conversation: Option<i64>) -> Result<()> {
    sqlx::query("DELETE FROM retention_policies WHERE conversation_id = $1")
        .bind(conversation.unwrap_or(ORG_POLICY))
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn retention_policies(
    pool: &Pool,
) -> Result<Vec<switchboard_protocol::rest::RetentionPolicy>> {
    let rows = sqlx::query(
        "SELECT conversation_id, keep_days FROM retention_policies ORDER BY conversation_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get("conversation_id")?;
            Ok(switchboard_protocol::rest::RetentionPolicy {
                conversation_id: (id != ORG_POLICY).then_some(id),
                keep_days: row.try_get("keep_days")?,
            })
        })
        .collect()
}

pub async fn add_hold(
    pool: &Pool,
    user: Option<&User>,
    conversation: Option<i64>,
    reason: &str,
    creator: &User,
) -> Result<switchboard_protocol::rest::LegalHold> {
    if user.is_some() == conversation.is_some() {
        return Err(StoreError::Invalid("a hold names a user or a conversation".into()));
    }
    let mut tx = pool.begin().await?;
    if let Some(id) = conversation {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM conversations WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        exists.ok_or(StoreError::ConversationNotFound(id))?;
    }
    let created_at = now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO legal_holds (user_id, conversation_id, reason, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(user.map(|u| u.id))
    .bind(conversation)
    .bind(reason)
    .bind(creator.id)
    .bind(created_at)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(switchboard_protocol::rest::LegalHold {
        id,
        user: user.map(|u| u.username.clone()),
        conversation_id: conversation,
        reason: reason.to_owned(),
        created_by: creator.username.clone(),
        created_at,
    })
}

pub async fn remove_hold(pool: &Pool, id: i64) -> Result<()> {
    let gone = sqlx::query("DELETE FROM legal_holds WHERE id = $1").bind(id).execute(pool).await?;
    if gone.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("legal hold {id}")));
    }
    Ok(())
}

pub async fn legal_holds(pool: &Pool) -> Result<Vec<switchboard_protocol::rest::LegalHold>> {
    let rows = sqlx::query(
        "SELECT h.id, u.username AS held, h.conversation_id, h.reason, c.username AS creator,
                h.created_at
         FROM legal_holds h
         LEFT JOIN users u ON u.id = h.user_id
         JOIN users c ON c.id = h.created_by
         ORDER BY h.id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(switchboard_protocol::rest::LegalHold {
                id: row.try_get("id")?,
                user: row.try_get("held")?,
                conversation_id: row.try_get("conversation_id")?,
                reason: row.try_get("reason")?,
                created_by: row.try_get("creator")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
}

/// `(conversation, cutoff)` for every conversation whose policy (its own, else the
/// default) deletes messages and that is not on hold: messages with `ts < cutoff` go.
pub async fn retention_targets(pool: &Pool, now: i64) -> Result<Vec<(i64, i64)>> {
    let rows = sqlx::query(
        "SELECT c.id,
                CASE WHEN p.conversation_id IS NULL THEN d.keep_days ELSE p.keep_days END
                    AS keep_days
         FROM conversations c
         LEFT JOIN retention_policies p ON p.conversation_id = c.id
         LEFT JOIN retention_policies d ON d.conversation_id = $1
         WHERE NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.conversation_id = c.id)
         ORDER BY c.id",
    )
    .bind(ORG_POLICY)
    .fetch_all(pool)
    .await?;
    let mut targets = Vec::new();
    for row in &rows {
        if let Some(days) = row.try_get::<Option<i64>, _>("keep_days")? {
            targets.push((row.try_get("id")?, now.saturating_sub(days.saturating_mul(86_400_000))));
        }
    }
    Ok(targets)
}

/// Rows the first statement of a retention transaction deletes; later ones delete as
/// many as the time measured so far says fit in what is left of the budget, up to
/// [`RETENTION_MAX_CHUNK`].
const RETENTION_FIRST_CHUNK: u64 = 32;
/// Most rows one retention statement names (its `IN` list's placeholders).
const RETENTION_MAX_CHUNK: u64 = 500;

/// Deletes messages of `conversation` older than `cutoff`, oldest first, in one
/// transaction, keeping those of users on hold (and all of them if the conversation went
/// on hold meanwhile): chunk after chunk until `limit` went, nothing more is due, or
/// `budget` passed since the transaction began (zero: no time limit). The first chunk is
/// small; each next one is sized from the time per row measured so far, so the
/// transaction overruns its budget by about one row's work. Only messages before the
/// conversation's first one at or after the cutoff are looked at, so a conversation with
/// nothing old costs one index probe; the messages of held users at its start are read
/// again each time.
pub async fn retention_delete(
    pool: &Pool,
    conversation: i64,
    cutoff: i64,
    limit: u32,
    budget: std::time::Duration,
) -> Result<crate::RetentionBatch> {
    let limit = u64::from(limit.max(1));
    let mut timer = crate::slow::WriteTimer::start("retention delete");
    let mut tx = pool.begin().await?;
    timer.began();
    // From here on this transaction holds SQLite's writer (or PostgreSQL's row locks).
    let began = std::time::Instant::now();
    let mut outcome = crate::RetentionBatch::default();
    let mut chunk = RETENTION_FIRST_CHUNK.min(limit);
    let mut seen = 0;
    loop {
        let started = std::time::Instant::now();
        let seqs = retention_chunk(&mut tx, conversation, cutoff, chunk).await?;
        outcome.deleted += retention_delete_seqs(&mut tx, conversation, &seqs).await?;
        // Counted as selected, not as deleted: another sweeper may have taken some.
        seen += seqs.len() as u64;
        if (seqs.len() as u64) < chunk {
            outcome.done = true;
            break;
        }
        if seen >= limit {
            break;
        }
        let spent = began.elapsed();
        if !budget.is_zero() {
            let Some(left) = budget.checked_sub(spent).filter(|left| !left.is_zero()) else {
                break;
            };
            let per_row = started.elapsed().as_nanos() / seqs.len().max(1) as u128;
            let fit = u64::try_from(left.as_nanos() / per_row.max(1)).unwrap_or(u64::MAX);
            if fit == 0 {
                break;
            }
            chunk = fit.min(RETENTION_MAX_CHUNK);
        } else {
            chunk = RETENTION_MAX_CHUNK;
        }
        chunk = chunk.min(limit - seen);
    }
    timer.committing();
    tx.commit().await?;
    timer.done(usize::try_from(outcome.deleted).unwrap_or(usize::MAX));
    Ok(outcome)
}

/// The seqs of the next `limit` due messages of `conversation` (see [`retention_delete`]).
async fn retention_chunk(
    conn: &mut Conn,
    conversation: i64,
    cutoff: i64,
    limit: u64,
) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT m.seq FROM messages m
         WHERE m.conversation_id = $1 AND m.ts < $2
           AND m.seq < COALESCE((SELECT y.seq FROM messages y
                                 WHERE y.conversation_id = $1 AND y.ts >= $2
                                 ORDER BY y.seq LIMIT 1), $3)
           AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.user_id = m.sender_id)
           AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.conversation_id = $1)
         ORDER BY m.seq LIMIT $4",
    )
    .bind(conversation)
    .bind(cutoff)
    .bind(i64::MAX)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?)
}

/// Deletes the messages `seqs` of `conversation` with what refers to them; returns how
/// many messages went.
async fn retention_delete_seqs(conn: &mut Conn, conversation: i64, seqs: &[i64]) -> Result<u64> {
    if seqs.is_empty() {
        return Ok(0);
    }
    let list = (0..seqs.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
    // The files' objects are queued for the retention job to delete from the object
    // store (`attachment_trash`), in this transaction: a key is never lost.
    let trash = format!(
        "INSERT INTO attachment_trash (storage_key, queued_at)
         SELECT storage_key, $2 FROM attachments
         WHERE conversation_id = $1 AND seq IN ({})",
        (0..seqs.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ")
    );
    let mut query = sqlx::query(&trash).bind(conversation).bind(now_ms());
    for seq in seqs {
        query = query.bind(*seq);
    }
    query.execute(&mut *conn).await?;
    // Reactions and attachments first: they refer to their message. Reactions *to* a
    // held user's message stay with it; a held user's reactions to a deleted message go
    // with it.
    let mut deleted = 0;
    for table in ["reactions", "attachments", "messages"] {
        let sql = format!("DELETE FROM {table} WHERE conversation_id = $1 AND seq IN ({list})");
        let mut query = sqlx::query(&sql).bind(conversation);
        for seq in seqs {
            query = query.bind(*seq);
        }
        deleted = query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(deleted)
}
