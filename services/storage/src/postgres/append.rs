//! PostgreSQL's group commit: a whole batch in one statement and one round trip.
//!
//! Over a network every statement costs a round trip, and every round trip costs both
//! processes CPU; per-message statements (what suits in-process SQLite, `sql/append.rs`)
//! would cap a storage process at a few hundred messages per second per appender. Here
//! the batch travels as arrays to the `append_batch` function (migration
//! `0003_append_batch.sql`), called outside an explicit transaction: it locks the
//! conversations in ascending id order (so concurrent batches, from other appenders or
//! other storage replicas, cannot deadlock), finds retries, checks membership, reserves
//! each conversation's seqs, inserts every message and reads the members each message
//! fans out to, and commits once. The behaviour is the SQLite path's, checked by the
//! same storage suite.

use sqlx::Row;
use sqlx::postgres::PgPool;
use switchboard_protocol::{Message, MessageKind};

use crate::{Appended, NewMessage, Result, StoreError, now_ms};

/// The one statement of a batch: conversations, senders, kinds, bodies, keys (arrays, one
/// element per message), the time, authors.
pub const APPEND_BATCH: &str = "SELECT * FROM append_batch($1, $2, $3, $4, $5, $6, $7)";

/// Stores `batch` in one transaction; answers in the batch's order. The outer error aborts
/// the whole batch (nothing of it is stored); inner errors (not a member, unknown
/// conversation) reject one message and keep the rest.
pub async fn commit_batch(pool: &PgPool, batch: &[NewMessage]) -> Result<Vec<Result<Appended>>> {
    // One statement, its own transaction: all its time is `statements_ms`.
    let timer = crate::slow::WriteTimer::start("append batch");
    let rows = sqlx::query(APPEND_BATCH)
        .bind(batch.iter().map(|m| m.conversation_id).collect::<Vec<_>>())
        .bind(batch.iter().map(|m| m.sender.id).collect::<Vec<_>>())
        .bind(batch.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|m| m.body.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|m| m.client_msg_id.as_deref()).collect::<Vec<_>>())
        .bind(now_ms())
        .bind(batch.iter().map(|m| m.author.as_deref()).collect::<Vec<_>>())
        .fetch_all(pool)
        .await?;
    timer.done(batch.len());
    if rows.len() != batch.len() {
        return Err(StoreError::Unavailable(format!(
            "append_batch answered {} rows for {} messages",
            rows.len(),
            batch.len()
        )));
    }
    rows.into_iter().zip(batch).map(|(row, new)| outcome(&row, new)).collect()
}

/// One row of `append_batch`'s answer, for the message `new` it answers.
fn outcome(row: &sqlx::postgres::PgRow, new: &NewMessage) -> Result<Result<Appended>> {
    let outcome: i16 = row.try_get("outcome")?;
    let conversation_id = new.conversation_id;
    match outcome {
        0 | 1 => {
            let kind: String = row.try_get("kind")?;
            let message = Message {
                conversation_id: row.try_get("conversation_id")?,
                seq: row.try_get("seq")?,
                sender: new.sender.username.clone(),
                kind: MessageKind::parse(&kind).unwrap_or(MessageKind::Text),
                body: row.try_get("body")?,
                client_msg_id: new.client_msg_id.clone(),
                ts: row.try_get("ts")?,
                author: row.try_get("author")?,
                ref_seq: None,
                edited_at: None,
                deleted: false,
                thread_seq: None,
                reply_count: 0,
                reactions: Vec::new(),
                attachments: Vec::new(),
            };
            let members: Option<Vec<i64>> = row.try_get("members")?;
            let duplicate = outcome == 1;
            Ok(Ok(Appended { message, duplicate, members: members.unwrap_or_default() }))
        }
        2 => Ok(Err(StoreError::ConversationNotFound(conversation_id))),
        3 => Ok(Err(StoreError::NotMember {
            conversation: conversation_id,
            user: new.sender.username.clone(),
        })),
        other => Err(StoreError::Unavailable(format!("append_batch answered outcome {other}"))),
    }
}
