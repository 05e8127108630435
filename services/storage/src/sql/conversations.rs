// Conversations, membership and messages: SQL shared by the SQLite and PostgreSQL stores.
// Included (not a module) into each backend's `queries` module, which defines `Conn`,
// `Pool` and `DbRow` for its driver; see `backend.rs`. Placeholders are `$N`, which both
// drivers accept. Membership changes write a system message in the same transaction, so
// a client that backfills by seq sees who joined and left in order with the chat.

/// Longest group name accepted, in characters.
const MAX_GROUP_NAME: usize = 200;

/// What a stored message may carry besides its sender, kind and body.
#[derive(Default, Clone, Copy)]
pub struct Extras<'a> {
    pub client_msg_id: Option<&'a str>,
    /// The name an automated message shows (bots, webhooks).
    pub author: Option<&'a str>,
    /// On an edit or delete entry: the seq of the message it changes; on a thread reply:
    /// the thread's root.
    pub ref_seq: Option<i64>,
}

/// Assigns the next seq of `conversation` and stores the message, inside the caller's
/// transaction. The caller has checked membership.
pub async fn insert_message(
    conn: &mut Conn,
    conversation: i64,
    sender: &User,
    kind: MessageKind,
    body: &str,
    extras: Extras<'_>,
) -> Result<Message> {
    let Extras { client_msg_id, author, ref_seq } = extras;
    let seq: i64 = sqlx::query_scalar(
        "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
    )
    .bind(conversation)
    .fetch_one(&mut *conn)
    .await?;
    let ts = now_ms();
    sqlx::query(
        "INSERT INTO messages (conversation_id, seq, sender_id, kind, body, client_msg_id, ts,
                               author, ref_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(conversation)
    .bind(seq)
    .bind(sender.id)
    .bind(kind.as_str())
    .bind(body)
    .bind(client_msg_id)
    .bind(ts)
    .bind(author)
    .bind(ref_seq)
    .execute(&mut *conn)
    .await?;
    Ok(Message {
        conversation_id: conversation,
        seq,
        sender: sender.username.clone(),
        kind,
        body: body.to_owned(),
        client_msg_id: client_msg_id.map(str::to_owned),
        ts,
        author: author.map(str::to_owned),
        ref_seq,
        edited_at: None,
        deleted: false,
        thread_seq: None,
        reply_count: 0,
        reactions: Vec::new(),
        attachments: Vec::new(),
    })
}

/// What a membership check learns about a conversation.
pub struct Membership {
    pub kind: ConversationKind,
    pub owner_id: Option<i64>,
}

/// Fails with `ConversationNotFound` or `NotMember` unless `user` is a member.
pub async fn check_member(
    conn: &mut Conn,
    conversation: i64,
    user: &User,
) -> Result<Membership> {
    let row = sqlx::query(
        "SELECT c.kind, c.owner_id, m.user_id AS member FROM conversations c
         LEFT JOIN members m ON m.conversation_id = c.id AND m.user_id = $1
         WHERE c.id = $2",
    )
    .bind(user.id)
    .bind(conversation)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::ConversationNotFound(conversation))?;
    if row.try_get::<Option<i64>, _>("member")?.is_none() {
        return Err(StoreError::NotMember { conversation, user: user.username.clone() });
    }
    let kind: String = row.try_get("kind")?;
    Ok(Membership {
        kind: ConversationKind::parse(&kind).unwrap_or(ConversationKind::Group),
        owner_id: row.try_get("owner_id")?,
    })
}

/// The conversation with its members; `read_seq` is `viewer_id`'s cursor (0 if not a
/// member). Does not check membership.
async fn load_unchecked(
    conn: &mut Conn,
    conversation: i64,
    viewer_id: i64,
) -> Result<Conversation> {
    let row = sqlx::query(
        "SELECT c.kind, c.name, c.last_seq, COALESCE(m.read_seq, 0) AS read_seq,
                o.username AS owner
         FROM conversations c
         LEFT JOIN members m ON m.conversation_id = c.id AND m.user_id = $1
         LEFT JOIN users o ON o.id = c.owner_id
         WHERE c.id = $2",
    )
    .bind(viewer_id)
    .bind(conversation)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::ConversationNotFound(conversation))?;
    let members = sqlx::query_scalar(
        "SELECT u.username FROM members m JOIN users u ON u.id = m.user_id
         WHERE m.conversation_id = $1 ORDER BY u.username",
    )
    .bind(conversation)
    .fetch_all(&mut *conn)
    .await?;
    let kind: String = row.try_get("kind")?;
    Ok(Conversation {
        id: conversation,
        kind: ConversationKind::parse(&kind).unwrap_or(ConversationKind::Group),
        name: row.try_get("name")?,
        members,
        last_seq: row.try_get("last_seq")?,
        owner: row.try_get("owner")?,
        read_seq: Some(row.try_get("read_seq")?),
    })
}

pub async fn load(
    pool: &Pool,
    conversation: i64,
    viewer: &User,
) -> Result<Conversation> {
    let mut conn = pool.acquire().await?;
    check_member(&mut conn, conversation, viewer).await?;
    load_unchecked(&mut conn, conversation, viewer.id).await
}

pub async fn list(pool: &Pool, user_id: i64) -> Result<Vec<Conversation>> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query(
        "SELECT c.id, c.kind, c.name, c.last_seq, m.read_seq, o.username AS owner
         FROM members m
         JOIN conversations c ON c.id = m.conversation_id
         LEFT JOIN users o ON o.id = c.owner_id
         WHERE m.user_id = $1 ORDER BY c.id",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut conversations = rows
        .iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            Ok(Conversation {
                id: row.try_get("id")?,
                kind: ConversationKind::parse(&kind).unwrap_or(ConversationKind::Group),
                name: row.try_get("name")?,
                members: Vec::new(),
                last_seq: row.try_get("last_seq")?,
                owner: row.try_get("owner")?,
                read_seq: Some(row.try_get("read_seq")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let members = sqlx::query(
        "SELECT other.conversation_id, u.username FROM members mine
         JOIN members other ON other.conversation_id = mine.conversation_id
         JOIN users u ON u.id = other.user_id
         WHERE mine.user_id = $1 ORDER BY other.conversation_id, u.username",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    for row in &members {
        let id: i64 = row.try_get("conversation_id")?;
        if let Ok(i) = conversations.binary_search_by_key(&id, |c| c.id) {
            conversations[i].members.push(row.try_get("username")?);
        }
    }
    Ok(conversations)
}

pub async fn conversation_seqs(pool: &Pool, user_id: i64) -> Result<Vec<(i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.last_seq FROM members m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?)
}

pub async fn open_direct(
    pool: &Pool,
    a: &User,
    b: &User,
) -> Result<(Conversation, bool)> {
    let key = format!("{}:{}", a.id.min(b.id), a.id.max(b.id));
    let mut tx = pool.begin().await?;
    // Two people may open the same pair at once (on different storage replicas): the
    // unique direct_key lets exactly one insert win; the other finds it.
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO conversations (kind, direct_key, created_at) VALUES ('direct', $1, $2)
         ON CONFLICT (direct_key) DO NOTHING RETURNING id",
    )
    .bind(&key)
    .bind(now_ms())
    .fetch_optional(&mut *tx)
    .await?;
    let (id, created) = match inserted {
        Some(id) => {
            let ids: BTreeSet<i64> = [a.id, b.id].into();
            add_rows(&mut tx, id, ids.into_iter()).await?;
            (id, true)
        }
        None => {
            let id = sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = $1")
                .bind(&key)
                .fetch_one(&mut *tx)
                .await?;
            (id, false)
        }
    };
    let conversation = load_unchecked(&mut tx, id, a.id).await?;
    tx.commit().await?;
    Ok((conversation, created))
}

/// Inserts membership rows, skipping existing ones; returns how many were new.
async fn add_rows(
    conn: &mut Conn,
    conversation: i64,
    user_ids: impl Iterator<Item = i64>,
) -> Result<u64> {
    let mut added = 0;
    for user_id in user_ids {
        added += sqlx::query(
            "INSERT INTO members (conversation_id, user_id, joined_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(conversation)
        .bind(user_id)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(added)
}

fn names(users: &[&User]) -> String {
    users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>().join(", ")
}

pub async fn create_group(
    pool: &Pool,
    owner: &User,
    name: &str,
    members: &[User],
) -> Result<(Conversation, Message)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_GROUP_NAME {
        return Err(StoreError::Invalid(format!(
            "a group name must have 1 to {MAX_GROUP_NAME} characters"
        )));
    }
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO conversations (kind, name, owner_id, created_at)
         VALUES ('group', $1, $2, $3) RETURNING id",
    )
    .bind(name)
    .bind(owner.id)
    .bind(now_ms())
    .fetch_one(&mut *tx)
    .await?;
    let mut others: Vec<&User> = members.iter().filter(|u| u.id != owner.id).collect();
    others.sort_by_key(|u| u.id);
    others.dedup_by_key(|u| u.id);
    add_rows(&mut tx, id, std::iter::once(owner.id).chain(others.iter().map(|u| u.id))).await?;
    let body = if others.is_empty() {
        format!("{} created the group \"{name}\"", owner.username)
    } else {
        format!("{} created the group \"{name}\" with {}", owner.username, names(&others))
    };
    let message = insert_message(&mut tx, id, owner, MessageKind::System, &body, Extras::default())
        .await?;
    let conversation = load_unchecked(&mut tx, id, owner.id).await?;
    tx.commit().await?;
    Ok((conversation, message))
}

pub async fn add_members(
    pool: &Pool,
    actor: &User,
    conversation: i64,
    users: &[User],
) -> Result<(Conversation, Message)> {
    let mut tx = pool.begin().await?;
    let membership = check_member(&mut tx, conversation, actor).await?;
    if membership.kind != ConversationKind::Group {
        return Err(StoreError::Invalid("members can only be added to a group".into()));
    }
    let mut added = Vec::new();
    for user in users {
        if add_rows(&mut tx, conversation, std::iter::once(user.id)).await? > 0 {
            added.push(user);
        }
    }
    if added.is_empty() {
        return Err(StoreError::Invalid("all of them are already members".into()));
    }
    let body = format!("{} added {}", actor.username, names(&added));
    let message =
        insert_message(&mut tx, conversation, actor, MessageKind::System, &body, Extras::default())
        .await?;
    let conversation = load_unchecked(&mut tx, conversation, actor.id).await?;
    tx.commit().await?;
    Ok((conversation, message))
}

pub async fn remove_member(
    pool: &Pool,
    actor: &User,
    conversation: i64,
    user: &User,
) -> Result<(Conversation, Message)> {
    let mut tx = pool.begin().await?;
    let membership = check_member(&mut tx, conversation, actor).await?;
    if membership.kind != ConversationKind::Group {
        return Err(StoreError::Invalid("members can only be removed from a group".into()));
    }
    let leaving = actor.id == user.id;
    if !leaving && !actor.admin && membership.owner_id != Some(actor.id) {
        return Err(StoreError::Forbidden("remove other members"));
    }
    let removed = sqlx::query("DELETE FROM members WHERE conversation_id = $1 AND user_id = $2")
        .bind(conversation)
        .bind(user.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed == 0 {
        return Err(StoreError::NotMember { conversation, user: user.username.clone() });
    }
    let body = if leaving {
        format!("{} left", actor.username)
    } else {
        format!("{} removed {}", actor.username, user.username)
    };
    let message =
        insert_message(&mut tx, conversation, actor, MessageKind::System, &body, Extras::default())
        .await?;
    let conversation = load_unchecked(&mut tx, conversation, actor.id).await?;
    tx.commit().await?;
    Ok((conversation, message))
}

/// The columns [`message_from_row`] reads, from `messages m JOIN users u`, with the
/// reply count's subquery reading conversation `$conversation`.
macro_rules! message_columns {
    ($conversation:literal) => {
        concat!(
            "m.seq, m.kind, m.body, m.client_msg_id, m.ts, m.author, m.ref_seq, m.edited_at, \
             m.deleted_at, u.username, (SELECT count(*) FROM messages r \
             WHERE r.conversation_id = ",
            $conversation,
            " AND r.ref_seq = m.seq AND r.kind IN ('text', 'broadcast') \
             AND r.deleted_at IS NULL) AS reply_count"
        )
    };
}

/// [`message_columns!`] for a query of conversation `$1` alone. Its subquery names the
/// conversation `$1`, not `m.conversation_id` (the same value there): on partitioned
/// history (PostgreSQL) it is then planned for that conversation's partition alone. As a
/// correlated subquery it was planned for every partition, on every call (history is
/// planned per call): 3.4-3.9 ms of planning against 0.36 ms with `$1` under load, on
/// every history page and every gap a session fills (docs/benchmarks.md, "History
/// planned for one partition").
const MESSAGE_COLUMNS: &str = message_columns!("$1");

/// [`message_columns!`] for queries over several conversations.
const MESSAGE_COLUMNS_ANY_CONVERSATION: &str = message_columns!("m.conversation_id");

/// A message as readers see it: a deleted one keeps its place with an empty body (its
/// text stays in the row for the compliance export until retention removes it).
fn message_from_row(conversation: i64, row: &DbRow) -> Result<Message> {
    let kind: String = row.try_get("kind")?;
    let deleted = row.try_get::<Option<i64>, _>("deleted_at")?.is_some();
    let change = matches!(kind.as_str(), "edit" | "delete" | "react" | "unreact");
    let ref_seq: Option<i64> = row.try_get("ref_seq")?;
    Ok(Message {
        conversation_id: conversation,
        seq: row.try_get("seq")?,
        sender: row.try_get("username")?,
        kind: MessageKind::parse(&kind).unwrap_or(MessageKind::Text),
        body: if deleted { String::new() } else { row.try_get("body")? },
        client_msg_id: row.try_get("client_msg_id")?,
        ts: row.try_get("ts")?,
        author: row.try_get("author")?,
        // One column, two meanings: the changed message on an edit or delete entry, the
        // thread's root on a reply.
        ref_seq: if change { ref_seq } else { None },
        edited_at: row.try_get("edited_at")?,
        deleted,
        thread_seq: if change { None } else { ref_seq },
        reply_count: row.try_get("reply_count")?,
        reactions: Vec::new(),
        attachments: Vec::new(),
    })
}

/// Message `$1`:`$2`, as a change of it (edit, delete, reaction) checks it.
pub const LIVE_MESSAGE: &str =
    "SELECT sender_id, kind, deleted_at FROM messages WHERE conversation_id = $1 AND seq = $2";

/// Locks conversation `conversation` (its row, which an append takes for its seq too) and
/// reads message `seq` of it, which must exist and not be deleted: returns its sender's id
/// and its kind. Changes of one message (edits, deletions, reactions), on any storage
/// replica, thereby run one after the other: a delete racing an edit is seen by whichever
/// comes second. (A no-op UPDATE: SQLite has no SELECT ... FOR UPDATE, and its one writer
/// serialises anyway.)
pub async fn lock_live_message(conn: &mut Conn, conversation: i64, seq: i64) -> Result<(i64, String)> {
    sqlx::query("UPDATE conversations SET last_seq = last_seq WHERE id = $1")
        .bind(conversation)
        .execute(&mut *conn)
        .await?;
    let target = sqlx::query(LIVE_MESSAGE)
    .bind(conversation)
    .bind(seq)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("message {conversation}:{seq}")))?;
    if target.try_get::<Option<i64>, _>("deleted_at")?.is_some() {
        return Err(StoreError::NotFound(format!("message {conversation}:{seq}")));
    }
    Ok((target.try_get("sender_id")?, target.try_get("kind")?))
}

/// Message `$1`:(sender `$2`, client_msg_id `$3`): a retry's first copy.
pub fn stored_copy_sql() -> String {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m
         JOIN users u ON u.id = m.sender_id
         WHERE m.conversation_id = $1 AND m.sender_id = $2 AND m.client_msg_id = $3"
    )
}

/// The message `sender` already stored in `conversation` under `client_msg_id`, as a
/// retry's answer (`duplicate`, nobody to fan out to again), if any. A key is the
/// sender's within one conversation: the lookup names the conversation, so on
/// partitioned history it reads one partition.
pub async fn stored_copy(
    conn: &mut Conn,
    conversation: i64,
    sender: &User,
    client_msg_id: Option<&str>,
) -> Result<Option<crate::Appended>> {
    let Some(key) = client_msg_id else { return Ok(None) };
    let row = sqlx::query(&stored_copy_sql())
    .bind(conversation)
    .bind(sender.id)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let message = message_from_row(conversation, &row)?;
    Ok(Some(crate::Appended { message, duplicate: true, members: Vec::new() }))
}

/// The newest message of each of the user's conversations that has one, by conversation.
pub async fn last_messages(pool: &Pool, user_id: i64) -> Result<Vec<Message>> {
    // The newest message shown on its own: edit, delete and reaction entries change older
    // ones. The
    // subquery walks the conversation's primary key backwards from the end.
    let sql = format!(
        "SELECT m.conversation_id, {MESSAGE_COLUMNS_ANY_CONVERSATION}
         FROM members mine
         JOIN messages m ON m.conversation_id = mine.conversation_id AND m.seq = (
             SELECT x.seq FROM messages x
             WHERE x.conversation_id = mine.conversation_id AND x.kind NOT IN ('edit', 'delete', 'react', 'unreact')
             ORDER BY x.seq DESC LIMIT 1)
         JOIN users u ON u.id = m.sender_id
         WHERE mine.user_id = $1 ORDER BY m.conversation_id"
    );
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query(&sql).bind(user_id).fetch_all(&mut *conn).await?;
    let mut messages = rows
        .iter()
        .map(|row| message_from_row(row.try_get("conversation_id")?, row))
        .collect::<Result<Vec<_>>>()?;
    attach_files(&mut conn, &mut messages, true).await?;
    Ok(messages)
}

/// A page of `$1`'s messages with `$2 < seq < $3`, at most `$4`, in seq `order` (`ASC`
/// from `$2`: a backfill; `DESC` from `$3`: scrolling back).
pub fn history_sql(order: &str) -> String {
    format!(
        "SELECT {MESSAGE_COLUMNS}
         FROM messages m JOIN users u ON u.id = m.sender_id
         WHERE m.conversation_id = $1 AND m.seq > $2 AND m.seq < $3
         ORDER BY m.seq {order} LIMIT $4"
    )
}

pub async fn history(
    pool: &Pool,
    conversation: i64,
    viewer: &User,
    after: Option<i64>,
    before: Option<i64>,
    limit: u32,
) -> Result<HistoryPage> {
    let mut conn = pool.acquire().await?;
    check_member(&mut conn, conversation, viewer).await?;
    let limit = limit.clamp(1, MAX_PAGE) as i64;
    let before = before.unwrap_or(i64::MAX);
    // One row more than asked tells whether another page exists.
    let (order, lower) = match after {
        Some(after) => ("ASC", after),
        None => ("DESC", 0),
    };
    let rows = sqlx::query(&history_sql(order))
        .bind(conversation)
        .bind(lower)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&mut *conn)
        .await?;
    let has_more = rows.len() as i64 > limit;
    let mut messages = rows
        .iter()
        .take(limit as usize)
        .map(|row| message_from_row(conversation, row))
        .collect::<Result<Vec<_>>>()?;
    if after.is_none() {
        messages.reverse();
    }
    attach_reactions(&mut conn, conversation, viewer, &mut messages).await?;
    attach_files(&mut conn, &mut messages, true).await?;
    Ok(HistoryPage { messages, has_more })
}

pub async fn mark_read(
    pool: &Pool,
    conversation: i64,
    viewer: &User,
    seq: i64,
) -> Result<i64> {
    let mut tx = pool.begin().await?;
    check_member(&mut tx, conversation, viewer).await?;
    // The cursor never passes the newest message and never moves back.
    let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = $1")
        .bind(conversation)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE members SET read_seq = $1
         WHERE conversation_id = $2 AND user_id = $3 AND read_seq < $1",
    )
    .bind(seq.min(last_seq))
    .bind(conversation)
    .bind(viewer.id)
    .execute(&mut *tx)
    .await?;
    let read_seq =
        sqlx::query_scalar("SELECT read_seq FROM members WHERE conversation_id = $1 AND user_id = $2")
            .bind(conversation)
            .bind(viewer.id)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(read_seq)
}

/// Every member's read cursor, by username, for a member of the conversation to see.
pub async fn read_cursors(pool: &Pool, conversation: i64, viewer: &User) -> Result<Vec<(String, i64)>> {
    let mut conn = pool.acquire().await?;
    check_member(&mut conn, conversation, viewer).await?;
    let rows = sqlx::query(
        "SELECT u.username, m.read_seq FROM members m JOIN users u ON u.id = m.user_id
         WHERE m.conversation_id = $1 ORDER BY u.username",
    )
    .bind(conversation)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|row| Ok((row.try_get("username")?, row.try_get("read_seq")?))).collect()
}
