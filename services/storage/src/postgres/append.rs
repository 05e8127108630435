//! PostgreSQL's group commit: a whole batch in six statements, whatever its size.
//!
//! Over a network every statement costs a round trip, so the per-message statements that
//! suit in-process SQLite (`sql/append.rs`) would cap a storage process at a few hundred
//! messages per second per appender. Here the batch travels as arrays (`UNNEST`): one
//! query finds retries, one checks membership, one locks the conversations in ascending
//! id order (so concurrent batches, from other appenders or other storage replicas,
//! cannot deadlock), one reserves each conversation's seqs, one inserts every message,
//! and one reads the members each message fans out to.
//! The behaviour is the SQLite path's, checked by the same storage suite.

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;
use sqlx::postgres::PgPool;
use switchboard_protocol::{Message, MessageKind};

use crate::{Appended, NewMessage, Result, StoreError, now_ms};

/// Stores `batch` in one transaction; answers in the batch's order. The outer error aborts
/// the whole batch (nothing of it is stored); inner errors (not a member, unknown
/// conversation) reject one message and keep the rest.
pub async fn commit_batch(pool: &PgPool, batch: &[NewMessage]) -> Result<Vec<Result<Appended>>> {
    let mut tx = pool.begin().await?;
    let mut outcomes: Vec<Option<Result<Appended>>> = (0..batch.len()).map(|_| None).collect();

    // Retries of messages stored before: answer with the stored message.
    let keyed: Vec<(i64, &str)> = batch
        .iter()
        .filter_map(|m| m.client_msg_id.as_deref().map(|key| (m.sender.id, key)))
        .collect();
    let mut stored: HashMap<(i64, String), Message> = HashMap::new();
    if !keyed.is_empty() {
        let (senders, keys): (Vec<i64>, Vec<&str>) = keyed.into_iter().unzip();
        let rows = sqlx::query(
            "SELECT m.sender_id, m.client_msg_id, m.conversation_id, m.seq, m.kind, m.body, m.ts
             FROM messages m
             JOIN UNNEST($1::bigint[], $2::text[]) AS k(sender_id, client_msg_id)
               ON m.sender_id = k.sender_id AND m.client_msg_id = k.client_msg_id",
        )
        .bind(&senders)
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let key: String = row.try_get("client_msg_id")?;
            let sender: i64 = row.try_get("sender_id")?;
            let kind: String = row.try_get("kind")?;
            let message = Message {
                conversation_id: row.try_get("conversation_id")?,
                seq: row.try_get("seq")?,
                sender: String::new(), // filled from the batch below
                kind: MessageKind::parse(&kind).unwrap_or(MessageKind::Text),
                body: row.try_get("body")?,
                client_msg_id: Some(key.clone()),
                ts: row.try_get("ts")?,
            };
            stored.insert((sender, key), message);
        }
    }

    // Membership of every sender in its target conversation.
    let conversations: Vec<i64> = batch.iter().map(|m| m.conversation_id).collect();
    let senders: Vec<i64> = batch.iter().map(|m| m.sender.id).collect();
    let rows = sqlx::query(
        "SELECT k.i, c.id IS NOT NULL AS found, m.user_id IS NOT NULL AS member
         FROM UNNEST($1::bigint[], $2::bigint[]) WITH ORDINALITY AS k(conversation_id, user_id, i)
         LEFT JOIN conversations c ON c.id = k.conversation_id
         LEFT JOIN members m ON m.conversation_id = k.conversation_id AND m.user_id = k.user_id",
    )
    .bind(&conversations)
    .bind(&senders)
    .fetch_all(&mut *tx)
    .await?;
    let mut allowed = vec![false; batch.len()];
    for row in rows {
        let i = usize::try_from(row.try_get::<i64, _>("i")? - 1).unwrap_or(usize::MAX);
        let Some(new) = batch.get(i) else { continue };
        if !row.try_get::<bool, _>("found")? {
            outcomes[i] = Some(Err(StoreError::ConversationNotFound(new.conversation_id)));
        } else if !row.try_get::<bool, _>("member")? {
            outcomes[i] = Some(Err(StoreError::NotMember {
                conversation: new.conversation_id,
                user: new.sender.username.clone(),
            }));
        } else {
            allowed[i] = true;
        }
    }

    // What is new: not stored before, allowed, and not a repeat within this batch.
    let mut fresh: Vec<usize> = Vec::new();
    let mut first_in_batch: HashMap<(i64, &str), usize> = HashMap::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    for (i, new) in batch.iter().enumerate() {
        if let Some(key) = new.client_msg_id.as_deref() {
            if let Some(message) = stored.get(&(new.sender.id, key.to_owned())) {
                let message = Message { sender: new.sender.username.clone(), ..message.clone() };
                outcomes[i] = Some(Ok(Appended { message, duplicate: true, members: Vec::new() }));
                continue;
            }
            if !allowed[i] {
                continue;
            }
            if let Some(&first) = first_in_batch.get(&(new.sender.id, key)) {
                repeats.push((i, first));
                continue;
            }
            first_in_batch.insert((new.sender.id, key), i);
        } else if !allowed[i] {
            continue;
        }
        fresh.push(i);
    }

    if !fresh.is_empty() {
        // Reserve seqs: lock the conversations in id order, then add each one's count.
        let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
        for &i in &fresh {
            *counts.entry(batch[i].conversation_id).or_default() += 1;
        }
        let (ids, ns): (Vec<i64>, Vec<i64>) = counts.iter().map(|(id, n)| (*id, *n)).unzip();
        sqlx::query("SELECT id FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "UPDATE conversations c SET last_seq = c.last_seq + k.n
             FROM UNNEST($1::bigint[], $2::bigint[]) AS k(id, n)
             WHERE c.id = k.id
             RETURNING c.id, c.last_seq",
        )
        .bind(&ids)
        .bind(&ns)
        .fetch_all(&mut *tx)
        .await?;
        // conversation -> the next seq to hand out in it
        let mut next: HashMap<i64, i64> = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let last: i64 = row.try_get("last_seq")?;
            next.insert(id, last - counts[&id] + 1);
        }

        let ts = now_ms();
        let mut messages = Vec::with_capacity(fresh.len());
        for &i in &fresh {
            let new = &batch[i];
            let seq = next.get_mut(&new.conversation_id).ok_or_else(|| {
                StoreError::Unavailable("a conversation vanished while appending".into())
            })?;
            messages.push((
                i,
                Message {
                    conversation_id: new.conversation_id,
                    seq: *seq,
                    sender: new.sender.username.clone(),
                    kind: new.kind,
                    body: new.body.clone(),
                    client_msg_id: new.client_msg_id.clone(),
                    ts,
                },
            ));
            *seq += 1;
        }
        sqlx::query(
            "INSERT INTO messages (conversation_id, seq, sender_id, kind, body, client_msg_id, ts)
             SELECT k.conversation_id, k.seq, k.sender_id, k.kind, k.body, k.client_msg_id, $7
             FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[])
               AS k(conversation_id, seq, sender_id, kind, body, client_msg_id)",
        )
        .bind(messages.iter().map(|(_, m)| m.conversation_id).collect::<Vec<_>>())
        .bind(messages.iter().map(|(_, m)| m.seq).collect::<Vec<_>>())
        .bind(messages.iter().map(|(i, _)| batch[*i].sender.id).collect::<Vec<_>>())
        .bind(messages.iter().map(|(_, m)| m.kind.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|(_, m)| m.body.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|(_, m)| m.client_msg_id.as_deref()).collect::<Vec<_>>())
        .bind(ts)
        .execute(&mut *tx)
        .await?;
        // Members as of this commit (their changes lock the conversation row too).
        let rows = sqlx::query(
            "SELECT conversation_id, user_id FROM members WHERE conversation_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut members: HashMap<i64, Vec<i64>> = HashMap::with_capacity(ids.len());
        for row in rows {
            members
                .entry(row.try_get("conversation_id")?)
                .or_default()
                .push(row.try_get("user_id")?);
        }
        for (i, message) in messages {
            let members = members.get(&message.conversation_id).cloned().unwrap_or_default();
            outcomes[i] = Some(Ok(Appended { message, duplicate: false, members }));
        }
    }
    tx.commit().await?;

    for (i, first) in repeats {
        outcomes[i] = match &outcomes[first] {
            Some(Ok(appended)) => Some(Ok(Appended {
                message: appended.message.clone(),
                duplicate: true,
                members: Vec::new(),
            })),
            _ => Some(Err(StoreError::Unavailable("the first copy was not stored".into()))),
        };
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(StoreError::Unavailable("not stored".into()))))
        .collect())
}
