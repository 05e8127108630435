// The organisation side: directory imports, incoming webhooks and org broadcasts. SQL
// shared by the SQLite and PostgreSQL stores (included into each backend's `queries`
// module; see `backend.rs`).
//
// An org-unit path `p` holds the users whose `org` is `p` or starts with `p/`; the empty
// path holds everyone. In SQL that is `ORG_UNDER` below (no LIKE, so `%` and `_` in a
// path are plain characters).

use switchboard_protocol::Broadcast;
use switchboard_protocol::rest::ImportReport;

use crate::{DirectoryEntry, NewBroadcast, Webhook};

/// `{org} is under {path}`, for two SQL text expressions.
fn org_under_sql(org: &str, path: &str) -> String {
    format!(
        "({path} = '' OR {org} = {path} OR substr({org}, 1, length({path}) + 1) = {path} || '/')"
    )
}

/// Creates or updates every entry in one transaction: all or nothing. New accounts get
/// `password_hash`. With `dry_run` the report says what would change and nothing is
/// written.
pub async fn import_directory(
    pool: &Pool,
    entries: Vec<DirectoryEntry>,
    password_hash: String,
    dry_run: bool,
) -> Result<ImportReport> {
    let mut tx = pool.begin().await?;
    let mut report = ImportReport { dry_run, ..ImportReport::default() };
    let now = now_ms();
    for entry in entries {
        let row = sqlx::query(
            "SELECT display_name, org, department, title, broadcast_scope, bot
             FROM users WHERE username = $1",
        )
        .bind(&entry.username)
        .fetch_optional(&mut *tx)
        .await?;
        match row {
            None => {
                sqlx::query(
                    "INSERT INTO users (username, display_name, org, department, title,
                                        broadcast_scope, password_hash, created_at, broadcast_seen)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                             (SELECT COALESCE(MAX(id), 0) FROM broadcasts))",
                )
                .bind(&entry.username)
                .bind(&entry.display_name)
                .bind(&entry.org)
                .bind(&entry.department)
                .bind(&entry.title)
                .bind(&entry.broadcast_scope)
                .bind(&password_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                report.created.push(entry.username);
            }
            Some(row) => {
                if row.try_get::<bool, _>("bot")? {
                    return Err(StoreError::Invalid(format!(
                        "{} is a bot account, not a person",
                        entry.username
                    )));
                }
                let current = DirectoryEntry {
                    username: entry.username.clone(),
                    display_name: row.try_get("display_name")?,
                    org: row.try_get("org")?,
                    department: row.try_get("department")?,
                    title: row.try_get("title")?,
                    broadcast_scope: row.try_get("broadcast_scope")?,
                };
                if current == entry {
                    report.unchanged += 1;
                    continue;
                }
                sqlx::query(
                    "UPDATE users SET display_name = $2, org = $3, department = $4, title = $5,
                                      broadcast_scope = $6
                     WHERE username = $1",
                )
                .bind(&entry.username)
                .bind(&entry.display_name)
                .bind(&entry.org)
                .bind(&entry.department)
                .bind(&entry.title)
                .bind(&entry.broadcast_scope)
                .execute(&mut *tx)
                .await?;
                report.updated.push(entry.username);
            }
        }
    }
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(report)
}

/// Creates a webhook for a conversation; `creator` must be an admin or the group's owner.
pub async fn create_webhook(
    pool: &Pool,
    conversation: i64,
    creator: &User,
    name: &str,
    secret_hash: &[u8],
) -> Result<Webhook> {
    let owner: Option<Option<i64>> =
        sqlx::query_scalar("SELECT owner_id FROM conversations WHERE id = $1")
            .bind(conversation)
            .fetch_optional(pool)
            .await?;
    let Some(owner) = owner else { return Err(StoreError::ConversationNotFound(conversation)) };
    if !creator.admin && owner != Some(creator.id) {
        return Err(StoreError::Forbidden("create webhooks for this conversation"));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO webhooks (conversation_id, creator_id, name, secret_hash, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(conversation)
    .bind(creator.id)
    .bind(name)
    .bind(secret_hash)
    .bind(now_ms())
    .fetch_one(pool)
    .await?;
    Ok(Webhook {
        id,
        conversation_id: conversation,
        name: name.to_owned(),
        secret_hash: secret_hash.to_vec(),
        creator: creator.clone(),
    })
}

/// The webhook with this id, unless it does not exist or was revoked.
pub async fn webhook(pool: &Pool, id: i64) -> Result<Option<Webhook>> {
    let row = sqlx::query(
        "SELECT conversation_id, creator_id, name, secret_hash FROM webhooks
         WHERE id = $1 AND NOT revoked",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let creator_id: i64 = row.try_get("creator_id")?;
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let creator = user_from_row(&sqlx::query(&sql).bind(creator_id).fetch_one(pool).await?)?;
    Ok(Some(Webhook {
        id,
        conversation_id: row.try_get("conversation_id")?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        creator,
    }))
}

/// Revokes a webhook for good; `actor` must be an admin, its creator or the group's owner.
pub async fn revoke_webhook(pool: &Pool, id: i64, actor: &User) -> Result<()> {
    let row = sqlx::query(
        "SELECT w.creator_id, c.owner_id FROM webhooks w
         JOIN conversations c ON c.id = w.conversation_id
         WHERE w.id = $1 AND NOT w.revoked",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Err(StoreError::NotFound(format!("webhook {id}"))) };
    let creator: i64 = row.try_get("creator_id")?;
    let owner: Option<i64> = row.try_get("owner_id")?;
    if !actor.admin && actor.id != creator && owner != Some(actor.id) {
        return Err(StoreError::Forbidden("revoke this webhook"));
    }
    sqlx::query("UPDATE webhooks SET revoked = TRUE WHERE id = $1").bind(id).execute(pool).await?;
    Ok(())
}

const BROADCAST_COLUMNS: &str =
    "b.id, b.org, b.body, b.ack_required, b.priority, b.ts, u.username, u.display_name";

fn broadcast_from_row(row: &DbRow) -> Result<Broadcast> {
    Ok(Broadcast {
        id: row.try_get("id")?,
        sender: row.try_get("username")?,
        author: row.try_get("display_name")?,
        org: row.try_get("org")?,
        body: row.try_get("body")?,
        ack_required: row.try_get("ack_required")?,
        priority: row.try_get("priority")?,
        ts: row.try_get("ts")?,
    })
}

/// Stores a broadcast: one row, whatever the number of recipients.
pub async fn create_broadcast(pool: &Pool, new: NewBroadcast) -> Result<Broadcast> {
    let ts = now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO broadcasts (sender_id, org, body, ack_required, priority, ts)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(new.sender.id)
    .bind(&new.org)
    .bind(&new.body)
    .bind(new.ack_required)
    .bind(new.priority)
    .bind(ts)
    .fetch_one(pool)
    .await?;
    Ok(Broadcast {
        id,
        sender: new.sender.username,
        author: new.sender.display_name,
        org: new.org,
        body: new.body,
        ack_required: new.ack_required,
        priority: new.priority,
        ts,
    })
}

/// The newest `limit` broadcasts for `user` (by their org unit) past their cursor, oldest
/// first. Reads only broadcasts newer than the cursor: cheap however many users exist.
pub async fn pending_broadcasts(pool: &Pool, user: &User, limit: u32) -> Result<Vec<Broadcast>> {
    let sql = format!(
        "SELECT {BROADCAST_COLUMNS} FROM broadcasts b JOIN users u ON u.id = b.sender_id
         WHERE b.id > (SELECT broadcast_seen FROM users WHERE id = $1) AND {}
         ORDER BY b.id DESC LIMIT $3",
        org_under_sql("CAST($2 AS TEXT)", "b.org")
    );
    let rows = sqlx::query(&sql)
        .bind(user.id)
        .bind(&user.org)
        .bind(i64::from(limit.clamp(1, MAX_PAGE)))
        .fetch_all(pool)
        .await?;
    let mut broadcasts = rows.iter().map(broadcast_from_row).collect::<Result<Vec<_>>>()?;
    broadcasts.reverse();
    Ok(broadcasts)
}

/// Users per `UPDATE` in [`broadcasts_seen`].
const SEEN_CHUNK: usize = 500;

/// Moves each `(user, upto)` broadcast cursor forward (never back), in one transaction.
/// Users sharing an `upto` (those one broadcast reached) are updated together, a chunk
/// of them per statement: one broadcast to 10,000 people costs 20 statements.
pub async fn broadcasts_seen(pool: &Pool, seen: &[(i64, i64)]) -> Result<()> {
    let mut by_upto: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for &(user, upto) in seen {
        by_upto.entry(upto).or_default().push(user);
    }
    let mut tx = pool.begin().await?;
    for (upto, users) in by_upto {
        for chunk in users.chunks(SEEN_CHUNK) {
            let placeholders: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "UPDATE users SET broadcast_seen = $1 WHERE broadcast_seen < $1 AND id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(upto);
            for user in chunk {
                query = query.bind(*user);
            }
            query.execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

async fn broadcast_by_id(pool: &Pool, id: i64) -> Result<Broadcast> {
    let sql = format!(
        "SELECT {BROADCAST_COLUMNS} FROM broadcasts b JOIN users u ON u.id = b.sender_id
         WHERE b.id = $1"
    );
    match sqlx::query(&sql).bind(id).fetch_optional(pool).await? {
        Some(row) => broadcast_from_row(&row),
        None => Err(StoreError::NotFound(format!("broadcast {id}"))),
    }
}

/// Records that `user` acknowledged a broadcast sent to them (again: no change).
pub async fn ack_broadcast(pool: &Pool, id: i64, user: &User) -> Result<()> {
    let broadcast = broadcast_by_id(pool, id).await?;
    if !switchboard_protocol::org_under(&user.org, &broadcast.org) {
        return Err(StoreError::Forbidden("acknowledge a broadcast not sent to you"));
    }
    if !broadcast.ack_required {
        return Err(StoreError::Invalid(format!("broadcast {id} asks for no acknowledgement")));
    }
    sqlx::query(
        "INSERT INTO broadcast_acks (broadcast_id, user_id, ts) VALUES ($1, $2, $3)
         ON CONFLICT (broadcast_id, user_id) DO NOTHING",
    )
    .bind(id)
    .bind(user.id)
    .bind(now_ms())
    .execute(pool)
    .await?;
    Ok(())
}

/// The broadcast and, for every person now under its path (bots excluded), by username,
/// when they acknowledged it (None: not yet).
pub async fn broadcast_status(
    pool: &Pool,
    id: i64,
) -> Result<(Broadcast, Vec<(String, Option<i64>)>)> {
    let broadcast = broadcast_by_id(pool, id).await?;
    let sql = format!(
        "SELECT u.username, a.ts FROM users u
         LEFT JOIN broadcast_acks a ON a.broadcast_id = $1 AND a.user_id = u.id
         WHERE NOT u.bot AND {}
         ORDER BY u.username",
        org_under_sql("u.org", "CAST($2 AS TEXT)")
    );
    let rows = sqlx::query(&sql).bind(id).bind(&broadcast.org).fetch_all(pool).await?;
    let recipients = rows
        .iter()
        .map(|row| Ok((row.try_get("username")?, row.try_get("ts")?)))
        .collect::<Result<Vec<_>>>()?;
    Ok((broadcast, recipients))
}
