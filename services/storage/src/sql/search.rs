// Message search: what both engines share. Which conversations a search may read (the
// searcher's, always), the filters, paging, and searches without words (newest first).
// Matching words is each engine's own: `matching` comes from `search_sqlite.rs` (FTS5) or
// `search_postgres.rs` (tsvector and a GIN index), included next to this file.

use crate::{MAX_SEARCH_OFFSET, MAX_SEARCH_PAGE, SearchPage, SearchQuery, SearchSort, SearchTerm};

/// What a search finds: readable messages, never edit or delete entries or deleted ones.
/// Both engines' indexes hold exactly these rows.
const SEARCHABLE: &str = "m.deleted_at IS NULL AND m.kind IN ('text', 'broadcast', 'system')";

/// The columns `message_from_row` reads, for a query over `messages m JOIN users u`. Hits
/// do not count a root's replies (`reply_count` 0): that would cost a lookup per match.
const FOUND: &str = "m.conversation_id, m.seq, m.kind, m.body, m.client_msg_id, m.ts, m.author, \
     m.ref_seq, m.edited_at, m.deleted_at, u.username, CAST(0 AS BIGINT) AS reply_count";

pub async fn search(pool: &Pool, viewer: &User, query: &SearchQuery) -> Result<SearchPage> {
    if query.offset > MAX_SEARCH_OFFSET {
        return Err(StoreError::Invalid(format!(
            "search results can be paged to offset {MAX_SEARCH_OFFSET} at most; narrow the search"
        )));
    }
    // Terms reach the engines' query languages as text: only letters and digits may pass.
    let clean = |w: &String| !w.is_empty() && w.chars().all(char::is_alphanumeric);
    let all_clean = query.terms.iter().all(|t| match t {
        SearchTerm::Word(w) | SearchTerm::Prefix(w) => clean(w),
        SearchTerm::Phrase(words) => !words.is_empty() && words.iter().all(clean),
    });
    if !all_clean {
        return Err(StoreError::Invalid("search words must be letters and digits only".into()));
    }
    let limit = query.limit.clamp(1, MAX_SEARCH_PAGE);
    let mut conn = pool.acquire().await?;
    // The searcher's conversations, read now: membership is the only access rule, and
    // a filter can only narrow it.
    let mut conversations: Vec<i64> = sqlx::query_scalar(
        "SELECT conversation_id FROM members WHERE user_id = $1 ORDER BY conversation_id",
    )
    .bind(viewer.id)
    .fetch_all(&mut *conn)
    .await?;
    if let Some(only) = &query.conversations {
        conversations.retain(|c| only.contains(c));
    }
    if conversations.is_empty() {
        return Ok(SearchPage { messages: Vec::new(), has_more: false });
    }
    // One row more than asked tells whether another page exists.
    let rows = if query.terms.is_empty() {
        newest(&mut conn, &conversations, query, limit + 1).await?
    } else {
        matching(&mut conn, &conversations, query, limit + 1).await?
    };
    let has_more = rows.len() > limit as usize;
    let mut messages = rows
        .iter()
        .take(limit as usize)
        .map(|row| message_from_row(row.try_get("conversation_id")?, row))
        .collect::<Result<Vec<_>>>()?;
    attach_files(&mut conn, &mut messages, true).await?;
    Ok(SearchPage { messages, has_more })
}

/// `m.conversation_id IN (...)` for a list of ids read from the database (numbers only,
/// so formatting them into the text is safe).
fn in_conversations(conversations: &[i64]) -> String {
    let ids: Vec<String> = conversations.iter().map(i64::to_string).collect();
    format!("m.conversation_id IN ({})", ids.join(", "))
}

/// The filters besides the words, as SQL over `m` with placeholders numbered from
/// `$first`, and the values to bind to them in order.
fn filters(query: &SearchQuery, first: usize) -> (String, Vec<i64>) {
    let mut sql = format!("m.ts >= ${} AND m.ts < ${}", first, first + 1);
    let mut values = vec![query.after.unwrap_or(i64::MIN), query.before.unwrap_or(i64::MAX)];
    if let Some(sender) = query.from {
        sql.push_str(&format!(" AND m.sender_id = ${}", first + 2));
        values.push(sender);
    }
    (sql, values)
}

/// No words: the newest messages passing the filters.
async fn newest(
    conn: &mut Conn,
    conversations: &[i64],
    query: &SearchQuery,
    limit: u32,
) -> Result<Vec<DbRow>> {
    let (filter, values) = filters(query, 1);
    let sql = format!(
        "SELECT {FOUND} FROM messages m JOIN users u ON u.id = m.sender_id
         WHERE {} AND {SEARCHABLE} AND {filter}
         ORDER BY m.ts DESC, m.conversation_id DESC, m.seq DESC LIMIT ${} OFFSET ${}",
        in_conversations(conversations),
        values.len() + 1,
        values.len() + 2,
    );
    let mut statement = sqlx::query(&sql);
    for value in values {
        statement = statement.bind(value);
    }
    Ok(statement.bind(i64::from(limit)).bind(i64::from(query.offset)).fetch_all(&mut *conn).await?)
}
