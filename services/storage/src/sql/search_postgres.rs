// Matching words with PostgreSQL's full-text search: the stored `messages.search`
// tsvector, the GIN index over (conversation_id, time bucket, search) and the
// `search_words` dictionary (migrations 0005_search.sql and 0013_search_at_scale.sql).
// Included into PostgreSQL's `queries` module beside `search.rs`.
//
// A search costs what it fetches from the heap, so it bounds that: relevance ranks the
// newest `CANDIDATES` matches only, and a search expected to match many messages asks
// the index for the newest time buckets first, widening until it has enough.

/// Relevance ranks the newest this many matches (after the filters), not every match:
/// ranking a word most messages contain would otherwise fetch every one of them.
const CANDIDATES: i64 = 5_000;
/// The index's time buckets: `ts / BUCKET_MS` (2^28 ms, 3.1 days; migration 0013).
const BUCKET_MS: i64 = 268_435_456;
/// Expected matches at or below which a search reads all of them at once: cheaper than
/// probing buckets, whose GIN scans are one per conversation and bucket.
const PROBE_ABOVE: f64 = 20_000.0;
/// Most GIN scans (conversations times buckets) a probe may take; a wider window is
/// read without buckets instead.
const MAX_SCANS: usize = 3_000;
/// Words a prefix stands for: the most frequent ones starting with it.
const PREFIX_WORDS: i64 = 50;

/// Messages of `conversations` matching every term and the filters, best first
/// (`ts_rank` over the newest `CANDIDATES` matches) or newest first: at most `limit`,
/// after skipping the query's offset.
///
/// `conversation_id = ANY($2)` with the words is one bitmap scan of the GIN index per
/// conversation (and bucket, when probing), each reading only that conversation's
/// entries of each word; only the searcher's matches are fetched, however common the
/// word is elsewhere.
async fn matching(
    conn: &mut Conn,
    conversations: &[i64],
    query: &SearchQuery,
    limit: u32,
) -> Result<Vec<DbRow>> {
    let frequencies = word_frequencies(conn).await?;
    let mut terms = Vec::with_capacity(query.terms.len());
    for term in &query.terms {
        match term {
            SearchTerm::Prefix(prefix) => {
                let words = prefix_words(conn, prefix, &frequencies).await?;
                if words.is_empty() {
                    return Ok(Vec::new());
                }
                terms.push(Term::AnyOf(words));
            }
            SearchTerm::Word(word) => terms.push(Term::Word(word.clone())),
            SearchTerm::Phrase(words) => terms.push(Term::Phrase(words.clone())),
        }
    }
    let tsquery = tsquery(&terms);
    // Rows wanted from the candidates: the ranked set, or just as far as this page.
    let wanted = match query.sort {
        SearchSort::Relevance => CANDIDATES,
        SearchSort::Recent => i64::from(query.offset) + i64::from(limit),
    };
    let window = match expected_matches(&terms, &frequencies) {
        Some(frequency) => probe_window(conn, conversations, query, frequency, wanted).await?,
        None => None,
    };
    let Some((high, mut span, low)) = window else {
        return candidates(conn, &tsquery, conversations, query, limit, wanted, None).await;
    };
    loop {
        let from = (high - span).max(low);
        let buckets: Vec<i64> = ((from / BUCKET_MS)..=((high - 1) / BUCKET_MS)).collect();
        if buckets.len() * conversations.len() > MAX_SCANS {
            return candidates(conn, &tsquery, conversations, query, limit, wanted, None).await;
        }
        let probe = Probe { from, high, buckets };
        let window = Some(&probe);
        let rows = candidates(conn, &tsquery, conversations, query, limit, wanted, window).await?;
        // The window holds the newest `wanted` matches when it is full: every match
        // outside it is older than every match in it.
        let found = match rows.first() {
            Some(row) => row.try_get::<i64, _>("candidates")?,
            None => 0,
        };
        if found >= wanted || from <= low {
            return Ok(rows);
        }
        // Widen by what the density seen so far suggests, at least twice, at most 16 times.
        let factor = (wanted as f64 * 1.5 / found.max(1) as f64).clamp(2.0, 16.0);
        span = (span as f64 * factor) as i64;
    }
}

/// One term, ready for `to_tsquery` (which lower-cases words): prefixes expanded.
enum Term {
    Word(String),
    Phrase(Vec<String>),
    AnyOf(Vec<String>),
}

/// A window of time probed through the index's buckets: `from <= ts < high`.
struct Probe {
    from: i64,
    high: i64,
    buckets: Vec<i64>,
}

/// The newest `wanted` matches (in `window`, if given) ranked or ordered as the query
/// says, one page of them, each row with `candidates`: how many matches were taken.
async fn candidates(
    conn: &mut Conn,
    tsquery: &str,
    conversations: &[i64],
    query: &SearchQuery,
    limit: u32,
    wanted: i64,
    window: Option<&Probe>,
) -> Result<Vec<DbRow>> {
    let (filter, mut values) = filters(query, 3);
    let mut probe = String::new();
    if let Some(window) = window {
        let next = values.len() + 3;
        probe = format!(
            " AND m.ts >= ${next} AND m.ts < ${} AND (m.ts / 268435456) = ANY(${})",
            next + 1,
            next + 2
        );
        values.extend([window.from, window.high]);
    }
    let next = values.len() + 3 + usize::from(window.is_some());
    let order = match query.sort {
        SearchSort::Relevance => "ts_rank(m.search, to_tsquery('simple', $1)) DESC, m.ts DESC",
        SearchSort::Recent => "m.ts DESC",
    };
    let sql = format!(
        "WITH c AS MATERIALIZED (
             SELECT m.conversation_id, m.seq FROM messages m
             WHERE m.conversation_id = ANY($2) AND m.search @@ to_tsquery('simple', $1)
               AND {SEARCHABLE} AND {filter}{probe}
             ORDER BY m.ts DESC, m.conversation_id DESC, m.seq DESC LIMIT ${next})
         SELECT {FOUND}, (SELECT count(*) FROM c) AS candidates
         FROM c JOIN messages m ON m.conversation_id = c.conversation_id AND m.seq = c.seq
         JOIN users u ON u.id = m.sender_id
         ORDER BY {order}, m.conversation_id DESC, m.seq DESC LIMIT ${} OFFSET ${}",
        next + 1,
        next + 2,
    );
    let mut statement = sqlx::query(&sql).bind(tsquery).bind(conversations);
    for value in values {
        statement = statement.bind(value);
    }
    if let Some(window) = window {
        statement = statement.bind(&window.buckets);
    }
    Ok(statement
        .bind(wanted)
        .bind(i64::from(limit))
        .bind(i64::from(query.offset))
        .fetch_all(&mut *conn)
        .await?)
}

/// The planner's statistics on `messages.search`: each common word and the share of
/// messages holding it (ANALYZE keeps about a thousand). Empty before the first ANALYZE.
async fn word_frequencies(conn: &mut Conn) -> Result<std::collections::HashMap<String, f64>> {
    let rows: Vec<(String, f32)> = sqlx::query_as(
        "SELECT e.word, e.frequency FROM pg_stats s,
             unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs)
                 AS e(word, frequency)
         WHERE s.schemaname = current_schema() AND s.tablename = 'messages'
           AND s.attname = 'search' AND e.word IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(word, frequency)| (word, f64::from(frequency))).collect())
}

/// The words a prefix stands for: at most `PREFIX_WORDS` of the dictionary's words
/// starting with it, the most frequent first (then the shortest).
async fn prefix_words(
    conn: &mut Conn,
    prefix: &str,
    frequencies: &std::collections::HashMap<String, f64>,
) -> Result<Vec<String>> {
    // Lower-cased as the index's words are; in byte order, every word starting with the
    // prefix sorts below the prefix followed by the highest code point.
    let mut words: Vec<String> = sqlx::query_scalar(
        "SELECT word FROM search_words, lower($1) AS p(prefix)
         WHERE word >= p.prefix AND word < p.prefix || chr(1114111)
           AND starts_with(word, p.prefix)",
    )
    .bind(prefix)
    .fetch_all(&mut *conn)
    .await?;
    let frequency = |w: &String| frequencies.get(w).copied().unwrap_or(0.0);
    words.sort_by(|a, b| {
        frequency(b).total_cmp(&frequency(a)).then(a.len().cmp(&b.len())).then(a.cmp(b))
    });
    words.truncate(PREFIX_WORDS as usize);
    Ok(words)
}

/// The share of messages expected to match every term, from the statistics: a word's
/// frequency, a phrase's rarest word's, the sum of a prefix's words'; the rarest term's
/// for all. `None` when a term is not among the common words: few matches.
fn expected_matches(
    terms: &[Term],
    frequencies: &std::collections::HashMap<String, f64>,
) -> Option<f64> {
    let word = |w: &String| frequencies.get(&w.to_lowercase()).copied();
    let mut share = 1.0f64;
    for term in terms {
        let term_share = match term {
            Term::Word(w) => word(w)?,
            Term::Phrase(words) => words.iter().map(word).min_by(|a, b| {
                a.unwrap_or(0.0).total_cmp(&b.unwrap_or(0.0))
            })??,
            Term::AnyOf(words) => {
                let sum: f64 = words.iter().filter_map(word).sum();
                if sum == 0.0 {
                    return None;
                }
                sum.min(1.0)
            }
        };
        share = share.min(term_share);
    }
    Some(share)
}

/// Whether to probe the newest buckets first and, if so, the window to start with:
/// `(high, span, low)`, probing `high - span <= ts < high` first, never below `low`.
/// `None`: the searcher's messages times `frequency` are few enough to read at once.
async fn probe_window(
    conn: &mut Conn,
    conversations: &[i64],
    query: &SearchQuery,
    frequency: f64,
    wanted: i64,
) -> Result<Option<(i64, i64, i64)>> {
    // The searcher's messages (seqs count every entry: an estimate) and the oldest.
    let (messages, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT coalesce(sum(c.last_seq), 0)::BIGINT, min(f.ts) FROM conversations c
         LEFT JOIN LATERAL (SELECT ts FROM messages WHERE conversation_id = c.id
                            ORDER BY seq LIMIT 1) f ON TRUE
         WHERE c.id = ANY($1)",
    )
    .bind(conversations)
    .fetch_one(&mut *conn)
    .await?;
    let expected = messages as f64 * frequency;
    let Some(oldest) = oldest else { return Ok(None) };
    if expected <= PROBE_ABOVE {
        return Ok(None);
    }
    // Up to an hour ahead of this clock: another server's may run a little fast.
    let high = query.before.unwrap_or(i64::MAX).min(now_ms() + 3_600_000);
    let low = query.after.unwrap_or(i64::MIN).max(oldest);
    if high <= low {
        return Ok(None);
    }
    // Assuming the matches spread evenly over the searcher's history, a window holding
    // half as many again as wanted.
    let span = ((high - oldest) as f64 * (wanted as f64 * 1.5 / expected)) as i64;
    Ok(Some((high, span.max(BUCKET_MS / 4), low)))
}

/// The tsquery text: every term, `<->` between a phrase's words, `|` between a prefix's
/// words. Terms are letters and digits only (see `SearchTerm`, and the dictionary holds
/// lexemes), so no operator can slip in.
fn tsquery(terms: &[Term]) -> String {
    let quote = |w: &String| format!("'{}'", w.replace('\\', "\\\\").replace('\'', "''"));
    let terms: Vec<String> = terms
        .iter()
        .map(|term| match term {
            Term::Word(word) => quote(word),
            Term::Phrase(words) => {
                format!("({})", words.iter().map(quote).collect::<Vec<_>>().join(" <-> "))
            }
            Term::AnyOf(words) => {
                format!("({})", words.iter().map(quote).collect::<Vec<_>>().join(" | "))
            }
        })
        .collect();
    terms.join(" & ")
}
