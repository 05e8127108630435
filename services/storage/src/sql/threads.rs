// Threads: SQL shared by the SQLite and PostgreSQL stores (included into each backend's
// `queries` module; see `backend.rs`).
//
// A reply is an ordinary message of its conversation (its own seq, fanned out and
// backfilled like any other) whose `ref_seq` column names the thread's root; readers see
// it as `thread_seq`. Threads are one level deep: a root is a text or broadcast message
// that is not itself a reply. A root's reply count is counted when it is read (the
// partial index `messages_thread` makes that one index probe), so an append never
// updates another row.

/// Stores `message` as a reply in the thread of message `thread_seq` of its conversation.
/// Returns it with the members to fan it out to; a retry with the same `client_msg_id`
/// returns the first one (`duplicate`).
pub async fn reply(
    pool: &Pool,
    message: &crate::NewMessage,
    thread_seq: i64,
) -> Result<crate::Appended> {
    let conversation = message.conversation_id;
    let sender = &message.sender;
    let mut tx = pool.begin().await?;
    if let Some(first) = stored_copy(&mut tx, conversation, sender, message.client_msg_id.as_deref()).await? {
        return Ok(first);
    }
    check_member(&mut tx, conversation, sender).await?;
    let root = sqlx::query(
        "SELECT kind, ref_seq, deleted_at FROM messages WHERE conversation_id = $1 AND seq = $2",
    )
    .bind(conversation)
    .bind(thread_seq)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("message {conversation}:{thread_seq}")))?;
    if root.try_get::<Option<i64>, _>("deleted_at")?.is_some() {
        return Err(StoreError::NotFound(format!("message {conversation}:{thread_seq}")));
    }
    let kind: String = root.try_get("kind")?;
    if !matches!(MessageKind::parse(&kind), Some(MessageKind::Text | MessageKind::Broadcast)) {
        return Err(StoreError::Invalid(format!("a {kind} message cannot start a thread")));
    }
    if root.try_get::<Option<i64>, _>("ref_seq")?.is_some() {
        return Err(StoreError::Invalid(format!(
            "message {conversation}:{thread_seq} is a reply; reply in its thread instead"
        )));
    }
    let mut stored = insert_message(
        &mut tx,
        conversation,
        sender,
        message.kind,
        &message.body,
        Extras {
            client_msg_id: message.client_msg_id.as_deref(),
            author: message.author.as_deref(),
            ref_seq: Some(thread_seq),
        },
    )
    .await?;
    stored.thread_seq = stored.ref_seq.take();
    let members: Vec<i64> =
        sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = $1")
            .bind(conversation)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(crate::Appended { message: stored, duplicate: false, members })
}

/// Message `$1`:`$2`, a thread's root, with its reply count.
pub fn thread_root_sql() -> String {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id
         WHERE m.conversation_id = $1 AND m.seq = $2"
    )
}

/// The replies to message `$1`:`$2` with seq above `$3`, oldest first, at most `$4`.
pub fn thread_replies_sql() -> String {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id
         WHERE m.conversation_id = $1 AND m.ref_seq = $2 AND m.kind IN ('text', 'broadcast')
           AND m.seq > $3
         ORDER BY m.seq ASC LIMIT $4"
    )
}

/// The thread of message `seq`: the root first (with its reply count), then its replies
/// with `seq > after`, oldest first, at most `limit` of them. `has_more`: more replies
/// follow. Deleted replies keep their place, as in history.
pub async fn thread(
    pool: &Pool,
    conversation: i64,
    viewer: &User,
    seq: i64,
    after: Option<i64>,
    limit: u32,
) -> Result<HistoryPage> {
    let mut conn = pool.acquire().await?;
    check_member(&mut conn, conversation, viewer).await?;
    let root = sqlx::query(&thread_root_sql())
    .bind(conversation)
    .bind(seq)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("message {conversation}:{seq}")))?;
    let root = message_from_row(conversation, &root)?;
    if !root.is_content() || root.thread_seq.is_some() {
        return Err(StoreError::Invalid(format!(
            "message {conversation}:{seq} does not start a thread"
        )));
    }
    let limit = limit.clamp(1, MAX_PAGE) as i64;
    let rows = sqlx::query(&thread_replies_sql())
    .bind(conversation)
    .bind(seq)
    .bind(after.unwrap_or(0))
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let has_more = rows.len() as i64 > limit;
    let mut messages = Vec::with_capacity(rows.len().min(limit as usize) + 1);
    messages.push(root);
    for row in rows.iter().take(limit as usize) {
        messages.push(message_from_row(conversation, row)?);
    }
    attach_reactions(&mut conn, conversation, viewer, &mut messages).await?;
    attach_files(&mut conn, &mut messages, true).await?;
    Ok(HistoryPage { messages, has_more })
}
