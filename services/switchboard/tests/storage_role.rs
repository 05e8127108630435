//! `switchboard storage` and `switchboard user add --database` against a real PostgreSQL
//! database of this test's own (`SWITCHBOARD_TEST_POSTGRES`, default the local server).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{BIN, TestData};
use switchboard_storage::Store;
use switchboard_storage::grpc::RemoteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_role_serves_what_admin_commands_wrote() {
    let data = TestData::new("role").await;
    let url = &data.database;

    let mut add = Command::new(BIN)
        .args([
            "user",
            "add",
            "carol",
            "--org",
            "HQ/Building 2",
            "--password-stdin",
            "--database",
            url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"carol-secret\n").unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut storage = Command::new(BIN)
        .args(["storage", "--listen", "127.0.0.1:0", "--database", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(storage.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.strip_prefix("Switchboard storage is listening on ").unwrap();
    let addr = addr.split_whitespace().next().unwrap().to_owned();

    let remote = RemoteStore::connect_lazy(&addr).unwrap();
    let carol = remote.user_by_name("carol").await.unwrap();
    assert_eq!(carol.org, "HQ/Building 2");
    let (_, hash) = remote.credentials("carol").await.unwrap().unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let err = remote.user_by_name("nobody").await.unwrap_err();
    assert!(matches!(err, switchboard_storage::StoreError::UserNotFound(_)), "{err}");

    Command::new("kill").args(["-TERM", &storage.id().to_string()]).status().unwrap();
    let status = tokio::task::spawn_blocking(move || storage.wait().unwrap()).await.unwrap();
    assert!(status.success(), "storage exits 0 on SIGTERM");
    // Once it is gone, calls fail as retryable `Unavailable`, not as a hang.
    let gone =
        tokio::time::timeout(Duration::from_secs(15), remote.user_by_name("carol")).await.unwrap();
    assert!(matches!(gone, Err(switchboard_storage::StoreError::Unavailable(_))), "{gone:?}");

    data.remove().await;
}
