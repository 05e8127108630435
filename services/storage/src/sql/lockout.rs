// Failed sign-ins per account (migration 0008/0007 `lockout`): SQL shared by the SQLite
// and PostgreSQL stores. The gateway decides the policy; storage only counts and stores
// the lock, so every gateway of a cluster sees the same state.

pub async fn login_lock(pool: &Pool, user_id: i64) -> Result<crate::LoginLock> {
    let row = sqlx::query("SELECT failed_logins, locked_until FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Err(StoreError::UserNotFound(format!("#{user_id}"))) };
    Ok(crate::LoginLock {
        failures: row.try_get("failed_logins")?,
        locked_until: row.try_get("locked_until")?,
    })
}

pub async fn login_failed(pool: &Pool, user_id: i64) -> Result<i64> {
    let count: Option<i64> = sqlx::query_scalar(
        "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    count.ok_or_else(|| StoreError::UserNotFound(format!("#{user_id}")))
}

pub async fn lock_login(pool: &Pool, user_id: i64, until: i64) -> Result<()> {
    // Never shortens a lock another gateway set meanwhile.
    sqlx::query(
        "UPDATE users SET locked_until = CASE WHEN locked_until > $1 THEN locked_until ELSE $1 END
         WHERE id = $2",
    )
    .bind(until)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn login_succeeded(pool: &Pool, user_id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE users SET failed_logins = 0, locked_until = 0
         WHERE id = $1 AND (failed_logins != 0 OR locked_until != 0)",
    )
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(())
}
