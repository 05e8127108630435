//! The storage contract, checked against real databases: SQLite on disk and PostgreSQL
//! (`SWITCHBOARD_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/postgres`,
//! which `scripts/test` makes sure is running), directly and behind the gRPC storage
//! service. Every check runs against all three; each test gets its own SQLite directory
//! or its own PostgreSQL database, dropped after.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;
use switchboard_protocol::MessageKind;
use switchboard_storage::grpc::{self, RemoteStore};
use switchboard_storage::{
    AuditQuery, DirectoryEntry, DirectoryUser, ExportQuery, LoginLock, NewAttachment,
    NewAuditEntry, NewBroadcast, NewMessage, NewUser, PgOptions, PgStore, SearchQuery, SearchSort,
    SearchTerm, SqliteStore, Store, StoreError, User, now_ms,
};

enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
    /// PostgreSQL behind the gRPC storage service, called through `RemoteStore`.
    Remote(TestDatabase, tokio::sync::oneshot::Sender<()>),
}

/// A PostgreSQL database of one test's own, dropped by `Fixture::finish`.
struct TestDatabase {
    admin_url: String,
    url: String,
    name: String,
}

impl TestDatabase {
    async fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url();
        let name = format!(
            "sbtest_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            now_ms() % 100_000
        );
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} (run scripts/test): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("SWITCHBOARD_TEST_POSTGRES must end in /DATABASE"),
        };
        Self { admin_url, url, name }
    }

    async fn drop_database(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// Serves a `PgStore` on `url` over gRPC on an ephemeral port; returns a client for it,
/// the switch that stops the service and the served store (for `Fixture::harvest`).
async fn remote(url: &str) -> (RemoteStore, tokio::sync::oneshot::Sender<()>, Arc<PgStore>) {
    let pg = Arc::new(PgStore::connect(url).await.unwrap());
    let store: Arc<dyn Store> = pg.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(grpc::serve(listener, store, async move {
        let _ = stopped.await;
    }));
    (RemoteStore::connect_lazy(&format!("http://{addr}")).unwrap(), stop, pg)
}

struct Fixture {
    store: Arc<dyn Store>,
    backend: Backend,
    /// The PostgreSQL store behind `store` (directly or served), whose prefix dictionary
    /// `harvest` brings up to date.
    pg: Option<Arc<PgStore>>,
}

fn admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl Fixture {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        Self { store: Arc::new(store), backend: Backend::Sqlite(dir), pg: None }
    }

    async fn postgres() -> Self {
        let db = TestDatabase::create().await;
        let pg = Arc::new(PgStore::connect(&db.url).await.unwrap());
        Self { store: pg.clone(), backend: Backend::Postgres(db), pg: Some(pg) }
    }

    /// PostgreSQL with two batches committing at once (`--commit-pipeline 2`).
    async fn postgres_pipelined() -> Self {
        let db = TestDatabase::create().await;
        let options = PgOptions { commit_pipeline: 2, ..Default::default() };
        let pg = Arc::new(PgStore::connect_with(&db.url, options).await.unwrap());
        Self { store: pg.clone(), backend: Backend::Postgres(db), pg: Some(pg) }
    }

    async fn remote() -> Self {
        let db = TestDatabase::create().await;
        let (store, stop, pg) = remote(&db.url).await;
        Self { store: Arc::new(store), backend: Backend::Remote(db, stop), pg: Some(pg) }
    }

    /// Closes the store and opens it again on the same data.
    async fn reopen(&mut self) {
        self.pg = None;
        self.store = match &mut self.backend {
            Backend::Sqlite(dir) => Arc::new(SqliteStore::open(dir.path()).await.unwrap()),
            Backend::Postgres(db) => {
                let pg = Arc::new(PgStore::connect(&db.url).await.unwrap());
                self.pg = Some(pg.clone());
                pg
            }
            Backend::Remote(db, stop) => {
                let (store, new_stop, pg) = remote(&db.url).await;
                let _ = std::mem::replace(stop, new_stop).send(());
                self.pg = Some(pg);
                Arc::new(store)
            }
        };
    }

    /// PostgreSQL: adds the words of what was written so far to the prefix dictionary
    /// now rather than within the harvester's second (SQLite's index needs none).
    async fn harvest(&self) {
        if let Some(pg) = &self.pg {
            pg.harvest_search_words().await.unwrap();
        }
    }

    /// Makes messages `seqs` of `conversation` look `days` old, straight in the database
    /// (nothing in the API writes the past).
    async fn backdate(&self, conversation: i64, seqs: &[i64], days: i64) {
        let ts = now_ms() - days * 86_400_000;
        let sql = "UPDATE messages SET ts = $1 WHERE conversation_id = $2 AND seq = $3";
        match &self.backend {
            Backend::Sqlite(dir) => {
                let path = dir.path().join(switchboard_storage::SQLITE_FILE);
                let mut db =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                for seq in seqs {
                    let q = sqlx::query(sql).bind(ts).bind(conversation).bind(*seq);
                    q.execute(&mut db).await.unwrap();
                }
            }
            Backend::Postgres(db) | Backend::Remote(db, _) => {
                let mut db = sqlx::PgConnection::connect(&db.url).await.unwrap();
                for seq in seqs {
                    let q = sqlx::query(sql).bind(ts).bind(conversation).bind(*seq);
                    q.execute(&mut db).await.unwrap();
                }
            }
        }
    }

    async fn finish(self) {
        drop(self.store);
        drop(self.pg);
        match self.backend {
            Backend::Sqlite(_) => {}
            Backend::Postgres(db) => db.drop_database().await,
            Backend::Remote(db, stop) => {
                let _ = stop.send(());
                db.drop_database().await;
            }
        }
    }
}

/// Runs each listed check once per backend: `sqlite::NAME`, `postgres::NAME`, `remote::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let fixture = super::Fixture::sqlite().await;
                let fixture = super::$name(fixture).await;
                fixture.finish().await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let fixture = super::Fixture::postgres().await;
                let fixture = super::$name(fixture).await;
                fixture.finish().await;
            })*
        }
        mod remote {
            $(#[tokio::test]
            async fn $name() {
                let fixture = super::Fixture::remote().await;
                let fixture = super::$name(fixture).await;
                fixture.finish().await;
            })*
        }
    };
}

on_both_backends!(
    concurrent_writers_get_gapless_increasing_seqs,
    a_retry_returns_the_first_copy_and_stores_nothing,
    a_rejected_message_does_not_hold_back_the_rest_of_its_batch,
    only_members_write_and_read,
    a_direct_conversation_is_one_per_pair,
    history_pages_both_ways,
    read_cursors_only_move_forward_and_stop_at_the_end,
    tokens_expire_and_revoke,
    failed_sign_ins_count_until_a_success,
    committed_messages_survive_reopening,
    membership_changes_are_recorded_in_order,
    the_directory_finds_people_by_name_and_org,
    last_messages_preview_each_conversation,
    directory_imports_are_all_or_nothing_and_idempotent,
    directory_sign_ins_create_then_follow_and_leave_local_accounts_alone,
    webhook_posts_are_system_messages_and_revocable,
    broadcasts_are_stored_once_and_pending_past_the_cursor,
    search_finds_only_what_the_searcher_may_read,
    search_matches_words_phrases_prefixes_and_filters,
    search_ranks_and_pages,
    edits_and_deletions_are_entries_with_their_own_seq,
    search_follows_changes_made_before_and_after_indexing,
    thread_replies_are_messages_of_their_conversation,
    a_thread_reads_its_root_then_its_replies,
    reactions_are_counted_per_emoji_and_stored_as_entries,
    retention_deletes_what_is_past_its_age_except_under_hold,
    attachments_are_stored_with_their_message_for_members_only,
    retention_trashes_attachments_with_their_messages,
    a_retention_transaction_stops_at_its_time_budget,
    retention_deletes_orphaned_attachment_objects_only,
    the_audit_log_filters_and_pages_newest_first,
    a_disabled_account_cannot_sign_in_and_its_tokens_stop_working,
    the_export_has_every_message_with_its_edits_deletion_and_reactions,
);

async fn user(store: &dyn Store, name: &str) -> User {
    store
        .create_user(NewUser {
            username: name.into(),
            display_name: name.into(),
            org: "HQ".into(),
            admin: false,
            password_hash: "not-a-real-hash".into(),
            department: String::new(),
            title: String::new(),
            bot: false,
        })
        .await
        .unwrap()
}

fn text(conversation_id: i64, sender: &User, key: &str) -> NewMessage {
    NewMessage {
        conversation_id,
        sender: sender.clone(),
        client_msg_id: Some(key.into()),
        kind: MessageKind::Text,
        body: format!("body of {key}"),
        author: None,
    }
}

async fn concurrent_writers_get_gapless_increasing_seqs(f: Fixture) -> Fixture {
    let mut writers = Vec::new();
    for i in 0..8 {
        writers.push(user(f.store.as_ref(), &format!("w{i}")).await);
    }
    let (group, _) = f.store.create_group(&writers[0], "load", &writers).await.unwrap();
    let mut tasks = Vec::new();
    for writer in writers.clone() {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..100 {
                let key = format!("{}-{n}", writer.username);
                seqs.push(store.append(text(group.id, &writer, &key)).await.unwrap().message.seq);
            }
            seqs
        }));
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one writer's seqs increase");
        all.extend(seqs);
    }
    // seq 1 is the group's creation message.
    assert_eq!(all, (2..=801).collect::<BTreeSet<i64>>());
    let page = f.store.history(group.id, &writers[0], Some(0), None, 1000).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=801).collect::<Vec<_>>()
    );
    f
}

/// One sender's appends in flight together (a bot or bridge that does not wait for each
/// ack) are stored in the order sent, also when the appender commits several batches at
/// once (PostgreSQL): a later append waits for the commit of its sender's earlier ones.
/// Not run through `RemoteStore`, whose concurrent calls make no such promise (a session
/// sends its next message only after the ack of the last).
async fn one_senders_appends_in_flight_together_keep_their_order(f: Fixture) -> Fixture {
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (direct, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    // Waves of 30 a millisecond apart, so later waves arrive while earlier ones commit;
    // within a wave they queue in order (join_all polls them in order).
    let mut waves = Vec::new();
    for wave in 0..20 {
        let (store, alice, bob) = (f.store.clone(), alice.clone(), bob.clone());
        waves.push(tokio::spawn(async move {
            let senders: Vec<User> =
                (0..30).map(|n| if n % 3 == 0 { bob.clone() } else { alice.clone() }).collect();
            let appends = senders
                .iter()
                .enumerate()
                .map(|(n, sender)| store.append(text(direct.id, sender, &format!("{wave}-{n}"))));
            let outcomes = futures_util::future::join_all(appends).await;
            senders
                .iter()
                .zip(outcomes)
                .map(|(sender, outcome)| (sender.id, outcome.unwrap().message.seq))
                .collect::<Vec<_>>()
        }));
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let mut sent = Vec::new();
    for wave in waves {
        sent.extend(wave.await.unwrap());
    }
    for who in [&alice, &bob] {
        let seqs: Vec<i64> = sent.iter().filter(|(id, _)| *id == who.id).map(|(_, s)| *s).collect();
        assert_eq!(seqs.len(), if who.id == bob.id { 200 } else { 400 });
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{}'s seqs in order: {seqs:?}", who.username);
    }
    f
}

mod in_order {
    #[tokio::test]
    async fn sqlite() {
        let fixture = super::Fixture::sqlite().await;
        super::one_senders_appends_in_flight_together_keep_their_order(fixture)
            .await
            .finish()
            .await;
    }

    #[tokio::test]
    async fn postgres() {
        let fixture = super::Fixture::postgres().await;
        super::one_senders_appends_in_flight_together_keep_their_order(fixture)
            .await
            .finish()
            .await;
    }

    #[tokio::test]
    async fn postgres_pipelined() {
        let fixture = super::Fixture::postgres_pipelined().await;
        super::one_senders_appends_in_flight_together_keep_their_order(fixture)
            .await
            .finish()
            .await;
    }
}

async fn a_retry_returns_the_first_copy_and_stores_nothing(f: Fixture) -> Fixture {
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (direct, _) = f.store.open_direct(&alice, &bob).await.unwrap();

    // Ten copies of one send racing each other: one stores, nine find it.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (store, alice) = (f.store.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            store.append(text(direct.id, &alice, "same")).await.unwrap()
        }));
    }
    let mut stored = 0;
    for task in tasks {
        let appended = task.await.unwrap();
        assert_eq!(appended.message.seq, 1);
        stored += usize::from(!appended.duplicate);
        // The stored copy names who to fan it out to; a duplicate is not fanned out.
        let mut members = appended.members.clone();
        members.sort();
        let expected = if appended.duplicate { vec![] } else { vec![alice.id, bob.id] };
        assert_eq!(members, expected);
    }
    assert_eq!(stored, 1);
    // The key belongs to the sender: bob may use the same one.
    let bobs = f.store.append(text(direct.id, &bob, "same")).await.unwrap();
    assert_eq!((bobs.message.seq, bobs.duplicate), (2, false));
    let page = f.store.history(direct.id, &alice, None, None, 100).await.unwrap();
    assert_eq!(page.messages.len(), 2);
    // ... within one conversation: in another one the same key is a new message, and a
    // retry there finds that one (twice in one batch too).
    let (group, _) = f.store.create_group(&alice, "Ops", std::slice::from_ref(&bob)).await.unwrap();
    let (first, again) = tokio::join!(
        f.store.append(text(group.id, &alice, "same")),
        f.store.append(text(group.id, &alice, "same"))
    );
    let (first, again) = (first.unwrap(), again.unwrap());
    assert_eq!((first.message.conversation_id, first.message.seq), (group.id, 2));
    assert_eq!((again.message.conversation_id, again.message.seq), (group.id, 2));
    assert_eq!(usize::from(first.duplicate) + usize::from(again.duplicate), 1);
    let retried = f.store.append(text(direct.id, &alice, "same")).await.unwrap();
    assert_eq!((retried.message.conversation_id, retried.message.seq), (direct.id, 1));
    assert!(retried.duplicate);
    // A retry stored together with new sends (one batch, when they meet): the retry gets
    // its first copy, the new ones the next seqs, with no gap.
    let (retry, new, newer) = tokio::join!(
        f.store.append(text(direct.id, &alice, "same")),
        f.store.append(text(direct.id, &alice, "new")),
        f.store.append(text(direct.id, &bob, "newer")),
    );
    let (retry, new, newer) = (retry.unwrap(), new.unwrap(), newer.unwrap());
    assert_eq!(
        (retry.message.seq, retry.duplicate, retry.message.body.as_str()),
        (1, true, "body of same")
    );
    let mut seqs = [(new.message.seq, new.duplicate), (newer.message.seq, newer.duplicate)];
    seqs.sort();
    assert_eq!(seqs, [(3, false), (4, false)]);
    let mut members = new.members.clone();
    members.sort();
    assert_eq!(members, vec![alice.id, bob.id]);
    let page = f.store.history(direct.id, &alice, None, None, 100).await.unwrap();
    let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    f
}

async fn a_rejected_message_does_not_hold_back_the_rest_of_its_batch(f: Fixture) -> Fixture {
    let [alice, bob, eve] = [
        user(f.store.as_ref(), "alice").await,
        user(f.store.as_ref(), "bob").await,
        user(f.store.as_ref(), "eve").await,
    ];
    let (direct, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    // Sent together, so the appender commits them in the same batches: good messages,
    // a non-member's, one to a conversation that does not exist, and retries.
    let mut sends = Vec::new();
    for n in 0..30 {
        let (sender, conversation, key) = match n % 5 {
            0 => (eve.clone(), direct.id, format!("eve-{n}")),
            1 => (alice.clone(), 4242, format!("lost-{n}")),
            2 => (alice.clone(), direct.id, "retried".to_owned()),
            _ => (bob.clone(), direct.id, format!("bob-{n}")),
        };
        let store = f.store.clone();
        sends.push(tokio::spawn(async move {
            (n, store.append(text(conversation, &sender, &key)).await)
        }));
    }
    let mut stored = BTreeSet::new();
    let mut retried_seq = BTreeSet::new();
    for send in sends {
        let (n, outcome) = send.await.unwrap();
        match n % 5 {
            0 => assert!(matches!(outcome, Err(StoreError::NotMember { .. })), "{outcome:?}"),
            1 => assert!(matches!(outcome, Err(StoreError::ConversationNotFound(4242)))),
            2 => {
                let appended = outcome.unwrap();
                retried_seq.insert(appended.message.seq);
                if !appended.duplicate {
                    stored.insert(appended.message.seq);
                }
            }
            _ => {
                let appended = outcome.unwrap();
                assert!(!appended.duplicate);
                assert_eq!(appended.members.len(), 2);
                stored.insert(appended.message.seq);
            }
        }
    }
    // One copy of the retried message, all twelve of bob's, no seq skipped.
    assert_eq!(retried_seq.len(), 1);
    assert_eq!(stored, (1..=13).collect::<BTreeSet<i64>>());
    let page = f.store.history(direct.id, &alice, None, None, 100).await.unwrap();
    assert_eq!(page.messages.len(), 13);
    f
}

async fn only_members_write_and_read(f: Fixture) -> Fixture {
    let [alice, bob, eve] = [
        user(f.store.as_ref(), "alice").await,
        user(f.store.as_ref(), "bob").await,
        user(f.store.as_ref(), "eve").await,
    ];
    let (direct, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    let err = f.store.append(text(direct.id, &eve, "x")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotMember { conversation, .. } if conversation == direct.id),
        "{err}"
    );
    let err = f.store.append(text(4242, &alice, "x")).await.unwrap_err();
    assert!(matches!(err, StoreError::ConversationNotFound(4242)), "{err}");
    let err = f.store.history(direct.id, &eve, None, None, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::NotMember { .. }), "{err}");
    let err = f.store.conversation(direct.id, &eve).await.unwrap_err();
    assert!(matches!(err, StoreError::NotMember { .. }), "{err}");
    // Rejected appends took no seq.
    let ok = f.store.append(text(direct.id, &alice, "y")).await.unwrap();
    assert_eq!(ok.message.seq, 1);
    f
}

async fn a_direct_conversation_is_one_per_pair(f: Fixture) -> Fixture {
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (first, created) = f.store.open_direct(&alice, &bob).await.unwrap();
    let (again, created_again) = f.store.open_direct(&bob, &alice).await.unwrap();
    assert!(created && !created_again);
    assert_eq!(first.id, again.id);
    assert_eq!(first.members, ["alice", "bob"]);
    let carol = user(f.store.as_ref(), "carol").await;
    let err = f.store.add_members(&alice, first.id, &[carol]).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))));
    f
}

async fn history_pages_both_ways(f: Fixture) -> Fixture {
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (direct, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    for n in 0..250 {
        f.store.append(text(direct.id, &alice, &format!("m{n}"))).await.unwrap();
    }
    let newest = f.store.history(direct.id, &bob, None, None, 100).await.unwrap();
    assert_eq!(
        (newest.messages[0].seq, newest.messages[99].seq, newest.has_more),
        (151, 250, true)
    );
    let older = f.store.history(direct.id, &bob, None, Some(151), 100).await.unwrap();
    assert_eq!((older.messages[0].seq, older.has_more), (51, true));
    let oldest = f.store.history(direct.id, &bob, None, Some(51), 100).await.unwrap();
    assert_eq!((oldest.messages.len(), oldest.has_more), (50, false));
    let forward = f.store.history(direct.id, &bob, Some(240), None, 100).await.unwrap();
    assert_eq!(
        (forward.messages.len(), forward.messages[0].seq, forward.has_more),
        (10, 241, false)
    );
    let capped = f.store.history(direct.id, &bob, Some(0), None, 5000).await.unwrap();
    assert_eq!(capped.messages.len(), 250);
    f
}

async fn read_cursors_only_move_forward_and_stop_at_the_end(f: Fixture) -> Fixture {
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (direct, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    for n in 0..5 {
        f.store.append(text(direct.id, &alice, &format!("m{n}"))).await.unwrap();
    }
    assert_eq!(f.store.mark_read(direct.id, &bob, 3).await.unwrap(), 3);
    assert_eq!(f.store.mark_read(direct.id, &bob, 1).await.unwrap(), 3);
    assert_eq!(f.store.mark_read(direct.id, &bob, 99).await.unwrap(), 5);
    assert_eq!(f.store.conversation(direct.id, &bob).await.unwrap().read_seq, Some(5));
    assert_eq!(f.store.conversation(direct.id, &alice).await.unwrap().read_seq, Some(0));
    // Every member sees everyone's cursor; others see nothing.
    let cursors = f.store.read_cursors(direct.id, &alice).await.unwrap();
    assert_eq!(cursors, [("alice".to_owned(), 0), ("bob".to_owned(), 5)]);
    let carol = user(f.store.as_ref(), "carol").await;
    let err = f.store.read_cursors(direct.id, &carol).await;
    assert!(matches!(err, Err(StoreError::NotMember { .. })));
    f
}

async fn tokens_expire_and_revoke(f: Fixture) -> Fixture {
    let alice = user(f.store.as_ref(), "alice").await;
    f.store.insert_token(b"live", alice.id, now_ms() + 60_000).await.unwrap();
    f.store.insert_token(b"old", alice.id, now_ms() - 1).await.unwrap();
    assert_eq!(f.store.user_by_token(b"live").await.unwrap().map(|u| u.id), Some(alice.id));
    assert!(f.store.user_by_token(b"old").await.unwrap().is_none());
    assert!(f.store.user_by_token(b"never").await.unwrap().is_none());
    f.store.revoke_token(b"live").await.unwrap();
    assert!(f.store.user_by_token(b"live").await.unwrap().is_none());
    let err = f
        .store
        .create_user(NewUser {
            username: "alice".into(),
            display_name: String::new(),
            org: String::new(),
            admin: false,
            password_hash: "h".into(),
            department: String::new(),
            title: String::new(),
            bot: false,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UserExists(name) if name == "alice"));
    f
}

async fn failed_sign_ins_count_until_a_success(f: Fixture) -> Fixture {
    let alice = user(f.store.as_ref(), "alice").await;
    let bob = user(f.store.as_ref(), "bob").await;
    assert_eq!(f.store.login_lock(alice.id).await.unwrap(), LoginLock::default());
    for n in 1..=3 {
        assert_eq!(f.store.login_failed(alice.id).await.unwrap(), n);
    }
    f.store.lock_login(alice.id, 5_000).await.unwrap();
    // A shorter lock (another gateway's, a moment late) does not shorten it.
    f.store.lock_login(alice.id, 4_000).await.unwrap();
    let lock = f.store.login_lock(alice.id).await.unwrap();
    assert_eq!(lock, LoginLock { failures: 3, locked_until: 5_000 });
    assert_eq!(f.store.login_lock(bob.id).await.unwrap(), LoginLock::default(), "per account");
    f.store.login_succeeded(alice.id).await.unwrap();
    assert_eq!(f.store.login_lock(alice.id).await.unwrap(), LoginLock::default());
    assert!(matches!(f.store.login_failed(999_999).await, Err(StoreError::UserNotFound(_))));
    f
}

async fn committed_messages_survive_reopening(mut f: Fixture) -> Fixture {
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (direct, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    for n in 0..3 {
        f.store.append(text(direct.id, &alice, &format!("m{n}"))).await.unwrap();
    }
    f.reopen().await;
    let page = f.store.history(direct.id, &bob, None, None, 10).await.unwrap();
    assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(f.store.conversations_of(bob.id).await.unwrap()[0].last_seq, 3);
    assert_eq!(f.store.conversation_seqs(bob.id).await.unwrap(), [(direct.id, 3)]);
    let next = f.store.append(text(direct.id, &bob, "after")).await.unwrap();
    assert_eq!(next.message.seq, 4);
    f
}

async fn membership_changes_are_recorded_in_order(f: Fixture) -> Fixture {
    let [ann, ben, cat] = [
        user(f.store.as_ref(), "ann").await,
        user(f.store.as_ref(), "ben").await,
        user(f.store.as_ref(), "cat").await,
    ];
    let (group, created) =
        f.store.create_group(&ann, " Ops ", &[ben.clone(), ben.clone()]).await.unwrap();
    assert_eq!((group.name.as_str(), created.seq, created.kind), ("Ops", 1, MessageKind::System));
    assert_eq!(created.body, "ann created the group \"Ops\" with ben");
    assert_eq!(group.members, ["ann", "ben"]);
    let (group, added) =
        f.store.add_members(&ben, group.id, std::slice::from_ref(&cat)).await.unwrap();
    assert_eq!((added.seq, added.body.as_str()), (2, "ben added cat"));
    assert_eq!(group.members, ["ann", "ben", "cat"]);
    let refused = f.store.remove_member(&ben, group.id, &cat).await.unwrap_err();
    assert!(matches!(refused, StoreError::Forbidden(_)), "{refused}");
    let (_, left) = f.store.remove_member(&cat, group.id, &cat).await.unwrap();
    assert_eq!((left.seq, left.body.as_str()), (3, "cat left"));
    let (group, removed) = f.store.remove_member(&ann, group.id, &ben).await.unwrap();
    assert_eq!((removed.seq, removed.body.as_str()), (4, "ann removed ben"));
    assert_eq!(group.members, ["ann"]);
    assert!(f.store.conversations_of(ben.id).await.unwrap().is_empty());
    let err = f.store.create_group(&ann, "  ", &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    f
}

async fn the_directory_finds_people_by_name_and_org(f: Fixture) -> Fixture {
    let person = |username: &str, display_name: &str, org: &str| NewUser {
        username: username.into(),
        display_name: display_name.into(),
        org: org.into(),
        admin: false,
        password_hash: "not-a-real-hash".into(),
        department: String::new(),
        title: String::new(),
        bot: false,
    };
    for new in [
        person("amartin", "Alice Martin", "HQ/Building 2/Floor 3"),
        person("bnguyen", "Bao Nguyen", "HQ/Building 1/Floor 1"),
        person("cmartinez", "Carla Martinez", "Remote"),
        person("d_100", "Dora 100%", "Lab"),
    ] {
        f.store.create_user(new).await.unwrap();
    }
    let names = |users: Vec<User>| users.into_iter().map(|u| u.username).collect::<Vec<_>>();
    // Display name, any case; ordered by display name.
    assert_eq!(names(f.store.search_users("MARTIN", 10).await.unwrap()), ["amartin", "cmartinez"]);
    // Org path.
    assert_eq!(names(f.store.search_users("building 1", 10).await.unwrap()), ["bnguyen"]);
    // Username.
    assert_eq!(names(f.store.search_users("bngu", 10).await.unwrap()), ["bnguyen"]);
    // LIKE wildcards match only themselves.
    assert_eq!(names(f.store.search_users("_", 10).await.unwrap()), ["d_100"]);
    assert_eq!(names(f.store.search_users("100%", 10).await.unwrap()), ["d_100"]);
    // The limit holds; an empty query lists everyone.
    assert_eq!(f.store.search_users("", 2).await.unwrap().len(), 2);
    assert_eq!(f.store.search_users("", 100).await.unwrap().len(), 4);
    assert!(f.store.search_users("nobody", 10).await.unwrap().is_empty());
    f
}

async fn last_messages_preview_each_conversation(f: Fixture) -> Fixture {
    let store = f.store.as_ref();
    let (alice, bob, carol) =
        (user(store, "alice").await, user(store, "bob").await, user(store, "carol").await);
    let (with_bob, _) = store.open_direct(&alice, &bob).await.unwrap();
    let (_empty, _) = store.open_direct(&alice, &carol).await.unwrap();
    let (group, _) =
        store.create_group(&bob, "Floor 3", std::slice::from_ref(&alice)).await.unwrap();
    store.append(text(with_bob.id, &alice, "a1")).await.unwrap();
    store.append(text(with_bob.id, &bob, "b1")).await.unwrap();
    let last = store.last_messages(alice.id).await.unwrap();
    let seen: Vec<_> = last.iter().map(|m| (m.conversation_id, m.seq, m.sender.as_str())).collect();
    // The empty direct conversation has no preview; the group's is its system message.
    assert_eq!(seen, [(with_bob.id, 2, "bob"), (group.id, 1, "bob")]);
    assert_eq!(last[0].body, "body of b1");
    assert_eq!(last[1].kind, MessageKind::System);
    // Groups name their owner (who may remove members); direct conversations have none.
    let listed = store.conversations_of(alice.id).await.unwrap();
    let owners: Vec<_> = listed.iter().map(|c| (c.id, c.owner.as_deref())).collect();
    assert_eq!(owners, [(with_bob.id, None), (_empty.id, None), (group.id, Some("bob"))]);
    assert_eq!(store.conversation(group.id, &alice).await.unwrap().owner.as_deref(), Some("bob"));
    // Carol sees only her (empty) conversation.
    assert!(store.last_messages(carol.id).await.unwrap().is_empty());
    f
}

fn entry(username: &str, org: &str, title: &str) -> DirectoryEntry {
    DirectoryEntry {
        username: username.into(),
        display_name: username.to_uppercase(),
        org: org.into(),
        department: "Facilities".into(),
        title: title.into(),
        broadcast_scope: String::new(),
    }
}

async fn directory_imports_are_all_or_nothing_and_idempotent(f: Fixture) -> Fixture {
    let store = f.store.as_ref();
    let ann = user(store, "ann").await;
    let rows =
        vec![entry("ann", "HQ/Building 2", "Manager"), entry("ben", "HQ/Building 2/Floor 3", "")];
    // A dry run reports and writes nothing.
    let report = store.import_directory(rows.clone(), "!".into(), true).await.unwrap();
    assert_eq!(
        (report.created, report.updated, report.dry_run),
        (vec!["ben".to_owned()], vec!["ann".to_owned()], true)
    );
    assert!(matches!(store.user_by_name("ben").await, Err(StoreError::UserNotFound(_))));
    let report = store.import_directory(rows.clone(), "!".into(), false).await.unwrap();
    assert_eq!((report.created.len(), report.updated.len(), report.unchanged), (1, 1, 0));
    let ann_now = store.user_by_name("ann").await.unwrap();
    assert_eq!(
        (ann_now.id, ann_now.org.as_str(), ann_now.title.as_str()),
        (ann.id, "HQ/Building 2", "Manager")
    );
    // Again: nothing changes.
    let report = store.import_directory(rows, "!".into(), false).await.unwrap();
    assert_eq!((report.created.len(), report.updated.len(), report.unchanged), (0, 0, 2));
    // Department and title are searchable.
    assert_eq!(store.search_users("facilit", 10).await.unwrap().len(), 2);
    assert_eq!(store.search_users("manager", 10).await.unwrap()[0].username, "ann");
    // A bot in the file fails the whole import: nothing of it is applied.
    let bot = store
        .create_user(NewUser {
            username: "ci".into(),
            display_name: "CI".into(),
            org: String::new(),
            admin: false,
            password_hash: "!".into(),
            department: String::new(),
            title: String::new(),
            bot: true,
        })
        .await
        .unwrap();
    assert!(bot.bot);
    let err = store
        .import_directory(vec![entry("cat", "HQ", ""), entry("ci", "HQ", "")], "!".into(), false)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(matches!(store.user_by_name("cat").await, Err(StoreError::UserNotFound(_))));
    f
}

fn signed_in(
    username: &str,
    name: Option<&str>,
    org: Option<&str>,
    admin: Option<bool>,
) -> DirectoryUser {
    DirectoryUser {
        username: username.into(),
        display_name: name.map(Into::into),
        org: org.map(Into::into),
        admin,
        password_hash: "!".into(),
    }
}

async fn directory_sign_ins_create_then_follow_and_leave_local_accounts_alone(
    f: Fixture,
) -> Fixture {
    let store = f.store.as_ref();
    // First sign-in: created, the username standing in for a missing display name.
    let dee = store.sync_directory_user(signed_in("dee", None, Some("HQ/Ops"), Some(true))).await;
    let dee = dee.unwrap();
    assert_eq!((dee.display_name.as_str(), dee.org.as_str(), dee.admin), ("dee", "HQ/Ops", true));
    // Later ones set what is given and keep the rest.
    let again = signed_in("dee", Some("Dee Dee"), None, Some(false));
    let again = store.sync_directory_user(again).await.unwrap();
    assert_eq!(again.id, dee.id);
    assert_eq!(
        (again.display_name.as_str(), again.org.as_str(), again.admin),
        ("Dee Dee", "HQ/Ops", false)
    );
    // A local account (a password hash) or a bot of that name is not the directory's.
    let local = user(store, "eve").await;
    let err = store.sync_directory_user(signed_in("eve", Some("Mallory"), None, Some(true))).await;
    assert!(matches!(err, Err(StoreError::UserExists(_))), "{err:?}");
    let eve = store.user_by_name("eve").await.unwrap();
    assert_eq!((eve.id, eve.display_name.as_str(), eve.admin), (local.id, "eve", false));
    let bot = NewUser { bot: true, password_hash: "!".into(), ..new_user("ci-bot") };
    store.create_user(bot).await.unwrap();
    let err = store.sync_directory_user(signed_in("ci-bot", None, None, Some(true))).await;
    assert!(matches!(err, Err(StoreError::UserExists(_))), "{err:?}");
    assert!(!store.user_by_name("ci-bot").await.unwrap().admin);
    f
}

fn new_user(name: &str) -> NewUser {
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

async fn webhook_posts_are_system_messages_and_revocable(f: Fixture) -> Fixture {
    let store = f.store.as_ref();
    let (owner, member, outsider) =
        (user(store, "owner").await, user(store, "member").await, user(store, "out").await);
    let (group, _) =
        store.create_group(&owner, "Ops", std::slice::from_ref(&member)).await.unwrap();
    let err = store.create_webhook(group.id, &member, "CI", b"hash").await.unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err}");
    let hook = store.create_webhook(group.id, &owner, "CI", b"hash").await.unwrap();
    let found = store.webhook(hook.id).await.unwrap().unwrap();
    assert_eq!((found.secret_hash.as_slice(), found.creator.id), (b"hash".as_slice(), owner.id));
    // The creator need not be a member for a system message with an author.
    store.remove_member(&owner, group.id, &owner).await.unwrap();
    let posted = store
        .append(NewMessage {
            conversation_id: group.id,
            sender: owner.clone(),
            client_msg_id: None,
            kind: MessageKind::System,
            body: "build 4411 failed".into(),
            author: Some("Jenkins".into()),
        })
        .await
        .unwrap();
    assert_eq!(posted.members, vec![member.id]);
    let page = store.history(group.id, &member, None, None, 10).await.unwrap();
    let last = page.messages.last().unwrap();
    assert_eq!(
        (last.kind, last.author.as_deref(), last.body.as_str()),
        (MessageKind::System, Some("Jenkins"), "build 4411 failed")
    );
    let err = store.revoke_webhook(hook.id, &outsider).await.unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err}");
    store.revoke_webhook(hook.id, &owner).await.unwrap();
    assert!(store.webhook(hook.id).await.unwrap().is_none());
    assert!(matches!(store.revoke_webhook(hook.id, &owner).await, Err(StoreError::NotFound(_))));
    f
}

async fn broadcasts_are_stored_once_and_pending_past_the_cursor(f: Fixture) -> Fixture {
    let store = f.store.as_ref();
    let admin = user(store, "admin").await;
    store
        .import_directory(
            vec![
                entry("b2", "HQ/Building 2", ""),
                entry("b2f3", "HQ/Building 2/Floor 3", ""),
                entry("b20", "HQ/Building 20", ""),
                entry("hq", "HQ", ""),
            ],
            "!".into(),
            false,
        )
        .await
        .unwrap();
    let get = |name: &'static str| async move { store.user_by_name(name).await.unwrap() };
    let (b2, b2f3, b20) = (get("b2").await, get("b2f3").await, get("b20").await);
    let sent = store
        .create_broadcast(NewBroadcast {
            sender: admin.clone(),
            org: "HQ/Building 2".into(),
            body: "Fire drill at 14:00".into(),
            ack_required: true,
            priority: true,
        })
        .await
        .unwrap();
    assert_eq!((sent.sender.as_str(), sent.org.as_str()), ("admin", "HQ/Building 2"));
    let ids =
        |list: Vec<switchboard_protocol::Broadcast>| list.iter().map(|b| b.id).collect::<Vec<_>>();
    assert_eq!(ids(store.pending_broadcasts(&b2f3, 100).await.unwrap()), [sent.id]);
    assert!(store.pending_broadcasts(&b20, 100).await.unwrap().is_empty());
    // Past the cursor only.
    store.broadcasts_seen(&[(b2f3.id, sent.id), (b20.id, sent.id)]).await.unwrap();
    assert!(store.pending_broadcasts(&b2f3, 100).await.unwrap().is_empty());
    store.broadcasts_seen(&[(b2f3.id, 0)]).await.unwrap(); // never moves back
    assert!(store.pending_broadcasts(&b2f3, 100).await.unwrap().is_empty());
    // Many users at once (more than one statement's worth).
    let many: Vec<(i64, i64)> =
        (1..=1200).map(|id| (id, sent.id)).chain([(b2.id, sent.id)]).collect();
    store.broadcasts_seen(&many).await.unwrap();
    assert!(store.pending_broadcasts(&b2, 100).await.unwrap().is_empty());
    // A user created later does not get earlier broadcasts.
    let late = user(store, "late").await;
    assert!(store.pending_broadcasts(&late, 100).await.unwrap().is_empty());
    // Acknowledgements: only recipients, once.
    store.ack_broadcast(sent.id, &b2).await.unwrap();
    store.ack_broadcast(sent.id, &b2).await.unwrap();
    let err = store.ack_broadcast(sent.id, &b20).await.unwrap_err();
    assert!(matches!(err, StoreError::Forbidden(_)), "{err}");
    assert!(matches!(store.ack_broadcast(sent.id + 100, &b2).await, Err(StoreError::NotFound(_))));
    let (status, recipients) = store.broadcast_status(sent.id).await.unwrap();
    assert_eq!(status.body, "Fire drill at 14:00");
    let acked: Vec<(&str, bool)> =
        recipients.iter().map(|(u, ts)| (u.as_str(), ts.is_some())).collect();
    assert_eq!(acked, [("b2", true), ("b2f3", false)]);
    f
}

fn said(conversation_id: i64, sender: &User, key: &str, body: &str) -> NewMessage {
    NewMessage { body: body.into(), ..text(conversation_id, sender, key) }
}

fn words(terms: &[&str]) -> SearchQuery {
    SearchQuery {
        terms: terms.iter().map(|w| SearchTerm::Word((*w).into())).collect(),
        limit: 20,
        ..SearchQuery::default()
    }
}

/// `(conversation, seq)` of each result, in order.
async fn found(store: &dyn Store, viewer: &User, query: &SearchQuery) -> Vec<(i64, i64)> {
    let page = store.search(viewer, query).await.unwrap();
    page.messages.iter().map(|m| (m.conversation_id, m.seq)).collect()
}

async fn search_finds_only_what_the_searcher_may_read(f: Fixture) -> Fixture {
    let [alice, bob, eve] = [
        user(f.store.as_ref(), "alice").await,
        user(f.store.as_ref(), "bob").await,
        user(f.store.as_ref(), "eve").await,
    ];
    let (ab, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    let (be, _) = f.store.open_direct(&bob, &eve).await.unwrap();
    let s = f.store.as_ref();
    s.append(said(ab.id, &alice, "a1", "The budget for 2027 is ready")).await.unwrap();
    s.append(said(be.id, &eve, "e1", "secret budget numbers")).await.unwrap();
    s.append(said(be.id, &bob, "b1", "budget budget budget")).await.unwrap();

    assert_eq!(found(s, &alice, &words(&["budget"])).await, [(ab.id, 1)]);
    assert_eq!(found(s, &eve, &words(&["budget"])).await.len(), 2);
    assert_eq!(found(s, &bob, &words(&["budget"])).await.len(), 3);
    // Naming a conversation one is not in reads nothing from it.
    let nosy = SearchQuery { conversations: Some(vec![be.id]), ..words(&["budget"]) };
    assert!(found(s, &alice, &nosy).await.is_empty());
    let nosy = SearchQuery { conversations: Some(vec![be.id]), ..SearchQuery::default() };
    assert!(found(s, &alice, &nosy).await.is_empty());
    // Someone who left a group no longer finds its messages.
    let (group, _) = s.create_group(&bob, "Ops", std::slice::from_ref(&alice)).await.unwrap();
    s.append(said(group.id, &bob, "b2", "quarterly budget review")).await.unwrap();
    assert_eq!(found(s, &alice, &words(&["quarterly"])).await, [(group.id, 2)]);
    s.remove_member(&alice, group.id, &alice).await.unwrap();
    assert!(found(s, &alice, &words(&["quarterly"])).await.is_empty());
    // Search words are letters and digits only: query syntax cannot get through.
    let injected = words(&["budget\" OR \"c1"]);
    assert!(matches!(s.search(&alice, &injected).await, Err(StoreError::Invalid(_))));
    f
}

async fn search_matches_words_phrases_prefixes_and_filters(f: Fixture) -> Fixture {
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (ab, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    let s = f.store.as_ref();
    let first = s.append(said(ab.id, &alice, "1", "The budget-2027 plan, v2")).await.unwrap();
    s.append(said(ab.id, &bob, "2", "2027 budget: too high")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let third = s.append(said(ab.id, &alice, "3", "Budgeting for 2027 in Zürich")).await.unwrap();

    // Words: all of them, anywhere, any case.
    assert_eq!(found(s, &bob, &words(&["budget", "2027"])).await.len(), 2);
    assert_eq!(found(s, &bob, &words(&["zürich"])).await, [(ab.id, 3)]);
    assert!(found(s, &bob, &words(&["budge"])).await.is_empty(), "whole words only");
    // A phrase: these words, in this order, side by side (punctuation splits words).
    let phrase = |w: &[&str]| SearchQuery {
        terms: vec![SearchTerm::Phrase(w.iter().map(|w| (*w).to_owned()).collect())],
        limit: 20,
        ..SearchQuery::default()
    };
    assert_eq!(found(s, &bob, &phrase(&["budget", "2027"])).await, [(ab.id, 1)]);
    assert_eq!(found(s, &bob, &phrase(&["2027", "budget"])).await, [(ab.id, 2)]);
    // A prefix (PostgreSQL's dictionary learns new words within a second).
    f.harvest().await;
    let prefix = SearchQuery { terms: vec![SearchTerm::Prefix("budg".into())], ..words(&[]) };
    assert_eq!(found(s, &bob, &prefix).await.len(), 3);
    // From one sender.
    let from_bob = SearchQuery { from: Some(bob.id), ..words(&["2027"]) };
    assert_eq!(found(s, &alice, &from_bob).await, [(ab.id, 2)]);
    // Dates: after is inclusive, before exclusive.
    let ts3 = third.message.ts;
    let after = SearchQuery { after: Some(ts3), ..words(&["2027"]) };
    assert_eq!(found(s, &alice, &after).await, [(ab.id, 3)]);
    let before = SearchQuery { before: Some(ts3), sort: SearchSort::Recent, ..words(&["2027"]) };
    assert_eq!(found(s, &alice, &before).await, [(ab.id, 2), (ab.id, 1)]);
    let window = SearchQuery {
        after: Some(first.message.ts),
        before: Some(first.message.ts + 1),
        ..words(&["plan"])
    };
    assert_eq!(found(s, &alice, &window).await, [(ab.id, 1)]);
    // No words: the newest messages passing the filters.
    let only_alice = SearchQuery { from: Some(alice.id), ..words(&[]) };
    assert_eq!(found(s, &bob, &only_alice).await, [(ab.id, 3), (ab.id, 1)]);
    f
}

async fn search_ranks_and_pages(f: Fixture) -> Fixture {
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (ab, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    let s = f.store.as_ref();
    s.append(said(ab.id, &alice, "best", "invoice invoice invoice overdue")).await.unwrap();
    for n in 0..24 {
        let body = format!("note {n}: the invoice and a lot of other words around it");
        s.append(said(ab.id, &alice, &format!("n{n}"), &body)).await.unwrap();
    }
    // The best match first although it is the oldest; then newest first among equals.
    let ranked = found(s, &bob, &words(&["invoice"])).await;
    assert_eq!(ranked[0], (ab.id, 1));
    assert_eq!(ranked[1], (ab.id, 25));
    let recent = SearchQuery { sort: SearchSort::Recent, ..words(&["invoice"]) };
    assert_eq!(found(s, &bob, &recent).await[0], (ab.id, 25));
    // Pages: 10, 10, 5, each result once.
    let mut seen = BTreeSet::new();
    for (offset, size, more) in [(0, 10, true), (10, 10, true), (20, 5, false)] {
        let query = SearchQuery { offset, limit: 10, ..words(&["invoice"]) };
        let page = s.search(&bob, &query).await.unwrap();
        assert_eq!((page.messages.len(), page.has_more), (size, more), "offset {offset}");
        seen.extend(page.messages.iter().map(|m| m.seq));
    }
    assert_eq!(seen, (1..=25).collect::<BTreeSet<i64>>());
    let too_deep = SearchQuery { offset: 100_000, ..words(&["invoice"]) };
    assert!(matches!(s.search(&bob, &too_deep).await, Err(StoreError::Invalid(_))));
    f
}

async fn edits_and_deletions_are_entries_with_their_own_seq(f: Fixture) -> Fixture {
    let [alice, bob, eve] = [
        user(f.store.as_ref(), "alice").await,
        user(f.store.as_ref(), "bob").await,
        user(f.store.as_ref(), "eve").await,
    ];
    let s = f.store.as_ref();
    let (ab, _) = s.open_direct(&alice, &bob).await.unwrap();
    s.append(said(ab.id, &alice, "a1", "lunch at noon?")).await.unwrap();
    s.append(said(ab.id, &bob, "b1", "ok")).await.unwrap();

    // Only the sender changes a message; others are refused and nothing is stored.
    let err = s.change_message(&bob, ab.id, 1, Some("hacked"), None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotAuthor { seq: 1, .. }), "{err}");
    let err = s.change_message(&eve, ab.id, 1, None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotMember { .. }), "{err}");
    let err = s.change_message(&alice, ab.id, 99, None, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    // An edit is an entry with the next seq; the message reads the new text.
    let edit = s.change_message(&alice, ab.id, 1, Some("lunch at one?"), Some("e1")).await;
    let edit = edit.unwrap();
    let m = &edit.message;
    assert_eq!(
        (m.seq, m.kind, m.ref_seq, m.body.as_str()),
        (3, MessageKind::Edit, Some(1), "lunch at one?")
    );
    let mut members = edit.members.clone();
    members.sort();
    assert_eq!(members, [alice.id, bob.id]);
    let again = s.change_message(&alice, ab.id, 1, Some("lunch at one?"), Some("e1")).await;
    assert_eq!((again.as_ref().unwrap().duplicate, again.unwrap().message.seq), (true, 3));
    let page = s.history(ab.id, &bob, None, None, 10).await.unwrap();
    assert_eq!(page.messages.len(), 3);
    assert_eq!(page.messages[0].body, "lunch at one?");
    assert_eq!(page.messages[0].edited_at, Some(m.ts));
    // Search follows the edit: the new text is found, the old is not, the entry never.
    assert!(found(s, &bob, &words(&["noon"])).await.is_empty());
    assert_eq!(found(s, &bob, &words(&["lunch"])).await, [(ab.id, 1)]);

    // A deletion: an entry, a tombstone in history, gone from search, not changeable.
    let gone = s.change_message(&alice, ab.id, 1, None, Some("d1")).await.unwrap();
    assert_eq!(
        (gone.message.seq, gone.message.kind, gone.message.ref_seq),
        (4, MessageKind::Delete, Some(1))
    );
    let page = s.history(ab.id, &bob, None, None, 10).await.unwrap();
    assert!(page.messages[0].deleted && page.messages[0].body.is_empty());
    // Its edit entries lose their text too: they held earlier versions of it.
    assert!(page.messages.iter().all(|m| !m.body.contains("lunch")), "{page:?}");
    assert!(found(s, &bob, &words(&["lunch"])).await.is_empty());
    let err = s.change_message(&alice, ab.id, 1, Some("back"), None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    // The conversation list previews the newest message, not an entry.
    let previews = s.last_messages(bob.id).await.unwrap();
    assert_eq!((previews[0].seq, previews[0].body.as_str()), (2, "ok"));
    // System messages are the server's record and cannot be changed.
    let (group, _) = s.create_group(&alice, "Ops", std::slice::from_ref(&bob)).await.unwrap();
    let err = s.change_message(&alice, group.id, 1, Some("x"), None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    f
}

// Search follows an edit or a deletion whether it comes before the message is indexed
// (the embedded store indexes behind the appends) or after.
async fn search_follows_changes_made_before_and_after_indexing(f: Fixture) -> Fixture {
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let s = f.store.as_ref();
    let (ab, _) = s.open_direct(&alice, &bob).await.unwrap();
    // Searched, so indexed; then edited and deleted.
    s.append(said(ab.id, &alice, "a1", "alpha plan")).await.unwrap();
    s.append(said(ab.id, &alice, "a2", "beta plan")).await.unwrap();
    assert_eq!(found(s, &bob, &words(&["plan"])).await.len(), 2);
    s.change_message(&alice, ab.id, 1, Some("gamma plan"), None).await.unwrap();
    s.change_message(&alice, ab.id, 2, None, None).await.unwrap();
    // Changed right after sending, before any search.
    s.append(said(ab.id, &alice, "a3", "delta plan")).await.unwrap();
    s.append(said(ab.id, &alice, "a4", "epsilon plan")).await.unwrap();
    s.change_message(&alice, ab.id, 5, Some("zeta plan"), None).await.unwrap();
    s.change_message(&alice, ab.id, 6, None, None).await.unwrap();
    assert_eq!(found(s, &bob, &words(&["plan"])).await.len(), 2);
    for (word, hits) in [("alpha", 0), ("beta", 0), ("gamma", 1), ("delta", 0), ("epsilon", 0)] {
        assert_eq!(found(s, &bob, &words(&[word])).await.len(), hits, "{word}");
    }
    assert_eq!(found(s, &bob, &words(&["zeta"])).await, [(ab.id, 5)]);
    f
}

async fn thread_replies_are_messages_of_their_conversation(f: Fixture) -> Fixture {
    let [alice, bob, eve] = [
        user(f.store.as_ref(), "alice").await,
        user(f.store.as_ref(), "bob").await,
        user(f.store.as_ref(), "eve").await,
    ];
    let s = f.store.as_ref();
    let (ab, _) = s.open_direct(&alice, &bob).await.unwrap();
    s.append(said(ab.id, &alice, "a1", "who reviews the budget?")).await.unwrap();
    s.append(said(ab.id, &bob, "b1", "unrelated")).await.unwrap();

    // A reply takes the conversation's next seq and names its root.
    let reply = s.reply(said(ab.id, &bob, "r1", "I will, by friday"), 1).await.unwrap();
    let m = &reply.message;
    assert_eq!((m.seq, m.kind, m.thread_seq, m.ref_seq), (3, MessageKind::Text, Some(1), None));
    assert!(!reply.duplicate);
    let mut members = reply.members.clone();
    members.sort();
    assert_eq!(members, [alice.id, bob.id]);
    // A retry returns the first copy and stores nothing.
    let again = s.reply(said(ab.id, &bob, "r1", "I will, by friday"), 1).await.unwrap();
    assert_eq!((again.duplicate, again.message.seq, again.message.thread_seq), (true, 3, Some(1)));
    // An ordinary message after it continues the same sequence.
    let next = s.append(said(ab.id, &alice, "a2", "thanks")).await.unwrap();
    assert_eq!(next.message.seq, 4);

    // History shows the reply in order (a backfill by seq brings it) and the root's count.
    let page = s.history(ab.id, &alice, None, None, 10).await.unwrap();
    let seen: Vec<_> = page.messages.iter().map(|m| (m.seq, m.thread_seq, m.reply_count)).collect();
    assert_eq!(seen, [(1, None, 1), (2, None, 0), (3, Some(1), 0), (4, None, 0)]);
    // Replies are searchable, and a hit says which thread it belongs to.
    let hits = s.search(&alice, &words(&["friday"])).await.unwrap();
    assert_eq!(hits.messages.len(), 1);
    assert_eq!((hits.messages[0].seq, hits.messages[0].thread_seq), (3, Some(1)));

    // Refused, storing nothing: a non-member, a missing root, a reply to a reply, a
    // system message as root.
    let err = s.reply(said(ab.id, &eve, "e1", "let me in"), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotMember { .. }), "{err}");
    let err = s.reply(said(ab.id, &bob, "x1", "into the void"), 99).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = s.reply(said(ab.id, &bob, "x2", "nested"), 3).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let (group, _) = s.create_group(&alice, "Ops", std::slice::from_ref(&bob)).await.unwrap();
    let err = s.reply(said(group.id, &bob, "x3", "on a system message"), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let page = s.history(ab.id, &alice, Some(4), None, 10).await.unwrap();
    assert!(page.messages.is_empty(), "{page:?}");

    // A deleted reply keeps its place but no longer counts; a deleted root takes no more.
    s.change_message(&bob, ab.id, 3, None, Some("d1")).await.unwrap();
    let page = s.history(ab.id, &alice, None, Some(2), 10).await.unwrap();
    assert_eq!(page.messages[0].reply_count, 0);
    s.change_message(&alice, ab.id, 1, None, Some("d2")).await.unwrap();
    let err = s.reply(said(ab.id, &bob, "x4", "too late"), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    f
}

async fn a_thread_reads_its_root_then_its_replies(f: Fixture) -> Fixture {
    let [alice, bob, carol, eve] = [
        user(f.store.as_ref(), "alice").await,
        user(f.store.as_ref(), "bob").await,
        user(f.store.as_ref(), "carol").await,
        user(f.store.as_ref(), "eve").await,
    ];
    let s = f.store.as_ref();
    let (group, _) = s.create_group(&alice, "Plans", &[bob.clone(), carol.clone()]).await.unwrap();
    let root = s.append(said(group.id, &alice, "root", "offsite in may?")).await.unwrap();
    let root_seq = root.message.seq;
    let other = s.append(said(group.id, &carol, "other", "second topic")).await.unwrap();
    // Replies to two threads, interleaved with plain messages.
    let mut expected = Vec::new();
    for i in 0..5 {
        let who = if i % 2 == 0 { &bob } else { &carol };
        let r = s.reply(said(group.id, who, &format!("t{i}"), &format!("reply {i}")), root_seq);
        expected.push(r.await.unwrap().message.seq);
        s.reply(said(group.id, &alice, &format!("o{i}"), "other thread"), other.message.seq)
            .await
            .unwrap();
        s.append(said(group.id, &alice, &format!("p{i}"), "plain")).await.unwrap();
    }

    let page = s.thread(group.id, &bob, root_seq, None, 100).await.unwrap();
    assert!(!page.has_more);
    let root = &page.messages[0];
    assert_eq!((root.seq, root.body.as_str(), root.reply_count), (root_seq, "offsite in may?", 5));
    let replies: Vec<i64> = page.messages[1..].iter().map(|m| m.seq).collect();
    assert_eq!(replies, expected);
    let bodies: Vec<&str> = page.messages[1..].iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["reply 0", "reply 1", "reply 2", "reply 3", "reply 4"]);
    assert!(page.messages[1..].iter().all(|m| m.thread_seq == Some(root_seq)));

    // Paged: two replies, then the rest after the last one seen; the root comes each time.
    let first = s.thread(group.id, &bob, root_seq, None, 2).await.unwrap();
    assert!(first.has_more);
    assert_eq!(first.messages.iter().map(|m| m.seq).collect::<Vec<_>>()[1..], expected[..2]);
    let rest = s.thread(group.id, &bob, root_seq, Some(expected[1]), 10).await.unwrap();
    assert!(!rest.has_more);
    assert_eq!(rest.messages[0].seq, root_seq);
    assert_eq!(rest.messages.iter().map(|m| m.seq).collect::<Vec<_>>()[1..], expected[2..]);

    // An edit of a reply shows in the thread; its entry is not a reply.
    s.change_message(&bob, group.id, expected[0], Some("reply 0, edited"), None).await.unwrap();
    let page = s.thread(group.id, &carol, root_seq, None, 100).await.unwrap();
    assert_eq!(page.messages.len(), 6);
    assert_eq!(page.messages[1].body, "reply 0, edited");

    // A non-member reads nothing; a reply or a missing message is no thread.
    let err = s.thread(group.id, &eve, root_seq, None, 100).await.unwrap_err();
    assert!(matches!(err, StoreError::NotMember { .. }), "{err}");
    let err = s.thread(group.id, &bob, expected[0], None, 100).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let err = s.thread(group.id, &bob, 9999, None, 100).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    f
}

/// Several storage replicas over one PostgreSQL database (each its own gRPC service, pool
/// and appender, as separate storage pods would be): eight writers to one conversation,
/// each sending through every replica in turn and retrying every message through another
/// one, get gapless, increasing seqs and one copy of each message.
#[tokio::test]
async fn storage_replicas_over_one_database_keep_seqs_gapless() {
    let db = TestDatabase::create().await;
    let mut replicas = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..4 {
        let (store, stop, _) = remote(&db.url).await;
        replicas.push(Arc::new(store));
        stops.push(stop);
    }
    let mut writers = Vec::new();
    for i in 0..8 {
        writers.push(user(replicas[0].as_ref(), &format!("w{i}")).await);
    }
    let (group, _) = replicas[1].create_group(&writers[0], "load", &writers).await.unwrap();
    let mut tasks = Vec::new();
    for (i, writer) in writers.iter().cloned().enumerate() {
        let replicas = replicas.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..60 {
                let message = text(group.id, &writer, &format!("{}-{n}", writer.username));
                let first = replicas[(i + n) % 4].append(message.clone()).await.unwrap();
                let retry = replicas[(i + n + 1) % 4].append(message).await.unwrap();
                assert!(!first.duplicate && retry.duplicate);
                assert_eq!(retry.message.seq, first.message.seq, "a retry answers the first seq");
                seqs.push(first.message.seq);
            }
            seqs
        }));
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one writer's seqs increase");
        all.extend(seqs);
    }
    // seq 1 is the group's creation message.
    assert_eq!(all, (2..=481).collect::<BTreeSet<i64>>());
    for replica in &replicas {
        let page = replica.history(group.id, &writers[3], Some(0), None, 1000).await.unwrap();
        assert_eq!(
            page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=481).collect::<Vec<_>>()
        );
    }
    drop(replicas);
    for stop in stops {
        let _ = stop.send(());
    }
    db.drop_database().await;
}

fn audit_entry(ts: i64, actor: &str, action: &str) -> NewAuditEntry {
    NewAuditEntry {
        ts,
        actor: actor.into(),
        action: action.into(),
        target: format!("target of {action}"),
        ip: "192.0.2.7".into(),
        detail: "why".into(),
    }
}

async fn the_audit_log_filters_and_pages_newest_first(f: Fixture) -> Fixture {
    let store = f.store.as_ref();
    let entries = [
        audit_entry(1_000, "alice", "auth.login"),
        audit_entry(2_000, "mallory", "auth.login_failed"),
        audit_entry(3_000, "admin", "user.update"),
        audit_entry(4_000, "alice", "auth.logout"),
        // `_` and `%` are plain characters in a prefix, not patterns.
        audit_entry(5_000, "admin", "auth_x.other"),
    ];
    store.record_audit(&entries[..2]).await.unwrap();
    store.record_audit(&entries[2..]).await.unwrap();
    store.record_audit(&[]).await.unwrap();
    let read = |query: AuditQuery| async move {
        let found = store.audit_log(&AuditQuery { limit: 100, ..query }).await.unwrap();
        found.into_iter().map(|e| (e.ts, e.action)).collect::<Vec<_>>()
    };
    let all = store.audit_log(&AuditQuery { limit: 100, ..AuditQuery::default() }).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(
        (all[4].actor.as_str(), all[4].target.as_str(), all[4].ip.as_str(), all[4].detail.as_str()),
        ("alice", "target of auth.login", "192.0.2.7", "why")
    );
    let by_alice = read(AuditQuery { actor: Some("alice".into()), ..AuditQuery::default() });
    assert_eq!(by_alice.await, vec![(4_000, "auth.logout".into()), (1_000, "auth.login".into())]);
    let auth = read(AuditQuery { action: Some("auth.".into()), ..AuditQuery::default() }).await;
    assert_eq!(auth.iter().map(|(ts, _)| *ts).collect::<Vec<_>>(), vec![4_000, 2_000, 1_000]);
    let exact =
        read(AuditQuery { action: Some("auth.login".into()), ..AuditQuery::default() }).await;
    assert_eq!(exact, vec![(1_000, "auth.login".into())]);
    let window =
        read(AuditQuery { since: Some(2_000), until: Some(4_000), ..AuditQuery::default() }).await;
    assert_eq!(window.iter().map(|(ts, _)| *ts).collect::<Vec<_>>(), vec![3_000, 2_000]);
    // Paging: two at a time, each page below the last id seen.
    let first = store.audit_log(&AuditQuery { limit: 2, ..AuditQuery::default() }).await.unwrap();
    let next = AuditQuery { limit: 2, before: Some(first[1].id), ..AuditQuery::default() };
    let second = store.audit_log(&next).await.unwrap();
    let pages: Vec<i64> = first.iter().chain(&second).map(|e| e.ts).collect();
    assert_eq!(pages, vec![5_000, 4_000, 3_000, 2_000]);
    f
}

async fn a_disabled_account_cannot_sign_in_and_its_tokens_stop_working(f: Fixture) -> Fixture {
    let store = f.store.as_ref();
    let alice = user(store, "alice").await;
    store.insert_token(b"alice-token", alice.id, now_ms() + 60_000).await.unwrap();
    let (changed, disabled) = store.update_user("alice", None, Some(true)).await.unwrap();
    assert!(disabled && !changed.admin);
    assert!(store.credentials("alice").await.unwrap().is_none());
    assert!(store.user_by_token(b"alice-token").await.unwrap().is_none());
    // Still in the directory (their messages keep a name), just unable to act.
    assert_eq!(store.user_by_name("alice").await.unwrap().id, alice.id);
    let (changed, disabled) = store.update_user("alice", Some(true), Some(false)).await.unwrap();
    assert!(!disabled && changed.admin);
    let back = store.user_by_token(b"alice-token").await.unwrap().unwrap();
    assert!(back.admin, "the role change shows on the next request");
    assert!(store.credentials("alice").await.unwrap().is_some());
    let (unchanged, disabled) = store.update_user("alice", None, None).await.unwrap();
    assert!(unchanged.admin && !disabled);
    let missing = store.update_user("nobody", Some(true), None).await.unwrap_err();
    assert!(matches!(missing, StoreError::UserNotFound(name) if name == "nobody"));
    f
}

async fn reactions_are_counted_per_emoji_and_stored_as_entries(f: Fixture) -> Fixture {
    let [alice, bob, eve] = [
        user(f.store.as_ref(), "alice").await,
        user(f.store.as_ref(), "bob").await,
        user(f.store.as_ref(), "eve").await,
    ];
    let s = f.store.as_ref();
    let (ab, _) = s.open_direct(&alice, &bob).await.unwrap();
    s.append(said(ab.id, &alice, "a1", "ship it?")).await.unwrap();

    // A reaction is an entry with the next seq, carrying the emoji's new count.
    let first = s.react(&bob, ab.id, 1, "👍", true).await.unwrap().unwrap();
    let m = &first.message;
    assert_eq!((m.seq, m.kind, m.ref_seq, m.body.as_str()), (2, MessageKind::React, Some(1), "👍"));
    assert_eq!((m.reactions.len(), m.reactions[0].count), (1, 1));
    let mut members = first.members.clone();
    members.sort();
    assert_eq!(members, [alice.id, bob.id]);
    // Reacting twice stores nothing.
    assert!(s.react(&bob, ab.id, 1, "👍", true).await.unwrap().is_none());
    let second = s.react(&alice, ab.id, 1, "👍", true).await.unwrap().unwrap();
    assert_eq!((second.message.seq, second.message.reactions[0].count), (3, 2));
    s.react(&alice, ab.id, 1, "🎉", true).await.unwrap().unwrap();

    // History: counts per emoji, and whether the reader reacted.
    let page = s.history(ab.id, &bob, None, None, 10).await.unwrap();
    let mut counts: Vec<_> =
        page.messages[0].reactions.iter().map(|r| (r.emoji.as_str(), r.count, r.me)).collect();
    counts.sort();
    assert_eq!(counts, [("🎉", 1, false), ("👍", 2, true)]);
    // The entries are in history too (a backfill brings them), with today's counts.
    let entries: Vec<_> = page.messages[1..].iter().map(|m| (m.seq, m.kind)).collect();
    assert_eq!(
        entries,
        [(2, MessageKind::React), (3, MessageKind::React), (4, MessageKind::React)]
    );
    assert_eq!(page.messages[1].reactions[0].count, 2);

    // Taking one back: an unreact entry; taking it back twice stores nothing.
    let back = s.react(&bob, ab.id, 1, "👍", false).await.unwrap().unwrap();
    assert_eq!((back.message.seq, back.message.kind), (5, MessageKind::Unreact));
    assert_eq!(back.message.reactions[0].count, 1);
    assert!(s.react(&bob, ab.id, 1, "👍", false).await.unwrap().is_none());
    let page = s.history(ab.id, &bob, None, None, 10).await.unwrap();
    assert!(page.messages[0].reactions.iter().all(|r| !r.me), "{page:?}");

    // Refused: outsiders, bad emoji, missing messages, entries.
    let err = s.react(&eve, ab.id, 1, "👍", true).await.unwrap_err();
    assert!(matches!(err, StoreError::NotMember { .. }), "{err}");
    for bad in ["", "a b", "\u{1b}", "0123456789abcdefg"] {
        let err = s.react(&bob, ab.id, 1, bad, true).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err}");
    }
    let err = s.react(&bob, ab.id, 99, "👍", true).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = s.react(&bob, ab.id, 2, "👍", true).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    // Previews and search skip the entries.
    let previews = s.last_messages(bob.id).await.unwrap();
    assert_eq!(previews[0].seq, 1);
    f
}

async fn retention_deletes_what_is_past_its_age_except_under_hold(f: Fixture) -> Fixture {
    use switchboard_storage::retention::{RetentionConfig, sweep};
    let [root, alice, bob, carol] = [
        user(f.store.as_ref(), "root").await,
        user(f.store.as_ref(), "alice").await,
        user(f.store.as_ref(), "bob").await,
        user(f.store.as_ref(), "carol").await,
    ];
    let s = f.store.as_ref();
    // ab follows the default (7 days); bob is on hold.
    let (ab, _) = s.open_direct(&alice, &bob).await.unwrap();
    s.append(said(ab.id, &alice, "ab1", "expired budget")).await.unwrap();
    s.append(said(ab.id, &bob, "ab2", "held budget")).await.unwrap();
    s.append(said(ab.id, &alice, "ab3", "fresh budget")).await.unwrap();
    s.react(&bob, ab.id, 1, "👍", true).await.unwrap();
    s.react(&alice, ab.id, 2, "👍", true).await.unwrap();
    f.backdate(ab.id, &[1, 2], 10).await;
    // ac keeps forever, overriding the default.
    let (ac, _) = s.open_direct(&alice, &carol).await.unwrap();
    s.append(said(ac.id, &alice, "ac1", "forever budget")).await.unwrap();
    f.backdate(ac.id, &[1], 100).await;
    // ops keeps 30 days, overriding the default.
    let (ops, _) = s.create_group(&alice, "Ops", std::slice::from_ref(&carol)).await.unwrap();
    for key in ["o2", "o3", "o4"] {
        s.append(said(ops.id, &alice, key, "ops budget")).await.unwrap();
    }
    f.backdate(ops.id, &[1], 50).await;
    f.backdate(ops.id, &[2], 40).await;
    f.backdate(ops.id, &[3], 31).await;
    f.backdate(ops.id, &[4], 10).await;
    // legal is on hold: nothing of it goes.
    let (legal, _) = s.create_group(&alice, "Legal", std::slice::from_ref(&carol)).await.unwrap();
    s.append(said(legal.id, &alice, "l2", "legal budget")).await.unwrap();
    f.backdate(legal.id, &[1, 2], 100).await;

    s.set_retention(None, Some(7)).await.unwrap();
    s.set_retention(Some(ac.id), None).await.unwrap();
    s.set_retention(Some(ops.id), Some(30)).await.unwrap();
    let err = s.set_retention(Some(ops.id), Some(0)).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let held = s.add_hold(Some(&bob), None, "case 7", &root).await.unwrap();
    s.add_hold(None, Some(legal.id), "case 8", &root).await.unwrap();
    let err = s.add_hold(Some(&bob), Some(legal.id), "both", &root).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let policies = s.retention_policies().await.unwrap();
    assert_eq!(
        policies.iter().map(|p| (p.conversation_id, p.keep_days)).collect::<Vec<_>>(),
        [(None, Some(7)), (Some(ac.id), None), (Some(ops.id), Some(30))]
    );
    let holds = s.legal_holds().await.unwrap();
    assert_eq!(holds[0].user.as_deref(), Some("bob"));
    assert_eq!((holds[1].conversation_id, holds[1].created_by.as_str()), (Some(legal.id), "root"));

    // Small batches, so a sweep takes several transactions.
    let config =
        RetentionConfig { batch: 2, pause: std::time::Duration::ZERO, ..Default::default() };
    // ab: alice's old message; ops: the three past 30 days.
    assert_eq!(sweep(s, &config).await.unwrap(), 4);
    let seqs = |page: switchboard_storage::HistoryPage| {
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>()
    };
    // History simply starts later; bob's held message keeps its reactions.
    let page = s.history(ab.id, &alice, Some(0), None, 10).await.unwrap();
    assert_eq!(page.messages[0].reactions[0].count, 1);
    assert_eq!(seqs(page), [2, 3, 4, 5]);
    assert_eq!(seqs(s.history(ac.id, &alice, None, None, 10).await.unwrap()), [1]);
    assert_eq!(seqs(s.history(ops.id, &alice, None, None, 10).await.unwrap()), [4]);
    assert_eq!(seqs(s.history(legal.id, &alice, None, None, 10).await.unwrap()), [1, 2]);
    // Search follows the rows.
    let mut hits = found(s, &alice, &words(&["budget"])).await;
    hits.sort();
    let mut expected = vec![(ab.id, 2), (ab.id, 3), (ac.id, 1), (ops.id, 4), (legal.id, 2)];
    expected.sort();
    assert_eq!(hits, expected);
    // Nothing more is due; seqs go on where they were.
    assert_eq!(sweep(s, &config).await.unwrap(), 0);
    let next = s.append(said(ab.id, &alice, "ab6", "after")).await.unwrap();
    assert_eq!(next.message.seq, 6);

    // Lifting bob's hold lets his old message go too.
    s.remove_hold(held.id).await.unwrap();
    assert!(matches!(s.remove_hold(held.id).await, Err(StoreError::NotFound(_))));
    assert_eq!(sweep(s, &config).await.unwrap(), 1);
    assert_eq!(seqs(s.history(ab.id, &alice, Some(0), None, 10).await.unwrap()), [3, 4, 5, 6]);
    // A conversation back on the default loses what is past 7 days.
    s.clear_retention(Some(ac.id)).await.unwrap();
    assert_eq!(sweep(s, &config).await.unwrap(), 1);
    f
}

/// `(conversation, seq)` of each record of every page of `query`, read `limit` at a time.
async fn export_all(
    s: &dyn Store,
    query: &ExportQuery,
) -> Vec<switchboard_protocol::rest::ExportRecord> {
    let mut records = Vec::new();
    let mut query = query.clone();
    loop {
        let page = s.export(&query).await.unwrap();
        assert!(page.records.len() <= query.limit as usize);
        let last = page.records.last().map(|r| (r.conversation.id, r.message.seq));
        records.extend(page.records);
        if !page.has_more {
            return records;
        }
        query.after = last;
    }
}

async fn the_export_has_every_message_with_its_edits_deletion_and_reactions(f: Fixture) -> Fixture {
    let [alice, bob, carol] = [
        user(f.store.as_ref(), "alice").await,
        user(f.store.as_ref(), "bob").await,
        user(f.store.as_ref(), "carol").await,
    ];
    let s = f.store.as_ref();
    let (ops, _) = s.create_group(&alice, "Ops", &[bob.clone(), carol.clone()]).await.unwrap();
    s.append(said(ops.id, &alice, "o1", "one")).await.unwrap(); // 2
    s.append(said(ops.id, &bob, "o2", "two")).await.unwrap(); // 3
    s.change_message(&alice, ops.id, 2, Some("one, edited"), Some("e1")).await.unwrap(); // 4
    s.change_message(&alice, ops.id, 2, Some("one, edited twice"), Some("e2")).await.unwrap(); // 5
    s.react(&bob, ops.id, 2, "👍", true).await.unwrap(); // 6
    s.react(&carol, ops.id, 2, "👍", true).await.unwrap(); // 7
    s.reply(said(ops.id, &carol, "r1", "a reply"), 3).await.unwrap(); // 8
    s.change_message(&bob, ops.id, 3, None, Some("d1")).await.unwrap(); // 9
    let (ab, _) = s.open_direct(&alice, &bob).await.unwrap();
    s.append(said(ab.id, &alice, "a1", "last month")).await.unwrap();
    s.append(said(ab.id, &bob, "b1", "hi alice")).await.unwrap();
    f.backdate(ab.id, &[1], 30).await;

    let recent = ExportQuery {
        from: now_ms() - 86_400_000,
        to: now_ms() + 60_000,
        limit: 2,
        ..Default::default()
    };
    let records = export_all(s, &recent).await;
    let keys: Vec<(i64, i64)> =
        records.iter().map(|r| (r.conversation.id, r.message.seq)).collect();
    // Messages only (entries are folded in), in key order; last month's is out of range.
    assert_eq!(keys, [(ops.id, 1), (ops.id, 2), (ops.id, 3), (ops.id, 8), (ab.id, 2)]);
    assert_eq!(s.export_count(&recent).await.unwrap(), 5);

    let [created, edited, deleted, reply, direct] = &records[..] else { unreachable!() };
    assert_eq!(
        (created.message.kind, created.conversation.name.as_str()),
        (MessageKind::System, "Ops")
    );
    assert!(created.conversation.members.is_empty(), "groups do not list members per record");
    assert_eq!(edited.message.body, "one, edited twice");
    assert_eq!(edited.original_body.as_deref(), Some("one"));
    let edits: Vec<_> =
        edited.edits.iter().map(|e| (e.seq, e.by.as_str(), e.body.as_str())).collect();
    assert_eq!(edits, [(4, "alice", "one, edited"), (5, "alice", "one, edited twice")]);
    assert_eq!(edited.message.edited_at, Some(edited.edits[1].edited_at));
    assert_eq!(edited.reactions.len(), 1);
    assert_eq!(
        (edited.reactions[0].emoji.as_str(), &edited.reactions[0].users[..]),
        ("👍", &["bob".to_owned(), "carol".to_owned()][..])
    );
    assert_eq!(edited.sender_name, "alice");
    // The deleted message keeps its text for the export, and says who deleted it when.
    assert_eq!((deleted.message.body.as_str(), deleted.message.deleted), ("two", true));
    assert_eq!(deleted.deleted_by.as_deref(), Some("bob"));
    assert!(deleted.deleted_at.is_some_and(|t| t >= deleted.message.ts));
    assert_eq!((reply.message.thread_seq, reply.message.body.as_str()), (Some(3), "a reply"));
    assert_eq!(direct.conversation.members, ["alice", "bob"]);
    assert!(direct.edits.is_empty() && direct.deleted_at.is_none() && direct.reactions.is_empty());
    // History and search, for everyone, no longer show the deleted text.
    let page = s.history(ops.id, &alice, None, None, 50).await.unwrap();
    assert!(page.messages.iter().any(|m| m.seq == 3 && m.deleted && m.body.is_empty()));
    assert!(s.search(&carol, &words(&["two"])).await.unwrap().messages.is_empty());

    // Filters: by sender, by conversation (all time), and an unknown conversation.
    let bobs = ExportQuery { senders: vec![bob.id], ..recent.clone() };
    let keys: Vec<_> =
        export_all(s, &bobs).await.iter().map(|r| (r.conversation.id, r.message.seq)).collect();
    assert_eq!(keys, [(ops.id, 3), (ab.id, 2)]);
    let direct_only = ExportQuery { from: 0, conversations: vec![ab.id], ..recent.clone() };
    let records = export_all(s, &direct_only).await;
    let bodies: Vec<_> = records.iter().map(|r| r.message.body.as_str()).collect();
    assert_eq!(bodies, ["last month", "hi alice"]);
    assert_eq!(s.export_count(&direct_only).await.unwrap(), 2);
    let unknown = ExportQuery { conversations: vec![ab.id, 999], ..recent };
    let err = s.export(&unknown).await.unwrap_err();
    assert!(matches!(err, StoreError::ConversationNotFound(999)), "{err}");
    f
}

fn file(name: &str, key: &str) -> NewAttachment {
    NewAttachment {
        name: name.into(),
        content_type: "image/png".into(),
        size: 1234,
        sha256: "ab".repeat(32),
        storage_key: key.into(),
    }
}

async fn attachments_are_stored_with_their_message_for_members_only(f: Fixture) -> Fixture {
    let [alice, bob, eve] = [
        user(f.store.as_ref(), "alice").await,
        user(f.store.as_ref(), "bob").await,
        user(f.store.as_ref(), "eve").await,
    ];
    let s = f.store.as_ref();
    let (ab, _) = s.open_direct(&alice, &bob).await.unwrap();
    s.append(said(ab.id, &alice, "t1", "before")).await.unwrap();
    let stored =
        s.attach(said(ab.id, &alice, "f1", "floor plan"), file("plan.png", "c/k1")).await.unwrap();
    let m = &stored.message;
    assert_eq!((m.seq, m.body.as_str(), stored.duplicate), (2, "floor plan", false));
    assert_eq!(stored.members.len(), 2);
    let info = m.attachments[0].clone();
    assert_eq!(
        (info.name.as_str(), info.size, info.content_type.as_str()),
        ("plan.png", 1234, "image/png")
    );
    // A retry returns the first message and file; the new key is not stored.
    let again =
        s.attach(said(ab.id, &alice, "f1", "floor plan"), file("plan.png", "c/k2")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!((again.message.seq, &again.message.attachments), (2, &vec![info.clone()]));
    // Outsiders can neither attach nor look the file up; unknown ids look the same.
    let err = s.attach(said(ab.id, &eve, "e1", "x"), file("x.png", "c/k3")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotMember { .. }), "{err}");
    let row = s.attachment(info.id, &bob).await.unwrap();
    assert_eq!((row.storage_key.as_str(), row.uploader.as_str()), ("c/k1", "alice"));
    assert_eq!((row.conversation_id, row.seq, row.sha256.len()), (ab.id, 2, 64));
    for (id, who) in [(info.id, &eve), (info.id + 100, &bob)] {
        let err = s.attachment(id, who).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }
    // Every read of the message carries the file.
    let page = s.history(ab.id, &bob, None, None, 10).await.unwrap();
    assert_eq!(page.messages.iter().map(|m| m.attachments.len()).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(page.messages[1].attachments, std::slice::from_ref(&info));
    let last = s.last_messages(bob.id).await.unwrap();
    assert_eq!(last[0].attachments, std::slice::from_ref(&info));
    let hits = s.search(&bob, &words(&["plan"])).await.unwrap();
    assert_eq!(hits.messages[0].attachments, std::slice::from_ref(&info));
    // Deleted: hidden from people, the row kept (retention removes it).
    s.change_message(&alice, ab.id, 2, None, Some("d1")).await.unwrap();
    let page = s.history(ab.id, &bob, None, None, 10).await.unwrap();
    assert!(page.messages[1].attachments.is_empty());
    assert!(matches!(s.attachment(info.id, &bob).await, Err(StoreError::NotFound(_))));
    // The compliance export still lists it, on the deleted message.
    let query = ExportQuery { from: 0, to: i64::MAX, limit: 100, ..ExportQuery::default() };
    let page = s.export(&query).await.unwrap();
    let record = page.records.iter().find(|r| r.message.seq == 2).unwrap();
    assert!(record.message.deleted);
    assert_eq!(record.message.attachments, std::slice::from_ref(&info));
    f
}

async fn retention_trashes_attachments_with_their_messages(f: Fixture) -> Fixture {
    use switchboard_storage::retention::{RetentionConfig, sweep};
    let [root, alice, bob] = [
        user(f.store.as_ref(), "root").await,
        user(f.store.as_ref(), "alice").await,
        user(f.store.as_ref(), "bob").await,
    ];
    let s = f.store.as_ref();
    let (ab, _) = s.open_direct(&alice, &bob).await.unwrap();
    s.attach(said(ab.id, &alice, "f1", ""), file("old.png", "c/old")).await.unwrap();
    s.attach(said(ab.id, &bob, "f2", ""), file("held.png", "c/held")).await.unwrap();
    s.attach(said(ab.id, &alice, "f3", ""), file("new.png", "c/new")).await.unwrap();
    f.backdate(ab.id, &[1, 2], 10).await;
    s.set_retention(None, Some(7)).await.unwrap();
    s.add_hold(Some(&bob), None, "case 9", &root).await.unwrap();
    assert!(s.attachment_trash(10).await.unwrap().is_empty());
    let config = RetentionConfig { pause: std::time::Duration::ZERO, ..Default::default() };
    assert_eq!(sweep(s, &config).await.unwrap(), 1);
    // The old file's object is queued for deletion; the held and new ones stay.
    assert_eq!(s.attachment_trash(10).await.unwrap(), ["c/old"]);
    let page = s.history(ab.id, &alice, None, None, 10).await.unwrap();
    let names: Vec<_> = page.messages.iter().map(|m| m.attachments[0].name.clone()).collect();
    assert_eq!(names, ["held.png", "new.png"]);
    s.forget_attachment_trash(&["c/old".to_owned()]).await.unwrap();
    assert!(s.attachment_trash(10).await.unwrap().is_empty());
    f
}

async fn a_retention_transaction_stops_at_its_time_budget(f: Fixture) -> Fixture {
    use std::time::Duration;
    use switchboard_storage::RetentionBatch;
    let [alice, bob] = [user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await];
    let s = f.store.as_ref();
    let (ab, _) = s.open_direct(&alice, &bob).await.unwrap();
    for i in 1..=41 {
        s.append(said(ab.id, &alice, &format!("m{i}"), "old news")).await.unwrap();
    }
    let old: Vec<i64> = (1..=40).collect();
    f.backdate(ab.id, &old, 10).await;
    let cutoff = now_ms() - 7 * 86_400_000;
    // A budget spent by the first statement: one chunk (32 rows) per transaction, and
    // the store says more is due.
    let tiny = Duration::from_micros(1);
    let first = s.retention_delete(ab.id, cutoff, 1000, tiny).await.unwrap();
    assert_eq!(first, RetentionBatch { deleted: 32, done: false });
    let second = s.retention_delete(ab.id, cutoff, 1000, tiny).await.unwrap();
    assert_eq!(second, RetentionBatch { deleted: 8, done: true });
    let page = s.history(ab.id, &alice, None, None, 100).await.unwrap();
    assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [41]);
    // The row limit still holds without a time limit.
    for i in 42..=51 {
        s.append(said(ab.id, &alice, &format!("m{i}"), "old news")).await.unwrap();
    }
    f.backdate(ab.id, &(41..=50).collect::<Vec<_>>(), 10).await;
    let limited = s.retention_delete(ab.id, cutoff, 4, Duration::ZERO).await.unwrap();
    assert_eq!(limited, RetentionBatch { deleted: 4, done: false });
    let rest = s.retention_delete(ab.id, cutoff, 1000, Duration::ZERO).await.unwrap();
    assert_eq!(rest, RetentionBatch { deleted: 6, done: true });
    let none = s.retention_delete(ab.id, cutoff, 1000, tiny).await.unwrap();
    assert_eq!(none, RetentionBatch { deleted: 0, done: true });
    let page = s.history(ab.id, &alice, None, None, 100).await.unwrap();
    assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [51]);
    f
}

async fn retention_deletes_orphaned_attachment_objects_only(f: Fixture) -> Fixture {
    use std::time::Duration;
    use switchboard_storage::attachments::{Blobs, upload_key};
    use switchboard_storage::retention::{RetentionConfig, delete_orphans, empty_trash, sweep};
    let [alice, bob] = [user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await];
    let s = f.store.as_ref();
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(dir.path()).unwrap();
    let put = async |key: &str| {
        let body =
            futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("some text"))]);
        blobs.upload(key, body, "text/plain", 1000).await.unwrap();
    };
    let (ab, _) = s.open_direct(&alice, &bob).await.unwrap();
    let [kept, trashed, orphan] = ["1", "2", "3"].map(|n| upload_key(ab.id, &n.repeat(32)));
    for key in [&kept, &trashed, &orphan] {
        put(key).await;
    }
    // Not an upload's key: someone else's object in the same store.
    put("backups/notes.txt").await;
    s.attach(said(ab.id, &alice, "f1", ""), file("old.txt", &trashed)).await.unwrap();
    s.attach(said(ab.id, &alice, "f2", ""), file("kept.txt", &kept)).await.unwrap();
    f.backdate(ab.id, &[1], 10).await;
    s.set_retention(Some(ab.id), Some(7)).await.unwrap();
    let config = RetentionConfig { pause: Duration::ZERO, ..Default::default() };
    assert_eq!(sweep(s, &config).await.unwrap(), 1);
    let mut known =
        s.known_attachment_keys(&[kept.clone(), trashed.clone(), orphan.clone()]).await.unwrap();
    known.sort();
    assert_eq!(known, [kept.clone(), trashed.clone()]);

    // Younger than the grace period: an upload whose row may be on its way.
    assert_eq!(delete_orphans(s, &blobs, Duration::from_secs(3600)).await.unwrap(), 0);
    assert_eq!(delete_orphans(s, &blobs, Duration::ZERO).await.unwrap(), 1);
    let mut left = blobs.keys().await.unwrap();
    left.sort();
    let mut expected = vec![kept.clone(), trashed.clone(), "backups/notes.txt".to_owned()];
    expected.sort();
    assert_eq!(left, expected);
    // The trash still deletes its own.
    assert_eq!(empty_trash(s, &blobs).await.unwrap(), 1);
    let mut left = blobs.keys().await.unwrap();
    left.sort();
    assert_eq!(left, ["backups/notes.txt".to_owned(), kept]);
    f
}

// PostgreSQL's search at scale (migration 0013): prefixes stand for the most frequent
// words starting with them, and relevance ranks the newest matches only. SQLite's FTS5
// does neither (docs/protocol.md, "search").

/// A connection to the fixture's PostgreSQL database, for writing history in bulk.
async fn postgres_connection(f: &Fixture) -> sqlx::PgConnection {
    let Backend::Postgres(db) = &f.backend else { panic!("a PostgreSQL fixture") };
    sqlx::PgConnection::connect(&db.url).await.unwrap()
}

#[tokio::test]
async fn postgres_prefixes_search_the_most_frequent_words_starting_with_them() {
    let f = Fixture::postgres().await;
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (ab, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    let s = f.store.as_ref();
    // 10 messages say "project", 5 "projection", and 60 rarer words start with "proj"
    // once each; "progress" does not start with it.
    let mut n = 0;
    let mut say = async |body: String| {
        n += 1;
        s.append(said(ab.id, &alice, &format!("m{n}"), &body)).await.unwrap().message.seq
    };
    let mut common = BTreeSet::new();
    for i in 0..10 {
        common.insert(say(format!("the Project plan, take {i}")).await);
    }
    for i in 0..5 {
        common.insert(say(format!("a projection {i}")).await);
    }
    for i in 0..60 {
        say(format!("projw{i:02} progress")).await;
    }
    let prefix = |p: &str| SearchQuery {
        terms: vec![SearchTerm::Prefix(p.into())],
        limit: 100,
        ..SearchQuery::default()
    };
    let mut db = postgres_connection(&f).await;
    sqlx::query("ANALYZE messages").execute(&mut db).await.unwrap();
    f.harvest().await;

    // 50 words: project, projection and the first 48 others (as frequent, then shortest,
    // then alphabetical): 10 + 5 + 48 messages.
    let hits: BTreeSet<i64> = found(s, &bob, &prefix("proj")).await.iter().map(|h| h.1).collect();
    assert_eq!(hits.len(), 63);
    assert!(hits.is_superset(&common), "the frequent words are always searched");
    // A longer prefix narrows the words, so the rarer ones are found too.
    assert_eq!(found(s, &bob, &prefix("PROJW5")).await.len(), 10);
    assert_eq!(found(s, &bob, &prefix("projw59")).await.len(), 1);
    assert!(found(s, &bob, &prefix("projx")).await.is_empty());
    // A word that arrives with an edit joins the dictionary at the next harvest.
    s.change_message(&alice, ab.id, 1, Some("projectile"), None).await.unwrap();
    f.harvest().await;
    assert_eq!(found(s, &bob, &prefix("projectil")).await, [(ab.id, 1)]);
    drop(db);
    f.finish().await;
}

#[tokio::test]
async fn postgres_relevance_ranks_the_newest_matches_only() {
    let f = Fixture::postgres().await;
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (ab, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    let s = f.store.as_ref();
    // 30,000 messages over the past year, all with "common": enough that the search
    // probes the newest weeks first instead of reading every match. A word in every
    // message ranks the newest 1,000 matches only (5,000 for rarer words): messages 100
    // and 27,000 say it best but are older than that; message 29,500 says it next best.
    let mut db = postgres_connection(&f).await;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO messages (conversation_id, seq, sender_id, kind, body, ts)
         SELECT $1, s, $2, 'text',
                CASE s WHEN 100 THEN 'common common common common common'
                       WHEN 27000 THEN 'common common common common common'
                       WHEN 29500 THEN 'common common common common filler'
                       ELSE repeat('common ', 1 + s % 3) || 'filler words ' || s END,
                $3 - (30001 - s) * 1000000::BIGINT
         FROM generate_series(1, 30000) s",
    )
    .bind(ab.id)
    .bind(alice.id)
    .bind(now)
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query("UPDATE conversations SET last_seq = 30000 WHERE id = $1")
        .bind(ab.id)
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("ANALYZE messages").execute(&mut db).await.unwrap();

    let ranked = found(s, &bob, &words(&["common"])).await;
    assert_eq!(ranked[0], (ab.id, 29_500), "the best of the newest 1,000");
    assert!(ranked.iter().all(|(_, seq)| *seq > 29_000), "{ranked:?}");
    // Then three "common"s before two before one, newest first among equals.
    assert_eq!(ranked[1..4], [(ab.id, 29_999), (ab.id, 29_996), (ab.id, 29_993)]);
    // Pages of 20 are the first 100 in order, each result once.
    let all = found(s, &bob, &SearchQuery { limit: 100, ..words(&["common"]) }).await;
    let mut paged = Vec::new();
    for offset in (0..100).step_by(20) {
        paged.extend(found(s, &bob, &SearchQuery { offset, ..words(&["common"]) }).await);
    }
    assert_eq!(paged, all);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 100);
    // Newest first is exact: the newest matches, wherever they are.
    let recent = SearchQuery { sort: SearchSort::Recent, offset: 40, ..words(&["common"]) };
    let recent: Vec<i64> = found(s, &bob, &recent).await.iter().map(|h| h.1).collect();
    assert_eq!(recent, (29_941..=29_960).rev().collect::<Vec<_>>());
    // Old messages are still found when the words are rare, or the dates ask for them.
    let rare = found(s, &bob, &words(&["common", "12345"])).await;
    assert_eq!(rare, [(ab.id, 12_345)]);
    let old = SearchQuery { before: Some(now - 29_000 * 1_000_000), ..words(&["common"]) };
    let old = found(s, &bob, &old).await;
    assert_eq!(old[0], (ab.id, 100));
    assert!(old.iter().all(|(_, seq)| *seq <= 1_000), "{old:?}");
    drop(db);
    f.finish().await;
}

/// Distinct segments in the SQLite store's search index.
async fn search_segments(dir: &std::path::Path) -> i64 {
    let path = dir.join(switchboard_storage::SQLITE_FILE);
    let mut db =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query_scalar("SELECT count(DISTINCT segid) FROM message_search_idx")
        .fetch_one(&mut db)
        .await
        .unwrap()
}

// SQLite migration 0013: FTS5 no longer merges inside commits; the store's merger does.
#[tokio::test]
async fn sqlite_merges_the_search_index_outside_the_commits() {
    let f = Fixture::sqlite().await;
    let Backend::Sqlite(dir) = &f.backend else { unreachable!() };
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (ab, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    let s = f.store.as_ref();
    // One new segment per message: a search indexes what appends left (migration 0014),
    // so a search after each append makes 200 of them. FTS5's last resort alone (a level
    // merged once 16 segments are on it) would leave 20.
    for n in 0..200 {
        s.append(said(ab.id, &alice, &format!("m{n}"), &format!("minutes of meeting {n}")))
            .await
            .unwrap();
        assert_eq!(found(s, &bob, &words(&["meeting", &n.to_string()])).await, [(ab.id, n + 1)]);
    }
    let mut segments = search_segments(dir.path()).await;
    for _ in 0..100 {
        if segments <= 8 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        segments = search_segments(dir.path()).await;
    }
    assert!(segments <= 8, "{segments} search index segments left unmerged after 10 s");
    // Merged, the index still finds each message, once.
    for n in [0, 1, 99, 137, 199] {
        assert_eq!(found(s, &bob, &words(&["meeting", &n.to_string()])).await, [(ab.id, n + 1)]);
    }
}

// SQLite migration 0014: appends leave the search index to the indexer, which indexes
// them in the background, with no search asking.
#[tokio::test]
async fn sqlite_indexes_new_messages_behind_the_appends() {
    let f = Fixture::sqlite().await;
    let Backend::Sqlite(dir) = &f.backend else { unreachable!() };
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (ab, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    let s = f.store.as_ref();
    for n in 0..20 {
        s.append(said(ab.id, &alice, &format!("m{n}"), &format!("agenda item {n}"))).await.unwrap();
    }
    let path = dir.path().join(switchboard_storage::SQLITE_FILE);
    let mut db =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (noted, indexed) = search_backlog(&mut db).await;
        if noted == 0 && indexed == 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 5 s: {noted} messages still to index, {indexed} indexed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found(s, &bob, &words(&["agenda", "7"])).await, [(ab.id, 8)]);
}

/// Messages noted for the SQLite search index and messages indexed.
async fn search_backlog(db: &mut sqlx::SqliteConnection) -> (i64, i64) {
    let count = |table| format!("SELECT count(*) FROM {table}");
    let noted = sqlx::query_scalar(&count("message_search_pending")).fetch_one(&mut *db).await;
    let indexed = sqlx::query_scalar(&count("message_search_docsize")).fetch_one(&mut *db).await;
    (noted.unwrap(), indexed.unwrap())
}

/// Writes messages 1 to `n` of `conversation` straight into the SQLite tables, as the
/// search benchmark's seeder does (bypassing the store, so only the triggers see them):
/// `sender`'s "`text` 1" to "`text` n".
async fn insert_in_bulk(
    db: &mut sqlx::SqliteConnection,
    conversation: i64,
    sender: &User,
    n: i64,
    text: &str,
) {
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO messages (conversation_id, seq, sender_id, kind, body, ts)
         SELECT ?, i, ?, 'text', ? || ' ' || i, 0 FROM n",
    )
    .bind(n)
    .bind(conversation)
    .bind(sender.id)
    .bind(text)
    .execute(&mut *db)
    .await
    .unwrap();
    sqlx::query("UPDATE conversations SET last_seq = ? WHERE id = ?")
        .bind(n)
        .bind(conversation)
        .execute(&mut *db)
        .await
        .unwrap();
}

// A backlog bigger than one indexing transaction (1,000 messages: rows written in bulk,
// bypassing the store, as the search benchmark's seeder does) is indexed to its end
// before a search answers.
#[tokio::test]
async fn sqlite_indexes_a_backlog_in_chunks_to_its_end() {
    let f = Fixture::sqlite().await;
    let Backend::Sqlite(dir) = &f.backend else { unreachable!() };
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (ab, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    let s = f.store.as_ref();
    let path = dir.path().join(switchboard_storage::SQLITE_FILE);
    let mut db =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    insert_in_bulk(&mut db, ab.id, &alice, 2500, "minutes line").await;
    // The last chunk's message, found at once: the search indexed every chunk first.
    assert_eq!(found(s, &bob, &words(&["minutes", "2500"])).await, [(ab.id, 2500)]);
    assert_eq!(search_backlog(&mut db).await, (0, 2500));
    assert_eq!(found(s, &bob, &words(&["minutes", "1"])).await, [(ab.id, 1)]);
}

// A database filled in bulk and then settled (as the search benchmark's seeder does) has
// its search index in one segment. And however stale the planner's statistics, the
// store reaches the index's pages by key: statistics gathered while the index was all
// but empty (2 rows) made SQLite scan the whole pages table for each range of pages a
// merge step deletes, 40 ms a step at a million messages.
#[tokio::test]
async fn sqlite_settles_a_database_filled_in_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let (ab, _) = store.open_direct(&alice, &bob).await.unwrap();
    let url = format!("sqlite://{}", dir.path().join(switchboard_storage::SQLITE_FILE).display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    insert_in_bulk(&mut db, ab.id, &alice, 3000, "budget line").await;
    // Statistics gathered now say the search index is all but empty.
    sqlx::query("ANALYZE").execute(&mut db).await.unwrap();
    store.settle_search_index().await.unwrap();
    assert_eq!(search_backlog(&mut db).await, (0, 3000));
    assert_eq!(search_segments(dir.path()).await, 1);
    drop(store);
    db.close().await.unwrap();

    // A server started on it.
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let plan: (i64, i64, i64, String) = sqlx::query_as(
        "EXPLAIN QUERY PLAN DELETE FROM message_search_data WHERE id >= ? AND id <= ?",
    )
    .bind(1)
    .bind(2)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert!(plan.3.contains("USING INTEGER PRIMARY KEY"), "{plan:?}");
    // Statistics of the other tables stay.
    let analyzed: Vec<String> = sqlx::query_scalar("SELECT DISTINCT tbl FROM sqlite_stat1")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert!(analyzed.iter().any(|t| t == "messages"), "{analyzed:?}");
    assert!(!analyzed.iter().any(|t| t.starts_with("message_search")), "{analyzed:?}");
    assert_eq!(found(&store, &bob, &words(&["budget", "2999"])).await, [(ab.id, 2999)]);
}

/// From the WAL index (the `-shm` file, native byte order): the frames in the log
/// (`mxFrame`, byte 16 of its header) and how many of them a checkpoint has copied into
/// the database file (`nBackfill`, byte 96, after the header's two copies).
fn log_frames(dir: &std::path::Path) -> (u32, u32) {
    let shm = dir.join(format!("{}-shm", switchboard_storage::SQLITE_FILE));
    let index = std::fs::read(shm).unwrap();
    let word = |at: usize| u32::from_ne_bytes(index[at..at + 4].try_into().unwrap());
    (word(16), word(96))
}

// The store checkpoints after 10,000 pages of log, not SQLite's 1,000: a busy page is
// copied into the database file once per checkpoint however many commits wrote it.
#[tokio::test]
async fn sqlite_checkpoints_after_ten_thousand_pages_of_log() {
    let f = Fixture::sqlite().await;
    let Backend::Sqlite(dir) = &f.backend else { unreachable!() };
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (ab, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    // A commit per message, each writing a few pages, until the log holds 1,500.
    let mut last = 0;
    for n in 0.. {
        let (frames, copied) = log_frames(dir.path());
        assert!(
            frames >= last && copied == 0,
            "checkpointed at {last} frames of log (now {frames}, {copied} copied)"
        );
        if frames > 1500 {
            break;
        }
        last = frames;
        assert!(n < 2000, "{n} commits wrote only {frames} frames");
        let body = format!("status report {n}");
        f.store.append(said(ab.id, &alice, &format!("m{n}"), &body)).await.unwrap();
    }
}

// The store copies the log into the database file beside the writer (its commits do not
// checkpoint), and the log still starts over while appends go on: SQLite starts it over
// only once a checkpoint has copied all of it, which checkpoints running beside a writer
// never manage alone. A log far past the 10,000 pages after which the store checkpoints
// (written in bulk by another connection) is copied and started over under a stream of
// appends, and every append is stored.
#[tokio::test]
async fn sqlite_starts_the_log_over_while_appends_go_on() {
    let f = Fixture::sqlite().await;
    let Backend::Sqlite(dir) = &f.backend else { unreachable!() };
    let (alice, bob) = (user(f.store.as_ref(), "alice").await, user(f.store.as_ref(), "bob").await);
    let (ab, _) = f.store.open_direct(&alice, &bob).await.unwrap();
    let url = format!("sqlite://{}", dir.path().join(switchboard_storage::SQLITE_FILE).display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("PRAGMA wal_autocheckpoint = 0").execute(&mut db).await.unwrap();
    // A page of log or more per message.
    let bulk = 12_000;
    insert_in_bulk(&mut db, ab.id, &alice, bulk, &"minutes ".repeat(500)).await;
    let (frames, copied) = log_frames(dir.path());
    assert!(frames > 12_000 && copied == 0, "{frames} frames of log, {copied} copied");
    let started = std::time::Instant::now();
    let mut last = bulk;
    loop {
        last += 1;
        let stored = f.store.append(said(ab.id, &alice, &format!("m{last}"), "after")).await;
        assert_eq!(stored.unwrap().message.seq, last);
        let (now, _) = log_frames(dir.path());
        if now < 1000 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "after {} appends the log still holds {now} frames",
            last - bulk
        );
    }
    let newest = f.store.history(ab.id, &bob, None, None, 2).await.unwrap();
    let seqs: Vec<i64> = newest.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [last - 1, last]);
}
