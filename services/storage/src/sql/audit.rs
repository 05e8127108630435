// The audit log and account flags (admin, disabled): SQL shared by the SQLite and
// PostgreSQL stores (included into each backend's `queries` module; see `backend.rs`).

use switchboard_protocol::rest::AuditEntry;

use crate::{AuditQuery, NewAuditEntry};

/// Stores a batch of entries in one transaction (the gateway's audit writer batches them).
pub async fn record_audit(pool: &Pool, entries: &[NewAuditEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for e in entries {
        sqlx::query(
            "INSERT INTO audit_log (ts, actor, action, target, ip, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(e.ts)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.ip)
        .bind(&e.detail)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Entries matching every filter set in `query`, newest first.
pub async fn audit_log(pool: &Pool, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let mut conditions = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if query.actor.is_some() {
        conditions.push(format!("actor = {}", next()));
    }
    let prefix = query.action.as_deref().is_some_and(|a| a.ends_with('.'));
    if query.action.is_some() {
        let p = next();
        conditions.push(if prefix {
            // A prefix without LIKE, so `_` and `%` in an action stay plain characters.
            format!("substr(action, 1, length({p})) = {p}")
        } else {
            format!("action = {p}")
        });
    }
    if query.since.is_some() {
        conditions.push(format!("ts >= {}", next()));
    }
    if query.until.is_some() {
        conditions.push(format!("ts < {}", next()));
    }
    if query.before.is_some() {
        conditions.push(format!("id < {}", next()));
    }
    let limit = next();
    let filter =
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let sql = format!(
        "SELECT id, ts, actor, action, target, ip, detail FROM audit_log {filter}
         ORDER BY id DESC LIMIT {limit}"
    );
    let mut q = sqlx::query(&sql);
    if let Some(actor) = &query.actor {
        q = q.bind(actor);
    }
    if let Some(action) = &query.action {
        q = q.bind(action);
    }
    if let Some(since) = query.since {
        q = q.bind(since);
    }
    if let Some(until) = query.until {
        q = q.bind(until);
    }
    if let Some(before) = query.before {
        q = q.bind(before);
    }
    let rows = q.bind(i64::from(query.limit.clamp(1, MAX_PAGE))).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                id: row.try_get("id")?,
                ts: row.try_get("ts")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                ip: row.try_get("ip")?,
                detail: row.try_get("detail")?,
            })
        })
        .collect()
}

/// Sets an account's admin and disabled flags (None: unchanged); returns the account and
/// whether it is disabled now.
pub async fn update_user(
    pool: &Pool,
    username: &str,
    admin: Option<bool>,
    disabled: Option<bool>,
) -> Result<(User, bool)> {
    let sql = format!(
        "UPDATE users SET admin = COALESCE($2, admin), disabled = COALESCE($3, disabled)
         WHERE username = $1 RETURNING {USER_COLUMNS}, disabled"
    );
    let row = sqlx::query(&sql)
        .bind(username)
        .bind(admin)
        .bind(disabled)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::UserNotFound(username.to_owned()))?;
    Ok((user_from_row(&row)?, row.try_get("disabled")?))
}
