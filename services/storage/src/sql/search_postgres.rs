// Matching words with PostgreSQL's full-text search: the stored `messages.search`
// tsvector and the GIN index over (conversation_id, search) (migration 0005_search.sql).
// Included into PostgreSQL's `queries` module beside `search.rs`.

/// Messages of `conversations` matching every term and the filters, best first
/// (`ts_rank`) or newest first: at most `limit`, after skipping the query's offset.
///
/// `conversation_id IN (...)` with the words is one bitmap scan of the GIN index per
/// conversation, each reading only that conversation's entries of each word; only the
/// searcher's matches are fetched and ranked, however common the word is elsewhere.
async fn matching(
    conn: &mut Conn,
    conversations: &[i64],
    query: &SearchQuery,
    limit: u32,
) -> Result<Vec<DbRow>> {
    let (sql, values) = matching_sql(query, conversations);
    let mut statement = sqlx::query(&sql).bind(tsquery(&query.terms));
    for value in values {
        statement = statement.bind(value);
    }
    Ok(statement.bind(i64::from(limit)).bind(i64::from(query.offset)).fetch_all(&mut *conn).await?)
}

/// The statement `matching` runs: the tsquery text is `$1`, the filters' values
/// (returned) follow, then the limit and the offset. The conversations are written into
/// the text, not bound as an array: the partitions of `messages` they live in are then
/// known to every plan, generic ones included, which cannot prune by an array parameter.
pub fn matching_sql(query: &SearchQuery, conversations: &[i64]) -> (String, Vec<i64>) {
    let (filter, values) = filters(query, 2);
    let order = match query.sort {
        SearchSort::Relevance => "ts_rank(m.search, q.q) DESC, m.ts DESC",
        SearchSort::Recent => "m.ts DESC",
    };
    let sql = format!(
        "SELECT {FOUND} FROM messages m
         JOIN users u ON u.id = m.sender_id
         CROSS JOIN (SELECT to_tsquery('simple', $1) AS q) q
         WHERE {} AND m.search @@ q.q AND {SEARCHABLE} AND {filter}
         ORDER BY {order}, m.conversation_id DESC, m.seq DESC LIMIT ${} OFFSET ${}",
        in_conversations(conversations),
        values.len() + 2,
        values.len() + 3,
    );
    (sql, values)
}

/// The tsquery text: every term, `<->` between a phrase's words, `:*` for a prefix. Terms
/// are letters and digits only (see `SearchTerm`), so no operator can slip in.
fn tsquery(terms: &[SearchTerm]) -> String {
    let terms: Vec<String> = terms
        .iter()
        .map(|term| match term {
            SearchTerm::Word(word) => word.clone(),
            SearchTerm::Prefix(prefix) => format!("{prefix}:*"),
            SearchTerm::Phrase(words) => format!("({})", words.join(" <-> ")),
        })
        .collect();
    terms.join(" & ")
}
