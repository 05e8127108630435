//! Attachments in cluster mode, with real processes: one `storage` (over a PostgreSQL
//! database of this test's own), a `router` and two `gateway`s, all keeping files in one
//! bucket of a real S3-compatible server (moto's standalone server, installed by
//! `scripts/services.sh`, started here on an ephemeral port). A file sent through one
//! gateway with the CLI is downloaded by a member through the other; an outsider is
//! refused; an oversized upload is refused and leaves nothing in the bucket; retention
//! in the storage role deletes the file's object with its message.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Cluster, Proc, TestData, add_users, http_get, login_token};
use switchboard_storage::attachments::{Blobs, S3Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// moto's server: `SWITCHBOARD_MOTO_SERVER`, else where `scripts/services.sh` puts it.
fn moto_binary() -> String {
    std::env::var("SWITCHBOARD_MOTO_SERVER").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap();
        format!("{home}/.cache/switchboard/moto/bin/moto_server")
    })
}

/// A raw HTTP/1.1 exchange; returns the status line's code.
async fn raw(addr: &str, request: &str, body: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&response).split(' ').nth(1).unwrap().parse().unwrap()
}

/// Starts moto on a free port and creates `bucket`; returns the process and endpoint.
async fn start_s3(bucket: &str) -> (Proc, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(moto_binary())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} (run scripts/test to install it): {e}", moto_binary()));
    let proc = Proc(child);
    let addr = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "moto never listened on {addr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let create = format!(
        "PUT /{bucket} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    );
    assert_eq!(raw(&addr, &create, b"").await, 200, "creating the bucket");
    (proc, format!("http://{addr}"))
}

/// Runs the CLI with `config` as its sign-in directory; returns success, stdout, stderr.
fn cli(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(support::BIN)
        .args(args)
        .env("SWITCHBOARD_CONFIG_DIR", config)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_through_s3_for_members_only_and_retention_removes_them() {
    let data = TestData::new("files").await;
    let bucket = format!("sbtest-files-{}", std::process::id());
    let (_s3, endpoint) = start_s3(&bucket).await;
    add_users(&data.database, &["alice", "bob", "eve"]);

    let files =
        ["--attachments", &format!("s3://{bucket}"), "--attachments-s3-endpoint", &endpoint]
            .map(str::to_owned);
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let cluster = Cluster::on(&data)
        .storage_args(&["--retention-interval-secs", "1"])
        .storage_args(&files)
        .gateways(2)
        .gateway_args(&["--rate-per-user", "0", "--rate-per-ip", "0"])
        .gateway_args(&["--max-attachment-bytes", "65536"])
        .gateway_args(&files)
        // The S3 credentials, for the roles that reach the bucket.
        .env(|role| match role {
            "router" => Vec::new(),
            _ => [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .to_vec(),
        })
        .start()
        .await;
    let gw = cluster.addrs();
    let bucket_view = Blobs::s3(&S3Config {
        bucket: bucket.clone(),
        endpoint: Some(endpoint.clone()),
        region: "us-east-1".into(),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
    })
    .unwrap();

    // alice sends a file to bob with the CLI, through gw1.
    let tmp = tempfile::tempdir().unwrap();
    let alice_dir = tmp.path().join("alice");
    let server = format!("http://{}", gw[0]);
    let login = Command::new(support::BIN)
        .args(["login", "--server", &server, "--user", "alice", "--password-stdin"])
        .env("SWITCHBOARD_CONFIG_DIR", &alice_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut login = login;
        login.stdin.take().unwrap().write_all(b"alice-password\n").unwrap();
        assert!(login.wait().unwrap().success());
    }
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, "quarterly numbers: up\n").unwrap();
    let (ok, out, err) =
        cli(&alice_dir, &["send", "bob", "see", "attached", "--attach", notes.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("Sent notes.txt (text/plain, 22 bytes) to bob"), "{out}");
    let attachment: i64 =
        out.trim().rsplit_once("attachment ").unwrap().1.trim_end_matches(')').parse().unwrap();
    assert_eq!(bucket_view.keys().await.unwrap().len(), 1);
    // History shows the file with the caption.
    let (ok, out, _) = cli(&alice_dir, &["history", "bob"]);
    assert!(ok);
    assert!(
        out.contains(&format!(
            "see attached [file {attachment}: notes.txt (22 bytes, text/plain)]"
        )),
        "{out}"
    );

    // bob, a member, downloads it through the other gateway; eve, who is not, cannot.
    let bob = login_token(&gw[1], "bob").await;
    let eve = login_token(&gw[1], "eve").await;
    let path = format!("/api/v1/attachments/{attachment}");
    let (status, body) = http_get(&gw[1], &path, Some(&bob)).await;
    assert_eq!((status, body.as_str()), (200, "quarterly numbers: up\n"));
    let (status, body) = http_get(&gw[1], &path, Some(&eve)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not_found") && !body.contains("quarterly"), "{body}");

    // Over the limit (64 KiB), with the CLI and streamed with no length: refused, and
    // the bucket holds only the first file.
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 200 * 1024]).unwrap();
    let (ok, _, err) = cli(&alice_dir, &["send", "bob", "--attach", big.to_str().unwrap()]);
    assert!(!ok && err.contains("attachment_too_large"), "{err}");
    let conversation: i64 = {
        let (_, out, _) = cli(&alice_dir, &["history", "bob"]);
        // Lines read `[time] #CONVERSATION:SEQ sender: text`.
        out.split('#').nth(1).unwrap().split(':').next().unwrap().parse().unwrap()
    };
    let mut chunked = Vec::new();
    for _ in 0..10 {
        chunked.extend_from_slice(format!("{:x}\r\n", 16 * 1024).as_bytes());
        chunked.extend_from_slice(&[2u8; 16 * 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let bob_upload = format!(
        "POST /api/v1/conversations/{conversation}/attachments?name=big.bin HTTP/1.1\r\n\
         host: {}\r\nconnection: close\r\nauthorization: Bearer {bob}\r\n\
         content-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        gw[1]
    );
    assert_eq!(raw(&gw[1], &bob_upload, &chunked).await, 413);
    assert_eq!(bucket_view.keys().await.unwrap().len(), 1, "nothing of the refused uploads");
    let (_, out, _) = cli(&alice_dir, &["history", "bob"]);
    assert_eq!(out.lines().count(), 1, "no message for the refused uploads: {out}");

    // Retention (in the storage role, every second here) deletes the message and, with
    // it, the file's object in the bucket.
    sqlx::query("UPDATE messages SET ts = ts - 10 * 86400000")
        .execute(&mut db(&data.database).await)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO retention_policies (conversation_id, keep_days, updated_at) VALUES (0, 7, 0)",
    )
    .execute(&mut db(&data.database).await)
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !bucket_view.keys().await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "retention never deleted the object");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(http_get(&gw[1], &path, Some(&bob)).await.0, 404);

    drop(cluster);
    data.remove().await;
}

async fn db(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap()
}
