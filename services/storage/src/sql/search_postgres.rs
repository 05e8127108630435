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
/// A search whose words are this common (the share of messages expected to match every
/// term) ranks only the newest [`COMMON_CANDIDATES`] matches: a word in one message of
/// twenty says little about which of them is best, and fetching 5,000 rows to rank them
/// was most of the time a heavy searcher's search took (docs/benchmarks.md).
const COMMON_SHARE: f64 = 0.05;
const COMMON_CANDIDATES: i64 = 1_000;
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
    let stats = statistics(conn, conversations).await?;
    let mut terms = Vec::with_capacity(query.terms.len());
    for term in &query.terms {
        match term {
            SearchTerm::Prefix(prefix) => {
                let words = prefix_words(conn, prefix, &stats.frequencies).await?;
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
    let expected = expected_matches(&terms, &stats.frequencies);
    // Rows wanted from the candidates: the ranked set, or just as far as this page.
    let wanted = match query.sort {
        SearchSort::Relevance if expected.is_some_and(|share| share >= COMMON_SHARE) => {
            COMMON_CANDIDATES
        }
        SearchSort::Relevance => CANDIDATES,
        SearchSort::Recent => i64::from(query.offset) + i64::from(limit),
    };
    // A sender filter leaves an unknown share of the matches (and reads them all before,
    // under the 100 ms target): only searches without one probe.
    let window = match (expected, stats.oldest) {
        (Some(frequency), Some(oldest)) if query.from.is_none() => {
            probe_window(query, stats.messages as f64 * frequency, oldest, wanted)
        }
        _ => None,
    };
    let Some((high, mut span)) = window else {
        return candidates(conn, &tsquery, conversations, query, limit, wanted, None).await;
    };
    let oldest = stats.oldest.unwrap_or(i64::MIN);
    loop {
        let mut from = high.saturating_sub(span);
        match query.after {
            // Down to the date asked for: the window is then the whole query.
            Some(after) if from <= after => from = after,
            // Back to the oldest messages (by the statistics, which sample): all of them.
            _ if from <= oldest => {
                return candidates(conn, &tsquery, conversations, query, limit, wanted, None).await;
            }
            _ => {}
        }
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
        if found >= wanted || query.after == Some(from) {
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
    let (sql, values) = candidates_sql(query, conversations, window);
    let mut statement = sqlx::query(&sql).bind(tsquery);
    for value in values {
        statement = statement.bind(value);
    }
    if let Some(window) = window {
        statement = statement.bind(&window.buckets);
    }
    let statement = statement.bind(wanted).bind(i64::from(limit)).bind(i64::from(query.offset));
    // The planner prices a bitmap scan over hundreds of conversations too high and would
    // rather read the whole table: for a search it never should.
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await?;
    let rows = statement.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}

/// The statement `candidates` runs: the tsquery text is `$1`, the filters' values
/// (returned) follow, then the probe's buckets (an array) when probing, then `wanted`, the
/// limit and the offset. The conversations are written into the text, not bound as an
/// array: the partitions of `messages` they live in are then known to every plan,
/// generic ones included, which cannot prune by an array parameter.
fn candidates_sql(
    query: &SearchQuery,
    conversations: &[i64],
    window: Option<&Probe>,
) -> (String, Vec<i64>) {
    let (filter, mut values) = filters(query, 2);
    let mut probe = String::new();
    if let Some(window) = window {
        let next = values.len() + 2;
        probe = format!(
            " AND m.ts >= ${next} AND m.ts < ${} AND (m.ts / 268435456) = ANY(${})",
            next + 1,
            next + 2
        );
        values.extend([window.from, window.high]);
    }
    let next = values.len() + 2 + usize::from(window.is_some());
    let order = match query.sort {
        SearchSort::Relevance => "m.score DESC, m.ts DESC",
        SearchSort::Recent => "m.ts DESC",
    };
    // The candidates carry what a hit shows, so the page needs no second read of them.
    let sql = format!(
        "WITH c AS MATERIALIZED (
             SELECT m.conversation_id, m.seq, m.kind, m.body, m.client_msg_id, m.ts, m.author,
                    m.ref_seq, m.edited_at, m.deleted_at, m.sender_id, m.search
             FROM messages m
             WHERE {} AND m.search @@ to_tsquery('simple', $1)
               AND {SEARCHABLE} AND {filter}{probe}
             ORDER BY m.ts DESC, m.conversation_id DESC, m.seq DESC LIMIT ${next}),
         page AS (
             SELECT m.*, ts_rank(m.search, to_tsquery('simple', $1)) AS score FROM c m
             ORDER BY {}, m.conversation_id DESC, m.seq DESC
             LIMIT ${} OFFSET ${})
         SELECT {FOUND}, (SELECT count(*) FROM c) AS candidates
         FROM page m JOIN users u ON u.id = m.sender_id
         ORDER BY {order}, m.conversation_id DESC, m.seq DESC",
        in_conversations(conversations),
        order.replace("m.score", "score"),
        next + 1,
        next + 2,
    );
    (sql, values)
}

/// [`candidates_sql`] without a probe (for the partition-pruning test).
#[cfg(test)]
pub fn matching_sql(query: &SearchQuery, conversations: &[i64]) -> (String, Vec<i64>) {
    candidates_sql(query, conversations, None)
}

/// What a search plans with: the searcher's message count (seqs count every entry: an
/// estimate), and from the planner's statistics (`pg_stats`, kept by ANALYZE and
/// autovacuum) each common word of `messages.search` with the share of messages holding
/// it (about a thousand words) and about when the oldest message was sent (the first
/// bound of the `ts` histogram). No words and `None` before the first ANALYZE.
///
/// `messages` is partitioned (migration 0012) and autovacuum analyzes only the
/// partitions, so the words come from one partition's statistics (a hash of the
/// conversations: a fair sample of all), the oldest time from the lowest of every
/// partition's and the parent's.
struct Statistics {
    messages: i64,
    frequencies: std::collections::HashMap<String, f64>,
    oldest: Option<i64>,
}

/// One round trip: a search's every query costs one under load.
async fn statistics(conn: &mut Conn, conversations: &[i64]) -> Result<Statistics> {
    type Row = (i64, Option<i64>, Option<Vec<String>>, Option<Vec<f32>>);
    let (messages, oldest, words, shares): Row = sqlx::query_as(
        "WITH s AS (SELECT * FROM pg_stats
                    WHERE schemaname = current_schema()
                      AND (tablename = 'messages' OR tablename ~ '^messages_p[0-9]+$')),
              w AS (SELECT * FROM s WHERE attname = 'search' ORDER BY tablename DESC LIMIT 1)
         SELECT (SELECT coalesce(sum(last_seq), 0)::BIGINT FROM conversations
                 WHERE id = ANY($1)),
                (SELECT min((histogram_bounds::text::BIGINT[])[1]) FROM s WHERE attname = 'ts'),
                (SELECT most_common_elems::text::text[] FROM w),
                (SELECT most_common_elem_freqs FROM w)",
    )
    .bind(conversations)
    .fetch_one(&mut *conn)
    .await?;
    // The shares list ends with a few summary numbers past the words: zip stops at the
    // last word.
    let frequencies = words
        .unwrap_or_default()
        .into_iter()
        .zip(shares.unwrap_or_default())
        .map(|(word, share)| (word, f64::from(share)))
        .collect();
    Ok(Statistics { messages, frequencies, oldest })
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
/// frequency, the sum of a prefix's words'; the rarest term's for all. `None` when a
/// term is not among the common words (few matches) or is a phrase (unknown).
fn expected_matches(
    terms: &[Term],
    frequencies: &std::collections::HashMap<String, f64>,
) -> Option<f64> {
    let word = |w: &String| frequencies.get(&w.to_lowercase()).copied();
    let mut share = 1.0f64;
    for term in terms {
        let term_share = match term {
            Term::Word(w) => word(w)?,
            // How often words stand side by side is not in the statistics, and guessing
            // from the rarer word's share overestimates it many times over: probing
            // then widens window after window, slower than reading all the matches.
            Term::Phrase(_) => return None,
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
/// `(high, span)`, probing `high - span <= ts < high` first.
/// `None`: the `expected` matches are few enough to read at once.
fn probe_window(query: &SearchQuery, expected: f64, oldest: i64, wanted: i64) -> Option<(i64, i64)> {
    if expected <= PROBE_ABOVE {
        return None;
    }
    // Up to an hour ahead of this clock: another server's may run a little fast.
    let high = query.before.unwrap_or(i64::MAX).min(now_ms() + 3_600_000);
    if high <= oldest || query.after.is_some_and(|after| high <= after) {
        return None;
    }
    // Assuming the matches spread evenly since the oldest message, a window holding
    // half as many again as wanted.
    let span = ((high - oldest) as f64 * (wanted as f64 * 1.5 / expected)) as i64;
    Some((high, span.max(BUCKET_MS / 4)))
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
