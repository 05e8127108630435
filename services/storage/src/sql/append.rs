// Storing a batch of appends in one transaction, a few statements per message: right for
// in-process SQLite, where a statement costs no round trip (PostgreSQL has a set-based
// version in `postgres/append.rs`). Included into SQLite's `queries` module.

use crate::{Appended, NewMessage};

/// Stores a batch in one transaction; answers in the batch's order. The outer error
/// aborts the whole batch (nothing of it is stored); inner errors (not a member, unknown
/// conversation) reject one message and keep the rest.
///
/// Messages are stored in conversation order (stable, so one conversation keeps its
/// order): every transaction then locks conversation rows in ascending id order, and
/// concurrent batches (other appenders, other storage replicas) cannot deadlock.
pub async fn commit_batch(pool: &Pool, batch: &[NewMessage]) -> Result<Vec<Result<Appended>>> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch[i].conversation_id);
    let mut tx = pool.begin().await?;
    let mut outcomes: Vec<Option<Result<Appended>>> = (0..batch.len()).map(|_| None).collect();
    for i in order {
        outcomes[i] = Some(append_one(&mut tx, &batch[i]).await?);
    }
    tx.commit().await?;
    Ok(outcomes.into_iter().flatten().collect())
}

async fn append_one(conn: &mut Conn, new: &NewMessage) -> Result<Result<Appended>> {
    if let Some(key) = &new.client_msg_id {
        let row = sqlx::query(
            "SELECT conversation_id, seq, kind, body, ts, author FROM messages
             WHERE sender_id = $1 AND client_msg_id = $2",
        )
        .bind(new.sender.id)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            let kind: String = row.try_get("kind")?;
            let message = Message {
                conversation_id: row.try_get("conversation_id")?,
                seq: row.try_get("seq")?,
                sender: new.sender.username.clone(),
                kind: MessageKind::parse(&kind).unwrap_or(MessageKind::Text),
                body: row.try_get("body")?,
                client_msg_id: Some(key.clone()),
                ts: row.try_get("ts")?,
                author: row.try_get("author")?,
            };
            return Ok(Ok(Appended { message, duplicate: true, members: Vec::new() }));
        }
    }
    match check_member(conn, new.conversation_id, &new.sender).await {
        Ok(_) => {}
        // System messages (webhook posts) are written by the server, not by a member.
        Err(StoreError::NotMember { .. }) if new.kind == MessageKind::System => {}
        Err(e @ (StoreError::NotMember { .. } | StoreError::ConversationNotFound(_))) => {
            return Ok(Err(e));
        }
        Err(e) => return Err(e),
    }
    let message = insert_message(
        conn,
        new.conversation_id,
        &new.sender,
        new.kind,
        &new.body,
        new.client_msg_id.as_deref(),
        new.author.as_deref(),
    )
    .await?;
    let members: Vec<i64> =
        sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = $1")
            .bind(new.conversation_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(Ok(Appended { message, duplicate: false, members }))
}
