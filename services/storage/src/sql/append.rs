// Storing a batch of appends in one SQLite transaction with a fixed number of statements
// per batch, whatever its size. Each statement is a round trip to sqlx's SQLite worker
// thread (two thread wake-ups, and a hand-off per row a query returns), which cost more
// than the statement itself: one statement per step for the whole batch, not several per
// message. (sqlx caches the prepared statements by text, so the common batch sizes are not
// parsed again.) (PostgreSQL has its own set-based version in `postgres/append.rs`.)
// Included into SQLite's `queries` module.
//
// A batch normally takes three statements between BEGIN and COMMIT: the conversations'
// last seqs with all their members (the membership check and the fan-out list in one
// read), the insert, and the last seqs' update. Retries (a `client_msg_id` already stored)
// are rare, so they are not looked up first: the insert skips rows whose key is taken
// (`ON CONFLICT DO NOTHING`), and when it skipped any, the transaction is rolled back and
// the batch is stored again with the lookup (`stored_copies`). Either way a retry gets the
// first copy back and takes no seq.

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Sqlite};

use crate::{Appended, NewMessage};

/// Most rows per multi-row statement: at most 8 parameters each, well under SQLite's 32,766.
const ROWS_PER_STATEMENT: usize = 500;

/// Stores a batch in one transaction; answers in the batch's order. The outer error
/// aborts the whole batch (nothing of it is stored); inner errors (not a member, unknown
/// conversation) reject one message and keep the rest. Messages of one conversation take
/// consecutive seqs in batch order. SQLite has one writer, so there is no lock order to
/// keep.
pub async fn commit_batch(pool: &Pool, batch: &[NewMessage]) -> Result<Vec<Result<Appended>>> {
    if let Some(outcomes) = try_commit_batch(pool, batch, false).await? {
        return Ok(outcomes);
    }
    // A retry of a stored message was in the batch: store the batch again, finding the
    // stored copies first. (Every write goes through this one connection, so no key can
    // be taken in between.)
    try_commit_batch(pool, batch, true).await?.ok_or_else(|| {
        StoreError::Unavailable("a client_msg_id was taken while its batch was stored".into())
    })
}

/// [`commit_batch`], looking up the stored copies of retries first when `find_retries`.
/// None, and nothing stored, when the insert met a key already taken.
async fn try_commit_batch(
    pool: &Pool,
    batch: &[NewMessage],
    find_retries: bool,
) -> Result<Option<Vec<Result<Appended>>>> {
    let mut timer = crate::slow::WriteTimer::start("append batch");
    let mut tx = pool.begin().await?;
    timer.began();
    let stored = match find_retries {
        true => stored_copies(&mut tx, batch).await?,
        false => HashMap::new(),
    };
    let Conversations { mut next_seq, memberships, members } =
        conversations_and_members(&mut tx, batch).await?;

    let ts = now_ms();
    // Per message: Ok((message, duplicate)) or its rejection.
    let mut outcomes: Vec<Result<(Message, bool)>> = Vec::with_capacity(batch.len());
    let mut fresh: Vec<usize> = Vec::with_capacity(batch.len());
    let mut keys_in_batch: HashMap<(i64, i64, &str), usize> = HashMap::new();
    for (i, new) in batch.iter().enumerate() {
        if let Some(key) = new.client_msg_id.as_deref() {
            let retry_key = (new.conversation_id, new.sender.id, key);
            if let Some(copy) = stored.get(&retry_key) {
                outcomes.push(Ok((copy.clone(), true)));
                continue;
            }
            // The same key twice in one batch: the second is a retry of the first.
            if let Some(&first) = keys_in_batch.get(&retry_key)
                && let Ok((message, _)) = &outcomes[first]
            {
                let copy = message.clone();
                outcomes.push(Ok((copy, true)));
                continue;
            }
        }
        let Some(last_seq) = next_seq.get_mut(&new.conversation_id) else {
            outcomes.push(Err(StoreError::ConversationNotFound(new.conversation_id)));
            continue;
        };
        // System messages (webhook posts) are written by the server, not by a member.
        if new.kind != MessageKind::System
            && !memberships.contains(&(new.conversation_id, new.sender.id))
        {
            outcomes.push(Err(StoreError::NotMember {
                conversation: new.conversation_id,
                user: new.sender.username.clone(),
            }));
            continue;
        }
        *last_seq += 1;
        if let Some(key) = new.client_msg_id.as_deref() {
            keys_in_batch.insert((new.conversation_id, new.sender.id, key), i);
        }
        fresh.push(i);
        outcomes.push(Ok((
            Message {
                conversation_id: new.conversation_id,
                seq: *last_seq,
                sender: new.sender.username.clone(),
                kind: new.kind,
                body: new.body.clone(),
                client_msg_id: new.client_msg_id.clone(),
                ts,
                author: new.author.clone(),
                ref_seq: None,
                edited_at: None,
                deleted: false,
                thread_seq: None,
                reply_count: 0,
                reactions: Vec::new(),
                attachments: Vec::new(),
            },
            false,
        )));
    }

    if !fresh.is_empty() {
        for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO messages (conversation_id, seq, sender_id, kind, body, \
                 client_msg_id, ts, author) ",
            );
            insert.push_values(chunk, |mut row, &i| {
                let new = &batch[i];
                let seq = outcomes[i].as_ref().map_or(0, |(m, _)| m.seq);
                row.push_bind(new.conversation_id)
                    .push_bind(seq)
                    .push_bind(new.sender.id)
                    .push_bind(new.kind.as_str())
                    .push_bind(new.body.as_str())
                    .push_bind(new.client_msg_id.as_deref())
                    .push_bind(ts)
                    .push_bind(new.author.as_deref());
            });
            // A retry not looked up: its row is skipped rather than failing the batch,
            // and the batch is stored again with the lookup.
            insert.push(" ON CONFLICT DO NOTHING");
            let inserted = insert.build().execute(&mut *tx).await?.rows_affected();
            if inserted != chunk.len() as u64 {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        let mut touched: Vec<(i64, i64)> = fresh
            .iter()
            .map(|&i| batch[i].conversation_id)
            .map(|c| (c, next_seq[&c]))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for chunk in touched.chunks(ROWS_PER_STATEMENT) {
            let mut update =
                QueryBuilder::<Sqlite>::new("UPDATE conversations SET last_seq = v.column2 FROM (");
            update.push_values(chunk, |mut row, (conversation, seq)| {
                row.push_bind(*conversation).push_bind(*seq);
            });
            update.push(") AS v WHERE conversations.id = v.column1");
            update.build().execute(&mut *tx).await?;
        }
    }
    timer.committing();
    tx.commit().await?;
    timer.done(batch.len());

    let outcomes = outcomes.into_iter().map(|outcome| {
        outcome.map(|(message, duplicate)| {
            let members = match duplicate {
                true => Vec::new(),
                false => members.get(&message.conversation_id).cloned().unwrap_or_default(),
            };
            Appended { message, duplicate, members }
        })
    });
    Ok(Some(outcomes.collect()))
}

/// Messages of this batch stored before (retries), by (conversation, sender id,
/// client_msg_id).
async fn stored_copies<'a>(
    conn: &mut Conn,
    batch: &'a [NewMessage],
) -> Result<HashMap<(i64, i64, &'a str), Message>> {
    let keyed: Vec<&NewMessage> = batch.iter().filter(|m| m.client_msg_id.is_some()).collect();
    let mut stored = HashMap::new();
    for chunk in keyed.chunks(ROWS_PER_STATEMENT) {
        let mut select = QueryBuilder::<Sqlite>::new(
            "SELECT v.column1, v.column2, m.conversation_id, m.seq, m.kind, m.body, m.ts, \
             m.author FROM (",
        );
        select.push_values(chunk, |mut row, new| {
            row.push_bind(new.sender.id)
                .push_bind(new.client_msg_id.as_deref())
                .push_bind(new.conversation_id);
        });
        select.push(
            ") AS v JOIN messages m ON m.conversation_id = v.column3 \
             AND m.sender_id = v.column1 AND m.client_msg_id = v.column2 \
             AND m.client_msg_id IS NOT NULL",
        );
        for row in select.build().fetch_all(&mut *conn).await? {
            let sender: i64 = row.try_get(0)?;
            let key: String = row.try_get(1)?;
            let conversation: i64 = row.try_get(2)?;
            // The key as the batch holds it (the map borrows the batch, not the row).
            let Some(new) = chunk.iter().find(|m| {
                m.conversation_id == conversation
                    && m.sender.id == sender
                    && m.client_msg_id.as_deref() == Some(&key)
            }) else {
                continue;
            };
            let kind: String = row.try_get(4)?;
            let message = Message {
                conversation_id: row.try_get(2)?,
                seq: row.try_get(3)?,
                sender: new.sender.username.clone(),
                kind: MessageKind::parse(&kind).unwrap_or(MessageKind::Text),
                body: row.try_get(5)?,
                client_msg_id: Some(key),
                ts: row.try_get(6)?,
                author: row.try_get(7)?,
                ref_seq: None,
                edited_at: None,
                deleted: false,
                thread_seq: None,
                reply_count: 0,
                reactions: Vec::new(),
                attachments: Vec::new(),
            };
            if let Some(key) = new.client_msg_id.as_deref() {
                stored.insert((conversation, sender, key), message);
            }
        }
    }
    Ok(stored)
}

/// What a batch needs of its conversations, read in one statement.
struct Conversations {
    /// Conversation -> its last seq, for those that exist.
    next_seq: HashMap<i64, i64>,
    /// The batch's (conversation, sender) pairs that are memberships.
    memberships: HashSet<(i64, i64)>,
    /// Conversation -> its members, for the fan-out: read in the batch's transaction on
    /// the one writer connection, so they are the members as of the commit.
    members: HashMap<i64, Vec<i64>>,
}

/// The last seq and the members of each of the batch's conversations that exists.
async fn conversations_and_members(conn: &mut Conn, batch: &[NewMessage]) -> Result<Conversations> {
    let pairs: HashSet<(i64, i64)> =
        batch.iter().map(|m| (m.conversation_id, m.sender.id)).collect();
    let mut ids: Vec<i64> = pairs.iter().map(|(conversation, _)| *conversation).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut found = Conversations {
        next_seq: HashMap::with_capacity(ids.len()),
        memberships: HashSet::with_capacity(pairs.len()),
        members: HashMap::with_capacity(ids.len()),
    };
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut select = QueryBuilder::<Sqlite>::new(
            "SELECT c.id, c.last_seq, m.user_id FROM conversations c \
             LEFT JOIN members m ON m.conversation_id = c.id WHERE c.id IN (",
        );
        let mut list = select.separated(", ");
        for conversation in chunk {
            list.push_bind(*conversation);
        }
        select.push(")");
        let rows: Vec<(i64, i64, Option<i64>)> =
            select.build_query_as().fetch_all(&mut *conn).await?;
        for (conversation, seq, user) in rows {
            found.next_seq.insert(conversation, seq);
            let members = found.members.entry(conversation).or_default();
            if let Some(user) = user {
                members.push(user);
                if pairs.contains(&(conversation, user)) {
                    found.memberships.insert((conversation, user));
                }
            }
        }
    }
    Ok(found)
}
