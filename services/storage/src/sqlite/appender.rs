//! Group commit for message appends.
//!
//! Sends queue up in a bounded channel; one task takes everything waiting (up to
//! [`MAX_BATCH`]) and stores it in one transaction, so one fsync covers many messages.
//! Each sender's reply is sent only after that commit returns: the ack never runs ahead
//! of durability. A database error fails the whole batch and nothing of it is stored, so
//! every sender sees either its seq or a retryable error.

use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use switchboard_protocol::{Message, MessageKind};
use tokio::sync::{mpsc, oneshot};

use super::conversations::{check_member, insert_message};
use crate::{Appended, NewMessage, Result, StoreError};

/// Most messages committed in one transaction.
const MAX_BATCH: usize = 512;
/// Appends waiting for the writer; senders wait (backpressure) when it is full.
const QUEUE: usize = 8192;

pub(super) struct Job {
    message: NewMessage,
    reply: oneshot::Sender<Result<Appended>>,
}

pub(super) fn spawn(writer: SqlitePool) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(writer, rx));
    tx
}

pub(super) async fn append(queue: &mpsc::Sender<Job>, message: NewMessage) -> Result<Appended> {
    let (reply, answer) = oneshot::channel();
    let closed = || StoreError::Unavailable("the message writer has stopped".into());
    queue.send(Job { message, reply }).await.map_err(|_| closed())?;
    answer.await.map_err(|_| closed())?
}

/// Runs until every sender (the store) is dropped and the queue is drained.
async fn run(writer: SqlitePool, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match commit(&writer, &batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "append batch failed");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
    }
}

/// Stores a batch in one transaction. The outer error aborts the batch; inner errors
/// (not a member, unknown conversation) reject one message and keep the rest.
async fn commit(writer: &SqlitePool, batch: &[Job]) -> Result<Vec<Result<Appended>>> {
    let mut conn = writer.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        outcomes.push(append_one(&mut tx, &job.message).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

async fn append_one(conn: &mut SqliteConnection, new: &NewMessage) -> Result<Result<Appended>> {
    if let Some(key) = &new.client_msg_id {
        let row = sqlx::query(
            "SELECT conversation_id, seq, kind, body, ts FROM messages
             WHERE sender_id = ? AND client_msg_id = ?",
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
            };
            return Ok(Ok(Appended { message, duplicate: true }));
        }
    }
    match check_member(conn, new.conversation_id, &new.sender).await {
        Ok(_) => {}
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
    )
    .await?;
    Ok(Ok(Appended { message, duplicate: false }))
}
