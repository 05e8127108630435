// Users and tokens: SQL shared by the SQLite and PostgreSQL stores (included into each
// backend's `queries` module; see `backend.rs`).

const USER_COLUMNS: &str = "id, username, display_name, org, admin, status, status_text, \
                            department, title, bot, broadcast_scope";

fn user_from_row(row: &DbRow) -> Result<User> {
    let status: String = row.try_get("status")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        org: row.try_get("org")?,
        admin: row.try_get("admin")?,
        status: PresenceStatus::parse(&status).unwrap_or(PresenceStatus::Available),
        status_text: row.try_get("status_text")?,
        department: row.try_get("department")?,
        title: row.try_get("title")?,
        bot: row.try_get("bot")?,
        broadcast_scope: row.try_get("broadcast_scope")?,
    })
}

pub async fn create_user(pool: &Pool, user: NewUser) -> Result<User> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO users (username, display_name, org, admin, password_hash, created_at,
                            department, title, bot, broadcast_seen)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
                 (SELECT COALESCE(MAX(id), 0) FROM broadcasts))
         ON CONFLICT (username) DO NOTHING RETURNING id",
    )
    .bind(&user.username)
    .bind(&user.display_name)
    .bind(&user.org)
    .bind(user.admin)
    .bind(&user.password_hash)
    .bind(now_ms())
    .bind(&user.department)
    .bind(&user.title)
    .bind(user.bot)
    .fetch_optional(pool)
    .await?;
    let Some(id) = id else { return Err(StoreError::UserExists(user.username)) };
    Ok(User {
        id,
        username: user.username,
        display_name: user.display_name,
        org: user.org,
        admin: user.admin,
        status: PresenceStatus::Available,
        status_text: String::new(),
        department: user.department,
        title: user.title,
        bot: user.bot,
        broadcast_scope: String::new(),
    })
}

pub async fn user_count(pool: &Pool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await?)
}

pub async fn credentials(pool: &Pool, username: &str) -> Result<Option<(User, String)>> {
    let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1 AND NOT disabled");
    let row = sqlx::query(&sql).bind(username).fetch_optional(pool).await?;
    row.map(|row| Ok((user_from_row(&row)?, row.try_get("password_hash")?))).transpose()
}

/// Creates or updates a user signed in through the directory (see
/// [`crate::Store::sync_directory_user`]). Insert-if-missing then update, so two first
/// sign-ins at once both end with the one row; a row with another password hash (a local
/// account) or a bot is left alone and answered with `UserExists`.
pub async fn sync_directory_user(pool: &Pool, user: DirectoryUser) -> Result<User> {
    let display_name = user.display_name.clone().unwrap_or_else(|| user.username.clone());
    sqlx::query(
        "INSERT INTO users (username, display_name, org, admin, password_hash, created_at,
                            department, title, bot, broadcast_seen)
         VALUES ($1, $2, $3, $4, $5, $6, '', '', $7,
                 (SELECT COALESCE(MAX(id), 0) FROM broadcasts))
         ON CONFLICT (username) DO NOTHING",
    )
    .bind(&user.username)
    .bind(&display_name)
    .bind(user.org.as_deref().unwrap_or(""))
    .bind(user.admin.unwrap_or(false))
    .bind(user.password_hash.as_str())
    .bind(now_ms())
    .bind(false)
    .execute(pool)
    .await?;
    sqlx::query(
        "UPDATE users SET display_name = COALESCE($2, display_name), org = COALESCE($3, org),
                          admin = COALESCE($4, admin)
         WHERE username = $1 AND password_hash = $5 AND bot = $6",
    )
    .bind(&user.username)
    .bind(user.display_name.as_deref())
    .bind(user.org.as_deref())
    .bind(user.admin)
    .bind(user.password_hash.as_str())
    .bind(false)
    .execute(pool)
    .await?;
    match credentials(pool, &user.username).await? {
        Some((found, hash)) if hash == user.password_hash && !found.bot => Ok(found),
        // A local account (with a password) or a bot of that name: never the directory's.
        _ => Err(StoreError::UserExists(user.username)),
    }
}

pub async fn user_by_name(pool: &Pool, username: &str) -> Result<User> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
    match sqlx::query(&sql).bind(username).fetch_optional(pool).await? {
        Some(row) => user_from_row(&row),
        None => Err(StoreError::UserNotFound(username.to_owned())),
    }
}

/// A presence change: its own transaction (on SQLite, a commit of the single writer's,
/// so it is timed like the appends it may hold up).
pub async fn set_status(pool: &Pool, user_id: i64, status: PresenceStatus, text: &str) -> Result<()> {
    let mut timer = crate::slow::WriteTimer::start("presence status");
    let mut conn = pool.acquire().await?;
    timer.began();
    sqlx::query("UPDATE users SET status = $1, status_text = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(text)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    // One statement in autocommit: its time includes the commit.
    timer.done(1);
    Ok(())
}

pub async fn contacts(pool: &Pool, user_id: i64) -> Result<Vec<User>> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id IN (
             SELECT other.user_id FROM members mine
             JOIN members other ON other.conversation_id = mine.conversation_id
             WHERE mine.user_id = $1 AND other.user_id != mine.user_id)
         ORDER BY username"
    );
    let rows = sqlx::query(&sql).bind(user_id).fetch_all(pool).await?;
    rows.iter().map(user_from_row).collect()
}

pub async fn insert_token(pool: &Pool, hash: &[u8], user_id: i64, expires_at: i64) -> Result<()> {
    sqlx::query("INSERT INTO tokens (hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(hash)
        .bind(user_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn user_by_token(pool: &Pool, hash: &[u8]) -> Result<Option<User>> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE NOT disabled AND id = (
             SELECT user_id FROM tokens WHERE hash = $1 AND NOT revoked AND expires_at > $2)"
    );
    let row = sqlx::query(&sql).bind(hash).bind(now_ms()).fetch_optional(pool).await?;
    row.as_ref().map(user_from_row).transpose()
}

pub async fn revoke_token(pool: &Pool, hash: &[u8]) -> Result<()> {
    sqlx::query("UPDATE tokens SET revoked = TRUE WHERE hash = $1").bind(hash).execute(pool).await?;
    Ok(())
}

pub async fn member_ids(pool: &Pool, conversation: i64) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = $1")
        .bind(conversation)
        .fetch_all(pool)
        .await?)
}

/// The directory: users whose username, display name or org path contains `query`
/// (ASCII case-insensitive; `%` and `_` match themselves), by display name.
pub async fn search_users(pool: &Pool, query: &str, limit: u32) -> Result<Vec<User>> {
    let escaped = query
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let pattern = format!("%{escaped}%");
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users
         WHERE LOWER(username) LIKE $1 ESCAPE '\\' OR LOWER(display_name) LIKE $1 ESCAPE '\\'
            OR LOWER(org) LIKE $1 ESCAPE '\\' OR LOWER(department) LIKE $1 ESCAPE '\\'
            OR LOWER(title) LIKE $1 ESCAPE '\\'
         ORDER BY LOWER(display_name), username LIMIT $2"
    );
    let limit = i64::from(limit.clamp(1, MAX_PAGE));
    let rows = sqlx::query(&sql).bind(pattern).bind(limit).fetch_all(pool).await?;
    rows.iter().map(user_from_row).collect()
}
