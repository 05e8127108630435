//! The message search benchmark: `search-seed` fills a database with a synthetic
//! organisation's history (straight into the tables, with the server's own migrations,
//! so millions of messages take minutes, not hours), and `search-bench` times
//! `Store::search` on it (the code the gateway calls) for common and rare words, with
//! and without filters. Figures go to docs/benchmarks.md.
//!
//! The history: `users` people; `groups` groups of about 25 members each, members drawn
//! with a skew (low user numbers belong to many groups, as some people do); `directs`
//! direct conversations between random pairs. 80% of the messages are in groups, the
//! rest in direct conversations; each conversation's messages are spread over the year
//! before now. A body is 4 to 15 words drawn from a 20,000-word vocabulary with a Zipf
//! distribution (word of rank r with probability about 1/r), so some words are in most
//! messages and most words are rare, as in real text.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use sqlx::Connection as _;
use switchboard_storage::{
    PgStore, SearchQuery, SearchSort, SearchTerm, SqliteStore, Store, User, now_ms,
};

use crate::rng::Rng;
use crate::stats::histogram;

/// Words in the vocabulary.
const VOCABULARY: usize = 20_000;
/// Members per group, before removing repeats.
const GROUP_SIZE: usize = 25;
const YEAR_MS: i64 = 365 * 86_400_000;
/// Real words for the most frequent ranks, so queries and reports read naturally.
const COMMON: &[&str] = &[
    "the", "to", "and", "we", "meeting", "project", "budget", "today", "review", "team", "deploy",
    "customer", "report", "office", "release", "plan", "invoice", "lunch", "server", "contract",
];

/// Where the benchmark data lives.
pub enum Target {
    Postgres(String),
    Sqlite(PathBuf),
}

pub struct SeedOptions {
    pub target: Target,
    pub messages: u64,
    pub users: usize,
    pub groups: usize,
    pub directs: usize,
    pub seed: u64,
}

/// The word of each rank (0 = most frequent).
fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = COMMON.iter().map(|w| (*w).to_owned()).collect();
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    let mut i = 0usize;
    while words.len() < VOCABULARY {
        // Pronounceable-ish made-up words: consonant-vowel pairs from the index.
        let (mut n, mut word) = (i * 7919 + 13, String::from("q"));
        for k in 0..3 {
            let pool: &[u8] = if k % 2 == 0 { b"aeiou" } else { letters };
            word.push(pool[n % pool.len()] as char);
            n /= pool.len();
            word.push(letters[n % 26] as char);
            n /= 26;
        }
        word.push_str(&i.to_string());
        words.push(word);
        i += 1;
    }
    words
}

/// A Zipf-distributed rank: ln(rank + 1) uniform in [0, ln(V + 1)) gives P(r) ~ 1/r.
fn rank(rng: &mut Rng) -> usize {
    let r = rng.uniform(0.0, ((VOCABULARY + 1) as f64).ln()).exp() as usize;
    r.saturating_sub(1).min(VOCABULARY - 1)
}

fn body(rng: &mut Rng, words: &[String]) -> String {
    let len = 4 + rng.below(12);
    let mut body = String::new();
    for i in 0..len {
        if i > 0 {
            body.push(' ');
        }
        body.push_str(&words[rank(rng)]);
    }
    body
}

/// Conversations: (member user indexes, message count). Groups first, then directs.
fn conversations(o: &SeedOptions, rng: &mut Rng) -> Vec<(Vec<usize>, u64)> {
    let mut out = Vec::with_capacity(o.groups + o.directs);
    let in_groups = o.messages * 8 / 10;
    for g in 0..o.groups {
        let mut members: Vec<usize> = (0..GROUP_SIZE)
            .map(|_| (o.users as f64 * rng.uniform(0.0, 1.0).powi(2)) as usize)
            .collect();
        members.sort_unstable();
        members.dedup();
        // Spread the group messages unevenly (0.5x to 1.5x the mean), summing exactly.
        let mean = in_groups / o.groups as u64;
        let n = if g + 1 == o.groups {
            in_groups - out.iter().map(|(_, n): &(Vec<usize>, u64)| n).sum::<u64>()
        } else {
            (mean as f64 * rng.uniform(0.5, 1.5)) as u64
        };
        out.push((members, n.max(1)));
    }
    let in_directs = o.messages - out.iter().map(|(_, n)| n).sum::<u64>().min(o.messages);
    let mut pairs = HashSet::new();
    while pairs.len() < o.directs {
        let (a, b) = (rng.below(o.users), rng.below(o.users));
        if a != b {
            pairs.insert((a.min(b), a.max(b)));
        }
    }
    let mut pairs: Vec<_> = pairs.into_iter().collect();
    pairs.sort_unstable();
    let per = in_directs / o.directs.max(1) as u64;
    let extra = in_directs % o.directs.max(1) as u64;
    for (i, (a, b)) in pairs.into_iter().enumerate() {
        out.push((vec![a, b], per + u64::from((i as u64) < extra)));
    }
    out
}

/// Fills an empty database (migrated by opening the store) with the synthetic history.
pub async fn seed(o: SeedOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut rng = Rng::new(o.seed);
    let words = vocabulary();
    let convs = conversations(&o, &mut rng);
    let now = now_ms();
    match &o.target {
        Target::Postgres(url) => {
            drop(PgStore::connect(url).await.context("cannot open the PostgreSQL store")?);
            let mut db = sqlx::PgConnection::connect(url).await?;
            seed_postgres(&mut db, &o, &convs, &words, &mut rng, now).await?;
        }
        Target::Sqlite(dir) => {
            drop(SqliteStore::open(dir).await.context("cannot open the SQLite store")?);
            let file = dir.join(switchboard_storage::SQLITE_FILE);
            let url = format!("sqlite://{}", file.display());
            let mut db = sqlx::SqliteConnection::connect(&url).await?;
            seed_sqlite(&mut db, &o, &convs, &words, &mut rng, now).await?;
            drop(db);
            // Rows inserted are only noted for the search indexer: index them here (and
            // merge the index into one segment, as years of merging would leave it), or a
            // server started on this database would index a million of them first.
            eprintln!("  indexing and merging the search index");
            let store = SqliteStore::open(dir).await.context("cannot open the SQLite store")?;
            store.settle_search_index().await.context("cannot index the seeded messages")?;
        }
    }
    println!("seeded {} messages in {:.0} s", o.messages, started.elapsed().as_secs_f64());
    Ok(())
}

/// The users, conversations and members, as SQL both engines run (ids are given, so
/// the messages can name them).
fn directory_sql(o: &SeedOptions, convs: &[(Vec<usize>, u64)], identity: &str) -> Vec<String> {
    let mut statements = Vec::new();
    for chunk in (0..o.users).collect::<Vec<_>>().chunks(1000) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|u| format!("({}, 'sb{u}', 'Bench user {u}', '!', 0)", u + 1))
            .collect();
        statements.push(format!(
            "INSERT INTO users (id, username, display_name, password_hash, created_at) {identity} VALUES {}",
            rows.join(", ")
        ));
    }
    let ids: Vec<usize> = (0..convs.len()).collect();
    for chunk in ids.chunks(1000) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|&c| {
                let (members, n) = &convs[c];
                if c < o.groups {
                    format!("({}, 'group', 'Group {c}', NULL, {}, {n}, 0)", c + 1, members[0] + 1)
                } else {
                    let key = format!("'{}:{}'", members[0] + 1, members[1] + 1);
                    format!("({}, 'direct', '', {key}, NULL, {n}, 0)", c + 1)
                }
            })
            .collect();
        statements.push(format!(
            "INSERT INTO conversations (id, kind, name, direct_key, owner_id, last_seq, created_at) \
             {identity} VALUES {}",
            rows.join(", ")
        ));
        let members: Vec<String> = chunk
            .iter()
            .flat_map(|&c| convs[c].0.iter().map(move |u| format!("({}, {}, 0, 0)", c + 1, u + 1)))
            .collect();
        statements.push(format!(
            "INSERT INTO members (conversation_id, user_id, read_seq, joined_at) VALUES {}",
            members.join(", ")
        ));
    }
    statements
}

/// Calls `row(conversation id, seq, sender id, body, ts)` for every message, in order.
fn messages(
    convs: &[(Vec<usize>, u64)],
    words: &[String],
    rng: &mut Rng,
    now: i64,
    mut row: impl FnMut(usize, u64, usize, String, i64),
) {
    for (c, (members, n)) in convs.iter().enumerate() {
        let step = YEAR_MS / (*n as i64 + 1);
        for seq in 1..=*n {
            let sender = members[rng.below(members.len())] + 1;
            let ts = now - YEAR_MS + step * seq as i64 + rng.below(step.max(1) as usize) as i64 / 2;
            row(c + 1, seq, sender, body(rng, words), ts);
        }
    }
}

async fn seed_postgres(
    db: &mut sqlx::PgConnection,
    o: &SeedOptions,
    convs: &[(Vec<usize>, u64)],
    words: &[String],
    rng: &mut Rng,
    now: i64,
) -> anyhow::Result<()> {
    let existing: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&mut *db).await?;
    if existing > 0 {
        bail!("the database is not empty ({existing} users); seed a new one");
    }
    for statement in directory_sql(o, convs, "OVERRIDING SYSTEM VALUE") {
        sqlx::raw_sql(&statement).execute(&mut *db).await?;
    }
    for table in ["users", "conversations"] {
        sqlx::raw_sql(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        ))
        .execute(&mut *db)
        .await?;
    }
    // The search index is built once at the end: far faster than entry by entry. So is
    // the word dictionary (no harvester runs: the store was closed), the harvester's
    // progress then set to the end of every conversation.
    sqlx::raw_sql("DROP INDEX messages_search_by_time;").execute(&mut *db).await?;
    let mut copy = db
        .copy_in_raw("COPY messages (conversation_id, seq, sender_id, kind, body, ts) FROM STDIN")
        .await?;
    // Generated on a thread, copied as it comes: the rows never all sit in memory.
    let (tx, mut chunks) = tokio::sync::mpsc::channel::<String>(4);
    let (convs, words, mut rng) = (convs.to_vec(), words.to_vec(), Rng::new(rng.next_u64()));
    let generator = std::thread::spawn(move || {
        let mut buffer = String::new();
        messages(&convs, &words, &mut rng, now, |c, seq, sender, body, ts| {
            let _ = writeln!(buffer, "{c}\t{seq}\t{sender}\ttext\t{body}\t{ts}");
            if buffer.len() > 1 << 20 {
                let _ = tx.blocking_send(std::mem::take(&mut buffer));
            }
        });
        let _ = tx.blocking_send(buffer);
    });
    let (mut sent, mut reported, total) = (0u64, 0u64, o.messages);
    while let Some(chunk) = chunks.recv().await {
        sent += chunk.lines().count() as u64;
        copy.send(chunk.into_bytes()).await?;
        if sent - reported >= 1_000_000 {
            reported = sent;
            eprintln!("  {sent} / {total} messages copied");
        }
    }
    copy.finish().await?;
    let _ = generator.join();
    eprintln!("  building the search index and the word dictionary");
    sqlx::raw_sql(
        "SET maintenance_work_mem = '1GB';
         CREATE INDEX messages_search_by_time ON messages
             USING gin (conversation_id, (ts / 268435456), search)
             WHERE deleted_at IS NULL AND kind IN ('text', 'broadcast', 'system');
         INSERT INTO search_words (word) SELECT word FROM ts_stat('SELECT search FROM messages');
         INSERT INTO search_words_progress (conversation_id, seq)
             SELECT id, last_seq FROM conversations
             ON CONFLICT (conversation_id) DO UPDATE SET seq = excluded.seq;
         ANALYZE;",
    )
    .execute(&mut *db)
    .await?;
    Ok(())
}

async fn seed_sqlite(
    db: &mut sqlx::SqliteConnection,
    o: &SeedOptions,
    convs: &[(Vec<usize>, u64)],
    words: &[String],
    rng: &mut Rng,
    now: i64,
) -> anyhow::Result<()> {
    let existing: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&mut *db).await?;
    if existing > 0 {
        bail!("the database is not empty ({existing} users); seed a new one");
    }
    sqlx::raw_sql("PRAGMA synchronous = OFF").execute(&mut *db).await?;
    for statement in directory_sql(o, convs, "") {
        sqlx::raw_sql(&statement).execute(&mut *db).await?;
    }
    // Multi-row inserts, a transaction per 50,000; the triggers note them for the
    // search indexer (SQLite migration 0014).
    let mut rows = Vec::with_capacity(500);
    let mut statements = Vec::new();
    messages(convs, words, rng, now, |c, seq, sender, body, ts| {
        rows.push(format!("({c}, {seq}, {sender}, 'text', '{body}', {ts})"));
        if rows.len() == 500 {
            statements.push(std::mem::take(&mut rows));
        }
    });
    statements.push(rows);
    let mut done = 0usize;
    for batch in statements.chunks(100) {
        let mut sql = String::from("BEGIN;");
        for rows in batch.iter().filter(|r| !r.is_empty()) {
            let _ = write!(
                sql,
                "INSERT INTO messages (conversation_id, seq, sender_id, kind, body, ts) VALUES {};",
                rows.join(", ")
            );
            done += rows.len();
        }
        sql.push_str("COMMIT;");
        sqlx::raw_sql(&sql).execute(&mut *db).await?;
        eprintln!("  {done} / {} messages inserted", o.messages);
    }
    sqlx::raw_sql("PRAGMA synchronous = FULL").execute(&mut *db).await?;
    Ok(())
}

pub struct BenchOptions {
    pub target: Target,
    /// Searchers per kind of query.
    pub queries: usize,
    pub seed: u64,
}

/// One kind of query, built for a given searcher.
struct Case {
    name: &'static str,
    build: fn(&Searcher, &[String]) -> SearchQuery,
}

struct Searcher {
    user: User,
    /// One of their conversations, and someone in it.
    conversation: i64,
    colleague: i64,
}

fn words_query(terms: &[SearchTerm]) -> SearchQuery {
    SearchQuery { terms: terms.to_vec(), limit: 20, ..SearchQuery::default() }
}

fn word(w: &str) -> SearchTerm {
    SearchTerm::Word(w.to_owned())
}

const CASES: &[Case] = &[
    Case { name: "very common word (\"the\", rank 1)", build: |_, v| words_query(&[word(&v[0])]) },
    Case { name: "common word (\"meeting\", rank 5)", build: |_, v| words_query(&[word(&v[4])]) },
    Case { name: "rare word (rank 15,000)", build: |_, v| words_query(&[word(&v[15_000])]) },
    Case { name: "two common words", build: |_, v| words_query(&[word(&v[4]), word(&v[6])]) },
    Case {
        name: "phrase of two common words",
        build: |_, v| words_query(&[SearchTerm::Phrase(vec![v[0].clone(), v[1].clone()])]),
    },
    Case {
        name: "prefix (\"proj*\")",
        build: |_, _| words_query(&[SearchTerm::Prefix("proj".into())]),
    },
    Case {
        name: "common word, newest first",
        build: |_, v| SearchQuery { sort: SearchSort::Recent, ..words_query(&[word(&v[4])]) },
    },
    Case {
        name: "common word from: a colleague",
        build: |s, v| SearchQuery { from: Some(s.colleague), ..words_query(&[word(&v[4])]) },
    },
    Case {
        name: "common word in: one conversation",
        build: |s, v| SearchQuery {
            conversations: Some(vec![s.conversation]),
            ..words_query(&[word(&v[4])])
        },
    },
    Case {
        name: "common word after: 30 days ago",
        build: |_, v| SearchQuery {
            after: Some(now_ms() - 30 * 86_400_000),
            ..words_query(&[word(&v[4])])
        },
    },
    Case {
        name: "rare word in: one conversation",
        build: |s, v| SearchQuery {
            conversations: Some(vec![s.conversation]),
            ..words_query(&[word(&v[15_000])])
        },
    },
    Case {
        name: "no words, from: a colleague",
        build: |s, _| SearchQuery { from: Some(s.colleague), limit: 20, ..SearchQuery::default() },
    },
];

/// Times every case for `queries` random searchers (after one untimed warm-up pass
/// with other searchers) and prints a table.
pub async fn bench(o: BenchOptions) -> anyhow::Result<()> {
    let store: Box<dyn Store> = match &o.target {
        Target::Postgres(url) => Box::new(PgStore::connect(url).await?),
        Target::Sqlite(dir) => Box::new(SqliteStore::open(dir).await?),
    };
    let users = store.user_count().await?;
    if users == 0 {
        bail!("no users: run search-seed first");
    }
    let words = vocabulary();
    let mut rng = Rng::new(o.seed);
    let mut searchers = Vec::new();
    while searchers.len() < o.queries * 2 {
        let user = store.user_by_name(&format!("sb{}", rng.below(users as usize))).await?;
        let mine = store.conversations_of(user.id).await?;
        let Some(conversation) = mine.get(rng.below(mine.len().max(1))) else { continue };
        let other = &conversation.members[rng.below(conversation.members.len())];
        let colleague = store.user_by_name(other).await?.id;
        searchers.push(Searcher { user, conversation: conversation.id, colleague });
    }
    let (warm, timed) = searchers.split_at(o.queries);
    println!("| query | p50 ms | p99 ms | max ms | results per page (mean, of 20) |");
    println!("|---|---|---|---|---|");
    for case in CASES {
        for s in warm {
            store.search(&s.user, &(case.build)(s, &words)).await?;
        }
        let mut latency = histogram();
        let mut found = 0usize;
        for s in timed {
            let query = (case.build)(s, &words);
            let started = Instant::now();
            let page = store.search(&s.user, &query).await?;
            latency.record(started.elapsed().as_micros().max(1) as u64)?;
            found += page.messages.len();
        }
        let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            case.name,
            ms(0.5),
            ms(0.99),
            latency.max() as f64 / 1000.0,
            found as f64 / timed.len() as f64
        );
    }
    Ok(())
}
