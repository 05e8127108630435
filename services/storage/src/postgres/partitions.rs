//! Partitioned history keeps the hot path on one partition: each statement the message
//! path runs, taken from the code that runs it, is executed against a real database of
//! this test's own, and the partitions of `messages` it actually read are counted.
//!
//! Plain statements: `EXPLAIN (ANALYZE, FORMAT JSON)` of the prepared statement, once
//! with a custom plan (pruned while planning) and once with a generic one (pruned when
//! the executor starts, or per row for correlated lookups: nodes never executed do not
//! count). `append_batch`, a function, hides its plan from EXPLAIN: its partitions are
//! the ones whose scan and write counts (`pg_stat_xact_user_tables`) it moved. (`SWITCHBOARD_TEST_POSTGRES` as for the storage suite.)

use std::collections::BTreeSet;

use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};
use switchboard_protocol::MessageKind;

use super::append::APPEND_BATCH;
use super::queries;
use crate::{NewMessage, NewUser, PgStore, SearchQuery, SearchTerm, Store, User, now_ms};

fn admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of the test's own, dropped by `drop_database`.
pub(super) struct TestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create(tag: &str) -> Self {
        let admin_url = admin_url();
        let name = format!("sbtest_{tag}_{}_{}", std::process::id(), now_ms() % 100_000);
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} (run scripts/test): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create");
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("SWITCHBOARD_TEST_POSTGRES must end in /DATABASE"),
        };
        Self { admin_url, name, url }
    }

    pub async fn drop_database(self) {
        let mut admin = PgConnection::connect(&self.admin_url).await.expect("connect");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut admin)
            .await
            .expect("drop");
    }
}

/// The partitions of `messages` scanned in `plan` (a node of EXPLAIN ANALYZE's JSON),
/// added to `into`: only the scans that ran, or (`planned`) every scan in the plan.
fn partitions_scanned(plan: &Value, planned: bool, into: &mut BTreeSet<String>) {
    let ran = plan["Actual Loops"].as_f64().is_some_and(|loops| loops > 0.0);
    if let Some(relation) = plan["Relation Name"].as_str()
        && relation.starts_with("messages_p")
        && plan["Node Type"] != "ModifyTable"
        && (ran || planned)
    {
        into.insert(relation.to_owned());
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        partitions_scanned(child, planned, into);
    }
}

/// The partitions `sql` reads and plans for: see [`scanned_and_planned`].
async fn scanned(
    conn: &mut PgConnection,
    sql: &str,
    args: &[String],
    mode: &str,
) -> BTreeSet<String> {
    scanned_and_planned(conn, sql, args, mode).await.0
}

/// Runs `sql` with `args` (SQL literals) as a prepared statement under `plan_cache_mode`,
/// inside a transaction rolled back after; returns the partitions it read, and those its
/// plan holds scans of (whether they ran or not: a plan's every partition costs planning).
async fn scanned_and_planned(
    conn: &mut PgConnection,
    sql: &str,
    args: &[String],
    mode: &str,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut tx = conn.begin().await.expect("begin");
    sqlx::raw_sql(&format!("SET LOCAL plan_cache_mode = {mode}; PREPARE hot AS {sql}"))
        .execute(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("PREPARE {sql}: {e}"));
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE hot({})", args.join(", "));
    let row = sqlx::raw_sql(&explain).fetch_one(&mut *tx).await.expect("EXPLAIN");
    // The plan comes as `json`, which is text on the wire.
    let text: String = row.try_get_unchecked(0).expect("EXPLAIN");
    let plan: Value = serde_json::from_str(&text).expect("EXPLAIN JSON");
    sqlx::raw_sql("DEALLOCATE hot").execute(&mut *tx).await.expect("DEALLOCATE");
    tx.rollback().await.expect("rollback");
    let (mut read, mut planned) = (BTreeSet::new(), BTreeSet::new());
    partitions_scanned(&plan[0]["Plan"], false, &mut read);
    partitions_scanned(&plan[0]["Plan"], true, &mut planned);
    (read, planned)
}

/// Per partition of `messages`: the scans and row writes this backend counted and has not
/// yet reported (those of the current transaction, and of earlier ones until the backend
/// flushes its statistics, which it does when idle: hence differences, not values).
async fn activity(conn: &mut PgConnection) -> std::collections::BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT relname::TEXT, seq_scan + COALESCE(idx_scan, 0) + n_tup_ins + n_tup_upd
         FROM pg_stat_xact_user_tables WHERE relname LIKE 'messages\\_p%'",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("pg_stat_xact_user_tables");
    rows.into_iter().collect()
}

/// Calls `append_batch` for `batch` as the appender does, in a transaction rolled back
/// after; returns the partitions of `messages` it scanned or wrote.
async fn appended_to(conn: &mut PgConnection, batch: &[NewMessage]) -> BTreeSet<String> {
    let mut tx = conn.begin().await.expect("begin");
    let before = activity(&mut tx).await;
    sqlx::query(APPEND_BATCH)
        .bind(batch.iter().map(|m| m.conversation_id).collect::<Vec<_>>())
        .bind(batch.iter().map(|m| m.sender.id).collect::<Vec<_>>())
        .bind(batch.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|m| m.body.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|m| m.client_msg_id.as_deref()).collect::<Vec<_>>())
        .bind(now_ms())
        .bind(batch.iter().map(|m| m.author.as_deref()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await
        .expect("append_batch");
    let after = activity(&mut tx).await;
    tx.rollback().await.expect("rollback");
    after
        .into_iter()
        .filter(|(partition, count)| before.get(partition) != Some(count))
        .map(|(partition, _)| partition)
        .collect()
}

fn text(conversation_id: i64, sender: &User, key: &str, body: &str) -> NewMessage {
    NewMessage {
        conversation_id,
        sender: sender.clone(),
        client_msg_id: Some(key.into()),
        kind: MessageKind::Text,
        body: body.into(),
        author: None,
    }
}

pub(super) fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        display_name: name.into(),
        org: String::new(),
        admin: false,
        password_hash: "not-a-real-hash".into(),
        department: String::new(),
        title: String::new(),
        bot: false,
    }
}

/// `value` as an SQL literal.
fn lit(value: impl ToString) -> String {
    format!("'{}'", value.to_string().replace('\'', "''"))
}

#[tokio::test]
async fn hot_path_statements_read_one_partition() {
    let db = TestDatabase::create("partitions").await;
    let store = PgStore::connect(&db.url).await.expect("store");
    let alice = store.create_user(new_user("alice")).await.expect("user");
    let bob = store.create_user(new_user("bob")).await.expect("user");
    let mut groups = Vec::new();
    for g in 0..40 {
        let (group, _) = store
            .create_group(&alice, &format!("g{g}"), std::slice::from_ref(&bob))
            .await
            .expect("group");
        for i in 0..5 {
            let key = format!("k{g}-{i}");
            store
                .append(text(group.id, &alice, &key, &format!("budget note {i}")))
                .await
                .expect("append");
        }
        groups.push(group.id);
    }
    let (c, other) = (groups[0], groups[1]);
    let root = store.history(c, &alice, None, None, 1).await.expect("history").messages[0].seq;
    store.reply(text(c, &bob, "r1", "on it"), root).await.expect("reply");
    store
        .change_message(&alice, c, root - 1, Some("budget, edited"), Some("e1"))
        .await
        .expect("edit");

    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("ANALYZE").execute(&mut conn).await.expect("ANALYZE");
    let partition_of = |conversation: i64| {
        format!(
            "SELECT tableoid::regclass::TEXT FROM messages WHERE conversation_id = {conversation} LIMIT 1"
        )
    };
    let home: String =
        sqlx::query_scalar(&partition_of(c)).fetch_one(&mut conn).await.expect("home");
    let mut away: String =
        sqlx::query_scalar(&partition_of(other)).fetch_one(&mut conn).await.expect("away");
    let mut other = other;
    for g in &groups[2..] {
        if away != home {
            break;
        }
        other = *g;
        away = sqlx::query_scalar(&partition_of(other)).fetch_one(&mut conn).await.expect("away");
    }
    assert_ne!(home, away, "40 conversations all in one partition: messages is not partitioned");

    let search = SearchQuery {
        terms: vec![SearchTerm::Word("budget".into())],
        limit: 20,
        ..Default::default()
    };
    let search_sql = |conversations: &[i64]| {
        let (sql, filter_values) = queries::matching_sql(&search, conversations);
        let mut args = vec![lit("budget")];
        args.extend(filter_values.iter().map(lit));
        args.extend([lit(5_000), lit(21), lit(0)]);
        (sql, args)
    };
    let (search_one, search_one_args) = search_sql(&[c]);
    let (alice_id, max) = (alice.id, i64::MAX);
    let hot_path: Vec<(&str, String, Vec<String>)> = vec![
        ("history page", queries::history_sql("DESC"), vec![lit(c), lit(0), lit(max), lit(51)]),
        (
            "backfill since seq",
            queries::history_sql("ASC"),
            vec![lit(c), lit(2), lit(max), lit(51)],
        ),
        ("retry lookup", queries::stored_copy_sql(), vec![lit(c), lit(alice_id), lit("k0-1")]),
        ("thread root", queries::thread_root_sql(), vec![lit(c), lit(root)]),
        ("thread replies", queries::thread_replies_sql(), vec![lit(c), lit(root), lit(0), lit(51)]),
        ("edit/delete lookup", queries::LIVE_MESSAGE.into(), vec![lit(c), lit(root)]),
        ("edit", queries::EDIT_MESSAGE.into(), vec![lit("new"), lit(now_ms()), lit(c), lit(root)]),
        ("delete", queries::DELETE_MESSAGE.into(), vec![lit(now_ms()), lit(c), lit(root)]),
        ("search in one conversation", search_one, search_one_args),
    ];
    for (what, sql, args) in &hot_path {
        for mode in ["force_custom_plan", "force_generic_plan"] {
            let (partitions, planned) = scanned_and_planned(&mut conn, sql, args, mode).await;
            assert_eq!(
                partitions,
                BTreeSet::from([home.clone()]),
                "{what} ({mode}) read {partitions:?}"
            );
            // A custom plan is made per call for its arguments: one that holds every
            // partition (a subquery not pruned while planning) costs several times its
            // run in planning alone.
            if mode == "force_custom_plan" {
                assert_eq!(planned, BTreeSet::from([home.clone()]), "{what} planned {planned:?}");
            }
        }
    }
    // A search over two conversations reads their two partitions, no others.
    for mode in ["force_custom_plan", "force_generic_plan"] {
        let (sql, args) = search_sql(&[c, other]);
        let partitions = scanned(&mut conn, &sql, &args, mode).await;
        assert_eq!(partitions, BTreeSet::from([home.clone(), away.clone()]), "search ({mode})");
    }
    // What counts partitions does see more than one: a lookup without the conversation.
    let everywhere = scanned(
        &mut conn,
        "SELECT count(*) FROM messages WHERE sender_id = $1",
        &[lit(alice_id)],
        "force_generic_plan",
    )
    .await;
    assert!(everywhere.len() > 2, "a lookup by sender alone read only {everywhere:?}");

    // Appends: a retry and a new message of one conversation touch its partition alone
    // (twice: the second call runs the connection's cached plan); a batch over two
    // conversations touches their two.
    let batch = [text(c, &alice, "k0-1", "again"), text(c, &alice, "fresh", "new")];
    for _ in 0..2 {
        assert_eq!(appended_to(&mut conn, &batch).await, BTreeSet::from([home.clone()]));
    }
    let two = [text(c, &alice, "fresh", "new"), text(other, &alice, "fresh", "new")];
    assert_eq!(appended_to(&mut conn, &two).await, BTreeSet::from([home.clone(), away.clone()]));

    drop((conn, store));
    db.drop_database().await;
}
