// Emoji reactions: SQL shared by the SQLite and PostgreSQL stores (included into each
// backend's `queries` module; see `backend.rs`).
//
// Who reacted with what lives in `reactions` (one row per message, emoji and person).
// Each change is also a `react` or `unreact` entry with the conversation's next seq and
// `ref_seq` naming the message, like an edit, so a client that backfills by seq
// converges; the entry carries the emoji's count after the change, so applying it is
// setting a number (idempotent), not adding one. History reads attach the counts.

/// Adds (`add`) or takes back `user`'s reaction `emoji` on message `seq`. Returns the
/// entry recording it, with the members to fan it out to, or None when nothing changed
/// (the reaction was already there, or already gone): no entry is stored then.
pub async fn react(
    pool: &Pool,
    user: &User,
    conversation: i64,
    seq: i64,
    emoji: &str,
    add: bool,
) -> Result<Option<crate::Appended>> {
    switchboard_protocol::check_reaction(emoji).map_err(StoreError::Invalid)?;
    let mut tx = pool.begin().await?;
    check_member(&mut tx, conversation, user).await?;
    let (_, kind) = lock_live_message(&mut tx, conversation, seq).await?;
    if !matches!(
        MessageKind::parse(&kind),
        Some(MessageKind::Text | MessageKind::Broadcast | MessageKind::System)
    ) {
        return Err(StoreError::Invalid(format!("a {kind} entry takes no reactions")));
    }
    let changed = if add {
        sqlx::query(
            "INSERT INTO reactions (conversation_id, seq, emoji, user_id, ts)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(conversation)
        .bind(seq)
        .bind(emoji)
        .bind(user.id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
    } else {
        sqlx::query(
            "DELETE FROM reactions
             WHERE conversation_id = $1 AND seq = $2 AND emoji = $3 AND user_id = $4",
        )
        .bind(conversation)
        .bind(seq)
        .bind(emoji)
        .bind(user.id)
        .execute(&mut *tx)
        .await?
    };
    if changed.rows_affected() == 0 {
        return Ok(None);
    }
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM reactions WHERE conversation_id = $1 AND seq = $2 AND emoji = $3",
    )
    .bind(conversation)
    .bind(seq)
    .bind(emoji)
    .fetch_one(&mut *tx)
    .await?;
    let entry_kind = if add { MessageKind::React } else { MessageKind::Unreact };
    let extras = Extras { client_msg_id: None, author: None, ref_seq: Some(seq) };
    let mut entry = insert_message(&mut tx, conversation, user, entry_kind, emoji, extras).await?;
    entry.reactions =
        vec![switchboard_protocol::Reaction { emoji: emoji.to_owned(), count, me: false }];
    let members: Vec<i64> =
        sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = $1")
            .bind(conversation)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Some(crate::Appended { message: entry, duplicate: false, members }))
}

/// Fills in the reactions of `messages` (all of `conversation`) as `viewer` sees them:
/// on a message, every emoji with its count and `me`; on a `react`/`unreact` entry, its
/// emoji's count now (applying entries in seq order then ends at the current count).
/// One query for the page.
pub async fn attach_reactions(
    conn: &mut Conn,
    conversation: i64,
    viewer: &User,
    messages: &mut [Message],
) -> Result<()> {
    let targets: BTreeSet<i64> = messages
        .iter()
        .map(|m| match m.kind {
            MessageKind::React | MessageKind::Unreact => m.ref_seq.unwrap_or(m.seq),
            _ => m.seq,
        })
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    // Placeholders $3.. for the seqs (at most a page, MAX_PAGE + 1, of them).
    let list = (0..targets.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT seq, emoji, COUNT(*) AS n,
                CAST(SUM(CASE WHEN user_id = $2 THEN 1 ELSE 0 END) AS BIGINT) AS mine
         FROM reactions WHERE conversation_id = $1 AND seq IN ({list})
         GROUP BY seq, emoji ORDER BY seq, MIN(ts), emoji"
    );
    let mut query = sqlx::query(&sql).bind(conversation).bind(viewer.id);
    for seq in &targets {
        query = query.bind(*seq);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut by_seq: std::collections::BTreeMap<i64, Vec<switchboard_protocol::Reaction>> =
        std::collections::BTreeMap::new();
    for row in &rows {
        by_seq.entry(row.try_get("seq")?).or_default().push(switchboard_protocol::Reaction {
            emoji: row.try_get("emoji")?,
            count: row.try_get("n")?,
            me: row.try_get::<i64, _>("mine")? > 0,
        });
    }
    for message in messages.iter_mut() {
        match message.kind {
            MessageKind::React | MessageKind::Unreact => {
                let target = message.ref_seq.unwrap_or(message.seq);
                let count = by_seq
                    .get(&target)
                    .and_then(|r| r.iter().find(|r| r.emoji == message.body))
                    .map_or(0, |r| r.count);
                message.reactions = vec![switchboard_protocol::Reaction {
                    emoji: message.body.clone(),
                    count,
                    me: false,
                }];
            }
            _ => message.reactions = by_seq.get(&message.seq).cloned().unwrap_or_default(),
        }
    }
    Ok(())
}
