//! The dictionary harvester (`search_words.rs`) against real PostgreSQL, each test on a
//! database of its own (`SWITCHBOARD_TEST_POSTGRES` as for the storage suite): new and
//! edited words become prefix-searchable after a harvest, deleted ones never enter, two
//! harvesters on one database leave it right, appends never wait for a harvest, and the
//! harvest reads messages by primary key.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};
use switchboard_protocol::MessageKind;

use super::partitions::{TestDatabase, new_user};
use super::search_words::{self, Due, SearchWordsConfig};
use crate::{NewMessage, PgOptions, PgStore, SearchQuery, SearchTerm, Store, User};

/// A store whose harvester runs every `interval` (zero: only when asked).
async fn store(db: &TestDatabase, interval: Duration) -> PgStore {
    let search_words = SearchWordsConfig { interval, ..Default::default() };
    let options = PgOptions { search_words, ..Default::default() };
    PgStore::connect_with(&db.url, options).await.expect("store")
}

fn text(conversation_id: i64, sender: &User, body: &str) -> NewMessage {
    NewMessage {
        conversation_id,
        sender: sender.clone(),
        client_msg_id: None,
        kind: MessageKind::Text,
        body: body.into(),
        author: None,
    }
}

/// The seqs of `viewer`'s messages with a word starting with `prefix`.
async fn prefixed(store: &PgStore, viewer: &User, prefix: &str) -> Vec<i64> {
    let query = SearchQuery {
        terms: vec![SearchTerm::Prefix(prefix.into())],
        limit: 100,
        ..Default::default()
    };
    let page = store.search(viewer, &query).await.expect("search");
    page.messages.iter().map(|m| m.seq).collect()
}

async fn dictionary(conn: &mut PgConnection) -> BTreeSet<String> {
    let words: Vec<String> =
        sqlx::query_scalar("SELECT word FROM search_words").fetch_all(conn).await.expect("words");
    words.into_iter().collect()
}

#[tokio::test]
async fn new_and_edited_words_become_prefixes_after_a_harvest_deleted_ones_never() {
    let db = TestDatabase::create("words_harvest").await;
    let store = store(&db, Duration::ZERO).await;
    let alice = store.create_user(new_user("alice")).await.expect("user");
    let bob = store.create_user(new_user("bob")).await.expect("user");
    let (ab, _) = store.open_direct(&alice, &bob).await.expect("direct");

    let zebra = store.append(text(ab.id, &alice, "a zebrafish")).await.expect("append");
    let seq = zebra.message.seq;
    // A whole word is searchable at once; as a prefix only once harvested.
    let whole = SearchQuery {
        terms: vec![SearchTerm::Word("zebrafish".into())],
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.search(&bob, &whole).await.expect("search").messages.len(), 1);
    assert!(prefixed(&store, &bob, "zebra").await.is_empty(), "harvested with the append");
    assert!(store.harvest_search_words().await.expect("harvest") > 0);
    assert_eq!(prefixed(&store, &bob, "zebra").await, [seq]);

    // An edit's new word; a deleted message's word never enters the dictionary (nor do
    // the words of the edits of a deleted message).
    store.change_message(&alice, ab.id, seq, Some("a quokka"), None).await.expect("edit");
    let gone = store.append(text(ab.id, &alice, "wombat")).await.expect("append").message.seq;
    store.change_message(&alice, ab.id, gone, Some("wombatted"), None).await.expect("edit");
    store.change_message(&alice, ab.id, gone, None, None).await.expect("delete");
    store.harvest_search_words().await.expect("harvest");
    assert_eq!(prefixed(&store, &bob, "quok").await, [seq]);
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    let words = dictionary(&mut conn).await;
    assert!(words.contains("quokka") && words.contains("zebrafish"), "{words:?}");
    assert!(!words.iter().any(|w| w.starts_with("wombat")), "{words:?}");
    // Nothing left: a second harvest adds nothing.
    assert_eq!(store.harvest_search_words().await.expect("harvest"), 0);

    // The background task of a store with an interval does it by itself.
    let ticking = self::store(&db, Duration::from_millis(20)).await;
    let narwhal = ticking.append(text(ab.id, &bob, "narwhals")).await.expect("append");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while prefixed(&ticking, &alice, "narwh").await != [narwhal.message.seq] {
        assert!(tokio::time::Instant::now() < deadline, "the harvester never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((store, ticking, conn));
    db.drop_database().await;
}

#[tokio::test]
async fn two_harvesters_on_one_database_leave_the_dictionary_complete() {
    let db = TestDatabase::create("words_two").await;
    // Both harvest every millisecond by themselves, and are asked to as well.
    let (one, two) =
        (store(&db, Duration::from_millis(1)).await, store(&db, Duration::from_millis(1)).await);
    let alice = one.create_user(new_user("alice")).await.expect("user");
    let mut groups = Vec::new();
    for g in 0..6 {
        let others = [one.create_user(new_user(&format!("u{g}"))).await.expect("user")];
        groups.push(one.create_group(&alice, &format!("g{g}"), &others).await.expect("group").0);
    }
    let writes = async {
        for i in 0..300 {
            let (store, group) =
                if i % 2 == 0 { (&one, &groups[i % 6]) } else { (&two, &groups[i % 5]) };
            store.append(text(group.id, &alice, &format!("w{i}x unique"))).await.expect("append");
        }
    };
    let asks = async {
        for _ in 0..20 {
            let (a, b) = tokio::join!(one.harvest_search_words(), two.harvest_search_words());
            a.expect("harvest");
            b.expect("harvest");
        }
    };
    tokio::join!(writes, asks);
    one.harvest_search_words().await.expect("harvest");

    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    let expected: Vec<String> = sqlx::query_scalar(
        "SELECT word FROM ts_stat('SELECT search FROM messages WHERE deleted_at IS NULL')",
    )
    .fetch_all(&mut conn)
    .await
    .expect("ts_stat");
    let expected: BTreeSet<String> = expected.into_iter().collect();
    assert!(expected.contains("w299x"));
    assert_eq!(dictionary(&mut conn).await, expected);
    let behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM conversations c LEFT JOIN search_words_progress p
             ON p.conversation_id = c.id
         WHERE coalesce(p.seq, 0) <> c.last_seq",
    )
    .fetch_one(&mut conn)
    .await
    .expect("progress");
    assert_eq!(behind, 0, "every conversation harvested to its last seq");
    drop((one, two, conn));
    db.drop_database().await;
}

#[tokio::test]
async fn appends_edits_and_deletions_do_not_wait_for_a_harvest() {
    let db = TestDatabase::create("words_nowait").await;
    let store = store(&db, Duration::ZERO).await;
    let alice = store.create_user(new_user("alice")).await.expect("user");
    let bob = store.create_user(new_user("bob")).await.expect("user");
    let (ab, _) = store.open_direct(&alice, &bob).await.expect("direct");
    let first = store.append(text(ab.id, &alice, "ocelot")).await.expect("append").message.seq;

    // A harvest that wrote (the dictionary, the progress) and holds its lock, open.
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    let mut tx = conn.begin().await.expect("begin");
    let config = SearchWordsConfig::default();
    let step = search_words::step_in(&mut tx, &config, true).await.expect("step");
    assert!(step.is_some_and(|s| s.words > 0 && s.conversations > 0));

    let meanwhile = async {
        let seq = store.append(text(ab.id, &bob, "pangolin")).await.expect("append").message.seq;
        store.change_message(&alice, ab.id, first, Some("ocelots"), None).await.expect("edit");
        store.change_message(&bob, ab.id, seq, None, None).await.expect("delete");
        store.append(text(ab.id, &bob, "pangolins")).await.expect("append").message.seq
    };
    let last = tokio::time::timeout(Duration::from_secs(10), meanwhile)
        .await
        .expect("a write waited for the open harvest");
    // Another harvester skips the round rather than queue behind the open one.
    let other = PgConnection::connect(&db.url).await.expect("connect");
    let mut other = other;
    let mut other_tx = other.begin().await.expect("begin");
    assert_eq!(search_words::step_in(&mut other_tx, &config, false).await.expect("step"), None);
    other_tx.rollback().await.expect("rollback");
    tx.commit().await.expect("commit");

    // What was written meanwhile is harvested next.
    store.harvest_search_words().await.expect("harvest");
    assert_eq!(prefixed(&store, &alice, "pangol").await, [last]);
    assert_eq!(prefixed(&store, &alice, "ocelots").await, [first]);
    drop((store, conn, other));
    db.drop_database().await;
}

/// The scans of `messages` partitions in `plan` (EXPLAIN's JSON), as (node type, index).
fn message_scans(plan: &Value, into: &mut Vec<(String, String)>) {
    if let Some(relation) = plan["Relation Name"].as_str()
        && relation.starts_with("messages_p")
        && plan["Node Type"] != "ModifyTable"
    {
        let node = plan["Node Type"].as_str().unwrap_or_default().to_owned();
        into.push((node, plan["Index Name"].as_str().unwrap_or_default().to_owned()));
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        message_scans(child, into);
    }
}

#[tokio::test]
async fn a_harvest_reads_messages_by_primary_key() {
    let db = TestDatabase::create("words_plan").await;
    let store = store(&db, Duration::ZERO).await;
    let alice = store.create_user(new_user("alice")).await.expect("user");
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    // 200 conversations of 100 messages each, written in bulk; the last 10 of each due.
    sqlx::raw_sql(&format!(
        "INSERT INTO conversations (kind, name, owner_id, last_seq, created_at)
             SELECT 'group', 'g' || g, {alice}, 100, 0 FROM generate_series(1, 200) AS g;
         INSERT INTO messages (conversation_id, seq, sender_id, kind, body, ts)
             SELECT c.id, s, {alice}, 'text', 'note ' || s || ' of ' || c.id, 0
             FROM conversations c, generate_series(1, 100) AS s;",
        alice = alice.id
    ))
    .execute(&mut conn)
    .await
    .expect("history");
    sqlx::query("ANALYZE").execute(&mut conn).await.expect("ANALYZE");

    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM conversations")
        .fetch_all(&mut conn)
        .await
        .expect("conversations");
    let due: Vec<Due> = ids.iter().map(|&id| Due { id, done: 90, upto: 100 }).collect();
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", search_words::messages_sql(&due));
    let row = sqlx::raw_sql(&explain).fetch_one(&mut conn).await.expect("EXPLAIN");
    let text: String = row.try_get_unchecked(0).expect("EXPLAIN");
    let plan: Value = serde_json::from_str(&text).expect("EXPLAIN JSON");
    assert_eq!(plan[0]["Plan"]["Actual Rows"], 2000, "10 messages of each: {plan}");
    let mut scans = Vec::new();
    message_scans(&plan[0]["Plan"], &mut scans);
    assert!(!scans.is_empty(), "no scan of messages in {plan}");
    for (node, index) in &scans {
        assert!(
            node.starts_with("Index") && index.ends_with("_pkey"),
            "messages read by {node} {index}, not by primary key: {plan}"
        );
    }
    drop((store, conn));
    db.drop_database().await;
}

/// Entries waiting in the pending lists of the search index's partitions (pgstattuple,
/// a contrib extension of PostgreSQL's own packages).
async fn pending_entries(conn: &mut PgConnection) -> i64 {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        .execute(&mut *conn)
        .await
        .expect("pgstattuple");
    sqlx::query_scalar(
        "SELECT coalesce(sum((pgstatginindex(h.inhrelid)).pending_tuples), 0)::BIGINT
         FROM pg_inherits h WHERE h.inhparent = 'messages_search_by_time'::regclass",
    )
    .fetch_one(conn)
    .await
    .expect("pending entries")
}

#[tokio::test]
async fn the_background_round_empties_the_search_index_pending_list() {
    let db = TestDatabase::create("search_pending").await;
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    // Appends with no background task: their index entries wait in the pending lists.
    let quiet = store(&db, Duration::ZERO).await;
    let alice = quiet.create_user(new_user("alice")).await.expect("user");
    let bob = quiet.create_user(new_user("bob")).await.expect("user");
    let (ab, _) = quiet.open_direct(&alice, &bob).await.expect("direct");
    let mut seqs = Vec::new();
    for i in 0..40 {
        let body = format!("quarterly numbers draft {i}");
        seqs.push(quiet.append(text(ab.id, &alice, &body)).await.expect("append").message.seq);
    }
    assert!(pending_entries(&mut conn).await > 0, "appends left nothing pending");
    drop(quiet);

    // A store with its background task merges them into the index's tree by itself.
    let store = store(&db, Duration::from_millis(100)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pending_entries(&mut conn).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the pending list was never merged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And search finds every message there.
    let query = SearchQuery {
        terms: vec![SearchTerm::Word("quarterly".into())],
        limit: 100,
        ..Default::default()
    };
    let mut found: Vec<i64> =
        store.search(&bob, &query).await.expect("search").messages.iter().map(|m| m.seq).collect();
    found.sort_unstable();
    assert_eq!(found, seqs);
    drop((store, conn));
    db.drop_database().await;
}
