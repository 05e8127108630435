// Matching words with SQLite's FTS5 (`message_search`, migration 0004_search.sql).
// Included into SQLite's `queries` module beside `search.rs`.

/// Messages of `conversations` matching every term and the filters, best first (bm25) or
/// newest first: at most `limit`, after skipping the query's offset.
async fn matching(
    conn: &mut Conn,
    conversations: &[i64],
    query: &SearchQuery,
    limit: u32,
) -> Result<Vec<DbRow>> {
    let (filter, values) = filters(query, 2);
    let order = match query.sort {
        // bm25 is lower for better matches; the conv column only filters, so it weighs 0.
        SearchSort::Relevance => "f.rank ASC, m.ts DESC",
        SearchSort::Recent => "m.ts DESC",
    };
    // The index's rowid is conversation_id * 2^32 + seq (see the migration).
    let sql = format!(
        "WITH f AS (
             SELECT rowid AS id, bm25(message_search, 1.0, 0.0) AS rank
             FROM message_search WHERE message_search MATCH $1
         )
         SELECT {FOUND} FROM f
         JOIN messages m ON m.conversation_id = (f.id >> 32) AND m.seq = (f.id & 4294967295)
         JOIN users u ON u.id = m.sender_id
         WHERE {SEARCHABLE} AND {filter}
         ORDER BY {order}, m.conversation_id DESC, m.seq DESC LIMIT ${} OFFSET ${}",
        values.len() + 2,
        values.len() + 3,
    );
    let mut statement = sqlx::query(&sql).bind(fts5_match(conversations, &query.terms));
    for value in values {
        statement = statement.bind(value);
    }
    Ok(statement.bind(i64::from(limit)).bind(i64::from(query.offset)).fetch_all(&mut *conn).await?)
}

/// The FTS5 query: one of the conversations' tokens, and every term in the body. Terms
/// are letters and digits only (see `SearchTerm`), so quoting them is enough.
fn fts5_match(conversations: &[i64], terms: &[SearchTerm]) -> String {
    let conversations: Vec<String> = conversations.iter().map(|c| format!("\"c{c}\"")).collect();
    let terms: Vec<String> = terms
        .iter()
        .map(|term| match term {
            SearchTerm::Word(word) => format!("\"{word}\""),
            SearchTerm::Prefix(prefix) => format!("\"{prefix}\"*"),
            SearchTerm::Phrase(words) => format!("\"{}\"", words.join(" ")),
        })
        .collect();
    format!("conv : ({}) AND body : ({})", conversations.join(" OR "), terms.join(" AND "))
}
