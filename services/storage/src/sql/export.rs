// The compliance export: SQL shared by the SQLite and PostgreSQL stores (included into
// each backend's `queries` module; see `backend.rs`).
//
// Pages are read by keyset over the primary key `(conversation_id, seq)`, so a page
// costs the same wherever the export is and a resumed export continues exactly where it
// stopped. The time range and sender filters are applied to the rows the key range
// yields: an export reads through the conversations it covers once. A page's edits and
// deletions (entries whose `ref_seq` names one of its messages) come from the
// `messages_thread` index, its reactions from the `reactions` primary key, one query of
// each per conversation in the page.

use switchboard_protocol::rest::{
    ExportConversation, ExportEdit, ExportReaction, ExportRecord,
};

use crate::{ExportPage, ExportQuery};

/// `$N, $N+1, ..` for `count` values starting at placeholder `first`.
fn placeholders(first: usize, count: usize) -> String {
    (0..count).map(|i| format!("${}", first + i)).collect::<Vec<_>>().join(", ")
}

/// The WHERE conditions of an export after the time range (`$1`, `$2`) and, when
/// `keyed`, the cursor (`$3`, `$4`): the conversation and sender lists, in that order.
/// Returns the conditions and the next free placeholder.
fn export_filter(query: &ExportQuery, keyed: bool) -> (String, usize) {
    let mut sql = String::from("m.ts >= $1 AND m.ts < $2 AND m.kind IN ('text', 'broadcast', 'system')");
    let mut next = 3;
    if keyed {
        sql.push_str(" AND (m.conversation_id, m.seq) > ($3, $4)");
        next = 5;
    }
    if !query.conversations.is_empty() {
        let list = placeholders(next, query.conversations.len());
        sql.push_str(&format!(" AND m.conversation_id IN ({list})"));
        next += query.conversations.len();
    }
    if !query.senders.is_empty() {
        let list = placeholders(next, query.senders.len());
        sql.push_str(&format!(" AND m.sender_id IN ({list})"));
        next += query.senders.len();
    }
    (sql, next)
}

/// Fails with `ConversationNotFound` for the first conversation of the filter that does
/// not exist.
async fn check_conversations_exist(conn: &mut Conn, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!("SELECT id FROM conversations WHERE id IN ({})", placeholders(1, ids.len()));
    let mut q = sqlx::query_scalar::<_, i64>(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    let found: BTreeSet<i64> = q.fetch_all(&mut *conn).await?.into_iter().collect();
    match ids.iter().find(|id| !found.contains(id)) {
        Some(missing) => Err(StoreError::ConversationNotFound(*missing)),
        None => Ok(()),
    }
}

pub async fn export_count(pool: &Pool, query: &ExportQuery) -> Result<i64> {
    let mut conn = pool.acquire().await?;
    check_conversations_exist(&mut conn, &query.conversations).await?;
    let (filter, _) = export_filter(query, false);
    let sql = format!("SELECT COUNT(*) FROM messages m WHERE {filter}");
    let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(query.from).bind(query.to);
    for id in query.conversations.iter().chain(&query.senders) {
        q = q.bind(*id);
    }
    Ok(q.fetch_one(&mut *conn).await?)
}

pub async fn export(pool: &Pool, query: &ExportQuery) -> Result<ExportPage> {
    let mut conn = pool.acquire().await?;
    check_conversations_exist(&mut conn, &query.conversations).await?;
    let (filter, next) = export_filter(query, true);
    let limit = i64::from(query.limit.clamp(1, MAX_PAGE));
    let sql = format!(
        "SELECT m.conversation_id, {MESSAGE_COLUMNS_ANY_CONVERSATION}, m.body AS stored_body, m.original_body,
                m.deleted_at, u.display_name, c.kind AS conversation_kind,
                c.name AS conversation_name
         FROM messages m JOIN users u ON u.id = m.sender_id
         JOIN conversations c ON c.id = m.conversation_id
         WHERE {filter}
         ORDER BY m.conversation_id, m.seq LIMIT ${next}"
    );
    let (after_conversation, after_seq) = query.after.unwrap_or((0, 0));
    let mut q = sqlx::query(&sql).bind(query.from).bind(query.to);
    q = q.bind(after_conversation).bind(after_seq);
    for id in query.conversations.iter().chain(&query.senders) {
        q = q.bind(*id);
    }
    let rows = q.bind(limit + 1).fetch_all(&mut *conn).await?;
    let has_more = rows.len() as i64 > limit;
    let mut records = Vec::with_capacity(rows.len());
    for row in rows.iter().take(limit as usize) {
        let conversation: i64 = row.try_get("conversation_id")?;
        let mut message = message_from_row(conversation, row)?;
        message.body = row.try_get("stored_body")?;
        let kind: String = row.try_get("conversation_kind")?;
        records.push(ExportRecord {
            conversation: ExportConversation {
                id: conversation,
                kind: ConversationKind::parse(&kind).unwrap_or(ConversationKind::Group),
                name: row.try_get("conversation_name")?,
                members: Vec::new(),
            },
            message,
            sender_name: row.try_get("display_name")?,
            original_body: row.try_get("original_body")?,
            edits: Vec::new(),
            deleted_at: row.try_get("deleted_at")?,
            deleted_by: None,
            reactions: Vec::new(),
        });
    }
    // The page's conversations, each a run of consecutive records.
    let mut start = 0;
    while start < records.len() {
        let id = records[start].conversation.id;
        let end = start + records[start..].iter().take_while(|r| r.conversation.id == id).count();
        complete_records(&mut conn, &mut records[start..end]).await?;
        start = end;
    }
    // The files each message carries, a deleted message's too (kept for this export).
    let mut messages: Vec<Message> = records.iter().map(|r| r.message.clone()).collect();
    attach_files(&mut conn, &mut messages, false).await?;
    for (record, message) in records.iter_mut().zip(messages) {
        record.message.attachments = message.attachments;
    }
    Ok(ExportPage { records, has_more })
}

/// Adds the edits, deletion, reactions and (for a direct conversation) the members to
/// `records`, all of one conversation.
async fn complete_records(conn: &mut Conn, records: &mut [ExportRecord]) -> Result<()> {
    let Some(first) = records.first() else { return Ok(()) };
    let conversation = first.conversation.id;
    let members: Vec<String> = if first.conversation.kind == ConversationKind::Direct {
        sqlx::query_scalar(
            "SELECT u.username FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = $1 ORDER BY u.username",
        )
        .bind(conversation)
        .fetch_all(&mut *conn)
        .await?
    } else {
        Vec::new()
    };
    let seqs: Vec<i64> = records.iter().map(|r| r.message.seq).collect();
    let position = |seq: i64| seqs.binary_search(&seq).ok();
    let list = placeholders(2, seqs.len());

    let sql = format!(
        "SELECT m.seq, m.kind, m.body, m.ts, m.ref_seq, u.username
         FROM messages m JOIN users u ON u.id = m.sender_id
         WHERE m.conversation_id = $1 AND m.ref_seq IN ({list}) AND m.kind IN ('edit', 'delete')
         ORDER BY m.seq"
    );
    let mut q = sqlx::query(&sql).bind(conversation);
    for seq in &seqs {
        q = q.bind(*seq);
    }
    for row in q.fetch_all(&mut *conn).await? {
        let Some(i) = row.try_get::<Option<i64>, _>("ref_seq")?.and_then(position) else {
            continue;
        };
        let kind: String = row.try_get("kind")?;
        let by: String = row.try_get("username")?;
        let ts: i64 = row.try_get("ts")?;
        if kind == "edit" {
            let (seq, body) = (row.try_get("seq")?, row.try_get("body")?);
            records[i].edits.push(ExportEdit { seq, edited_at: ts, by, body });
        } else {
            records[i].deleted_by = Some(by);
            records[i].deleted_at.get_or_insert(ts);
        }
    }

    let sql = format!(
        "SELECT r.seq, r.emoji, u.username FROM reactions r JOIN users u ON u.id = r.user_id
         WHERE r.conversation_id = $1 AND r.seq IN ({list})
         ORDER BY r.seq, r.ts, r.emoji, u.username"
    );
    let mut q = sqlx::query(&sql).bind(conversation);
    for seq in &seqs {
        q = q.bind(*seq);
    }
    for row in q.fetch_all(&mut *conn).await? {
        let Some(i) = position(row.try_get("seq")?) else { continue };
        let (emoji, user): (String, String) = (row.try_get("emoji")?, row.try_get("username")?);
        let reactions = &mut records[i].reactions;
        match reactions.iter_mut().find(|r| r.emoji == emoji) {
            Some(r) => r.users.push(user),
            None => reactions.push(ExportReaction { emoji, users: vec![user] }),
        }
    }
    for record in records.iter_mut() {
        record.conversation.members.clone_from(&members);
    }
    Ok(())
}
