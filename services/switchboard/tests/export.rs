//! The compliance export and threads from the CLI, through the real binary: a known data
//! set (direct conversations, an edit, a deletion, a thread reply, non-ASCII text, a
//! long line, a message outside the date range) exported as JSON lines, CSV and `.eml`
//! equals it message for message; filters; only admins; an interrupted export resumed
//! gives the same files as an uninterrupted one; every export is in the audit log. Runs
//! on `switchboard serve` (SQLite) and on a cluster (storage over PostgreSQL, a router,
//! a gateway).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use sqlx::Connection;
use support::{BIN, Cluster, TestData, spawn};

/// Where the test's data lives, to backdate a message (nothing in the API writes the past).
enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Db {
    async fn execute(&self, sql: &str) {
        match self {
            Db::Sqlite(dir) => {
                let path = dir.join(switchboard_storage::SQLITE_FILE);
                let url = format!("sqlite://{}", path.display());
                let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(sql).execute(&mut db).await.unwrap();
            }
            Db::Postgres(url) => {
                let mut db = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut db).await.unwrap();
            }
        }
    }
}

/// Runs the CLI with its own config dir; (exit code, stdout, stderr).
fn run(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("SWITCHBOARD_CONFIG_DIR", config)
        .env_remove("SWITCHBOARD_SERVER")
        .env_remove("SWITCHBOARD_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(config: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = run(config, args);
    assert_eq!(code, 0, "{args:?} failed: {stdout} {stderr}");
    stdout
}

/// Creates an account straight in the data (`--data-dir DIR` or `--database URL`).
fn add_user(target: &[&str], name: &str, admin: bool) {
    let mut args = vec!["user", "add", name, "--password-stdin"];
    if admin {
        args.push("--admin");
    }
    args.extend_from_slice(target);
    let mut child =
        Command::new(BIN).args(&args).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{name}-password\n").as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "user add {name}");
}

fn login(tmp: &Path, url: &str, name: &str) -> PathBuf {
    let config = tmp.join(name);
    let mut child = Command::new(BIN)
        .args(["login", "--server", url, "--user", name, "--password-stdin"])
        .env("SWITCHBOARD_CONFIG_DIR", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{name}-password\n").as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "login {name}");
    config
}

/// `(conversation id, seq)` from "Sent to X (conversation C, seq S)".
fn sent(output: &str) -> (i64, i64) {
    let rest = output.split("(conversation ").nth(1).unwrap();
    let (c, rest) = rest.split_once(", seq ").unwrap();
    (c.parse().unwrap(), rest.trim().trim_end_matches(')').parse().unwrap())
}

/// A message as the test expects to find it in every format.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    conversation: i64,
    seq: i64,
    sender: String,
    /// The text now (kept when deleted).
    body: String,
    /// The first text, when edited.
    original: Option<String>,
    /// `(edit seq, new text)`.
    edits: Vec<(i64, String)>,
    deleted_by: Option<String>,
    thread: Option<i64>,
}

fn expected((conversation, seq): (i64, i64), sender: &str, body: &str) -> Expected {
    Expected {
        conversation,
        seq,
        sender: sender.into(),
        body: body.into(),
        original: None,
        edits: Vec::new(),
        deleted_by: None,
        thread: None,
    }
}

fn from_json(v: &Value) -> Expected {
    let m = &v["message"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Expected {
        conversation: v["conversation"]["id"].as_i64().unwrap(),
        seq: m["seq"].as_i64().unwrap(),
        sender: text(&m["sender"]).unwrap(),
        body: text(&m["body"]).unwrap(),
        original: text(&v["original_body"]),
        edits: v["edits"]
            .as_array()
            .map(|edits| {
                edits
                    .iter()
                    .map(|e| (e["seq"].as_i64().unwrap(), text(&e["body"]).unwrap()))
                    .collect()
            })
            .unwrap_or_default(),
        deleted_by: text(&v["deleted_by"]),
        thread: m["thread_seq"].as_i64(),
    }
}

fn jsonl(dir: &Path) -> Vec<Expected> {
    let text = std::fs::read_to_string(dir.join("messages.jsonl")).unwrap();
    text.lines().map(|l| from_json(&serde_json::from_str(l).unwrap())).collect()
}

fn csv(dir: &Path) -> Vec<Expected> {
    let text = std::fs::read_to_string(dir.join("messages.csv")).unwrap();
    let rows = switchboard_gateway::parse_csv(&text).unwrap();
    let header: Vec<String> = rows[0].1.clone();
    let col =
        |row: &Vec<String>, name: &str| row[header.iter().position(|h| h == name).unwrap()].clone();
    let some = |s: String| (!s.is_empty()).then_some(s);
    rows[1..]
        .iter()
        .map(|(_, row)| {
            assert_eq!(row.len(), header.len());
            let edits = some(col(row, "edits"))
                .map(|e| {
                    let e: Value = serde_json::from_str(&e).unwrap();
                    e.as_array()
                        .unwrap()
                        .iter()
                        .map(|e| {
                            (e["seq"].as_i64().unwrap(), e["body"].as_str().unwrap().to_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            Expected {
                conversation: col(row, "conversation_id").parse().unwrap(),
                seq: col(row, "seq").parse().unwrap(),
                sender: col(row, "sender"),
                body: col(row, "body"),
                original: some(col(row, "original_body")),
                edits,
                deleted_by: some(col(row, "deleted_by")),
                thread: some(col(row, "thread_seq")).map(|s| s.parse().unwrap()),
            }
        })
        .collect()
}

/// A mail file's headers (unfolded, by lower-case name) and decoded body.
fn read_eml(path: &Path) -> (BTreeMap<String, String>, String) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.lines().all(|l| l.len() <= 998), "{}", path.display());
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut headers = BTreeMap::new();
    let unfolded = head.replace("\r\n ", " ");
    for line in unfolded.split("\r\n") {
        let (name, value) = line.split_once(": ").unwrap();
        headers.insert(name.to_ascii_lowercase(), value.to_owned());
    }
    let body = if headers["content-transfer-encoding"] == "quoted-printable" {
        let joined = body.replace("=\r\n", "");
        let mut bytes = Vec::new();
        let mut rest = joined.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'=' {
                bytes.push(
                    u8::from_str_radix(std::str::from_utf8(&tail[..2]).unwrap(), 16).unwrap(),
                );
                rest = &tail[2..];
            } else {
                bytes.push(b);
                rest = tail;
            }
        }
        String::from_utf8(bytes).unwrap()
    } else {
        body.to_owned()
    };
    (headers, body.strip_suffix("\r\n").unwrap().replace("\r\n", "\n"))
}

/// The `.eml` files checked against `want`; returns how many files there are in all.
fn check_eml(dir: &Path, want: &[Expected]) -> usize {
    for e in want {
        let folder = dir.join(format!("conversation-{}", e.conversation));
        let (h, body) = read_eml(&folder.join(format!("{:08}.eml", e.seq)));
        assert!(h["from"].ends_with(&format!("<{}@switchboard.invalid>", e.sender)), "{h:?}");
        assert_eq!(
            h["message-id"],
            format!("<c{}.s{}@switchboard.invalid>", e.conversation, e.seq)
        );
        assert_eq!(body, e.original.clone().unwrap_or(e.body.clone()), "{e:?}");
        let root = e.thread.map(|t| format!("<c{}.s{t}@switchboard.invalid>", e.conversation));
        assert_eq!(h.get("in-reply-to"), root.as_ref());
        assert_eq!(h.contains_key("x-switchboard-deleted"), e.deleted_by.is_some());
        if let Some(by) = &e.deleted_by {
            assert!(h["x-switchboard-deleted"].ends_with(&format!("by {by}")), "{h:?}");
        }
        assert!(h["date"].ends_with(" +0000") && h["to"].contains("@switchboard.invalid"), "{h:?}");
        for (seq, text) in &e.edits {
            let (h, body) = read_eml(&folder.join(format!("{:08}-edit-{seq:08}.eml", e.seq)));
            let original = format!("<c{}.s{}@switchboard.invalid>", e.conversation, e.seq);
            assert_eq!(
                (h["in-reply-to"].as_str(), body.as_str()),
                (original.as_str(), text.as_str())
            );
        }
    }
    tree(dir).keys().filter(|p| p.ends_with(".eml")).count()
}

/// Every file under `dir` (but the state file) and its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.ends_with("export-state.json") {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

const RANGE: [&str; 4] = ["--from", "2021-01-01", "--to", "2099-12-31T23:59:59.999Z"];

fn export(config: &Path, out: &Path, format: &str, more: &[&str]) -> (i32, String, String) {
    let out = out.to_str().unwrap();
    let args = [&["export", "--format", format, "--out", out][..], &RANGE[..], more].concat();
    run(config, &args)
}

async fn the_export_matches_the_data_set(tmp: &Path, url: &str, db: &Db) {
    let root = login(tmp, url, "root");
    let alice = login(tmp, url, "alice");
    let bob = login(tmp, url, "bob");

    // The data set: alice and bob talk, edit, delete and reply in a thread; root writes to
    // each of them, once long ago.
    let d1 = sent(&ok(&alice, &["send", "bob", "hello bob"])).0;
    ok(&bob, &["send", "alice", "hi alice"]);
    ok(&alice, &["edit", &d1.to_string(), "1", "hello bob, edited"]);
    ok(&bob, &["send", "alice", "oops, wrong chat"]);
    ok(&bob, &["delete", &d1.to_string(), "4"]);
    let replied =
        ok(&alice, &["send", "bob", "--thread", "2", "a reply, \"quoted\"\nover two lines"]);
    assert_eq!(replied.trim(), format!("Replied in thread {d1}:2 (seq 6)"));
    let zoe = "Zoë's note: ünïcode, and a comma";
    let d2 = sent(&ok(&root, &["send", "alice", zoe])).0;
    let long = format!("{}end", "a long line ".repeat(120));
    ok(&root, &["send", "alice", &long]);
    let d3 = sent(&ok(&root, &["send", "bob", "old news"])).0;
    // 2020-06-15T12:00:00Z
    db.execute(&format!("UPDATE messages SET ts = 1592222400000 WHERE conversation_id = {d3}"))
        .await;

    // Threads from the CLI: the root, then its reply.
    let thread = ok(&bob, &["history", "alice", "--thread", "2"]);
    let lines: Vec<&str> = thread.lines().collect();
    assert!(lines[0].contains(&format!("#{d1}:2 bob: hi alice (1 reply)")), "{thread}");
    assert!(lines[1].starts_with("  [") && lines[1].contains("alice: a reply"), "{thread}");
    let json = ok(&bob, &["history", "alice", "--thread", "2", "--json"]);
    let seqs: Vec<i64> = json
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 6]);
    let (code, _, stderr) = run(&bob, &["send", "alice", "--thread", "99", "into the void"]);
    assert!(code == 4 && stderr.contains("not_found"), "{code} {stderr}");
    // The deleted message is gone from history and search, for both of them.
    for (config, other) in [(&alice, "bob"), (&bob, "alice")] {
        let history = ok(config, &["history", other]);
        assert!(history.contains(&format!("#{d1}:4 bob: (deleted)")), "{history}");
        assert!(!history.contains("oops"), "{history}");
        assert!(ok(config, &["search", "oops"]).contains("nothing found"));
    }

    let mut edited = expected((d1, 1), "alice", "hello bob, edited");
    edited.original = Some("hello bob".into());
    edited.edits = vec![(3, "hello bob, edited".into())];
    let mut deleted = expected((d1, 4), "bob", "oops, wrong chat");
    deleted.deleted_by = Some("bob".into());
    let mut reply = expected((d1, 6), "alice", "a reply, \"quoted\"\nover two lines");
    reply.thread = Some(2);
    let all = vec![
        edited,
        expected((d1, 2), "bob", "hi alice"),
        deleted,
        reply,
        expected((d2, 1), "root", zoe),
        expected((d2, 2), "root", &long),
    ];

    // All three formats hold exactly the data set.
    let out = tmp.join("exports");
    let (_, done, progress) = export(&root, &out.join("jsonl"), "jsonl", &[]);
    // Not a terminal: plain progress lines, with the total counted at the start.
    assert!(progress.lines().any(|l| l.starts_with("export: 6/6 messages, ")), "{progress}");
    assert_eq!(
        done.trim(),
        format!("Exported 6 messages to {} (jsonl)", out.join("jsonl").display())
    );
    assert_eq!(jsonl(&out.join("jsonl")), all);
    ok(
        &root,
        &[&["export", "--format", "csv", "--out", out.join("csv").to_str().unwrap()][..], &RANGE]
            .concat(),
    );
    assert_eq!(csv(&out.join("csv")), all);
    assert_eq!(export(&root, &out.join("eml"), "eml", &[]).0, 0);
    assert_eq!(check_eml(&out.join("eml"), &all), all.len() + 1, "a file per message and edit");
    let (zoe_mail, _) = read_eml(&out.join(format!("eml/conversation-{d2}/00000001.eml")));
    assert!(zoe_mail["subject"].starts_with("=?UTF-8?B?"), "{zoe_mail:?}");
    assert_eq!(zoe_mail["content-transfer-encoding"], "8bit");
    let (long_mail, _) = read_eml(&out.join(format!("eml/conversation-{d2}/00000002.eml")));
    assert_eq!(long_mail["content-transfer-encoding"], "quoted-printable");

    // Filters: a sender, a conversation, a day (the old message alone).
    let code = export(&root, &out.join("bob"), "jsonl", &["--user", "bob"]).0;
    let bobs: Vec<_> = all.iter().filter(|e| e.sender == "bob").cloned().collect();
    assert_eq!((code, jsonl(&out.join("bob"))), (0, bobs));
    let d2_arg = d2.to_string();
    export(&root, &out.join("d2"), "jsonl", &["--conversation", &d2_arg]);
    assert_eq!(jsonl(&out.join("d2")), all[4..]);
    let old = out.join("old");
    let args = [
        "export",
        "--format",
        "jsonl",
        "--out",
        old.to_str().unwrap(),
        "--from",
        "2020-06-15",
        "--to",
        "2020-06-15",
    ];
    ok(&root, &args);
    assert_eq!(jsonl(&old), [expected((d3, 1), "root", "old news")]);

    // Only admins; bad input is named.
    let (code, _, stderr) = export(&alice, &out.join("alice"), "jsonl", &[]);
    assert!(code == 4 && stderr.contains("forbidden"), "{code} {stderr}");
    let bad =
        ["export", "--format", "csv", "--out", "x", "--from", "2026-13-01", "--to", "2027-01-01"];
    let (code, _, stderr) = run(&root, &bad);
    assert!(code != 0 && stderr.contains("cannot read the date"), "{stderr}");
    let (code, _, stderr) =
        export(&root, &out.join("none"), "jsonl", &["--conversation", "999999"]);
    assert!(code == 4 && stderr.contains("conversation_not_found"), "{code} {stderr}");

    // Interrupted after two pages of one, with half a line written after them (a crash
    // mid-page): the same command resumes and ends with the same file.
    let resumed = out.join("resumed");
    let (code, _, stderr) =
        export(&root, &resumed, "jsonl", &["--page-size", "1", "--stop-after-pages", "2"]);
    assert!(code == 0 && stderr.contains("Stopped after 2 pages"), "{stderr}");
    assert_eq!(jsonl(&resumed), all[..2]);
    let mut file =
        std::fs::OpenOptions::new().append(true).open(resumed.join("messages.jsonl")).unwrap();
    file.write_all(b"{\"conversation\":{\"id\"").unwrap();
    let (code, _, stderr) = export(&root, &resumed, "jsonl", &["--page-size", "1"]);
    assert!(code == 0 && stderr.contains("Resuming the export"), "{stderr}");
    assert_eq!(tree(&resumed), tree(&out.join("jsonl")));
    assert!(export(&root, &resumed, "jsonl", &[]).1.contains("is complete (6 messages)"));
    // The same for mail files, with a temporary file a crash left behind.
    let mails = out.join("mails");
    export(&root, &mails, "eml", &["--page-size", "1", "--stop-after-pages", "3"]);
    std::fs::write(mails.join(format!("conversation-{d1}/00000006.eml.tmp")), "half").unwrap();
    assert_eq!(export(&root, &mails, "eml", &["--page-size", "2"]).0, 0);
    assert_eq!(tree(&mails), tree(&out.join("eml")));
    let partial = out.join("partial-csv");
    export(&root, &partial, "csv", &["--page-size", "4", "--stop-after-pages", "1"]);
    export(&root, &partial, "csv", &[]);
    assert_eq!(tree(&partial), tree(&out.join("csv")));

    // Another export into the same directory is refused, unless --restart.
    let (code, _, stderr) = export(&root, &resumed, "jsonl", &["--user", "alice"]);
    assert!(
        code != 0 && stderr.contains("other settings") && stderr.contains("--restart"),
        "{stderr}"
    );
    let (code, _, stderr) = export(&root, &tmp.join("alice"), "jsonl", &[]);
    assert!(code != 0 && stderr.contains("holds no export"), "{stderr}");
    assert_eq!(export(&root, &resumed, "jsonl", &["--user", "alice", "--restart"]).0, 0);
    let alices: Vec<_> = all.iter().filter(|e| e.sender == "alice").cloned().collect();
    assert_eq!(jsonl(&resumed), alices);

    // Each export (and the resumption) is in the audit log, with its filters.
    let audit = ok(&root, &["audit", "--action", "export.", "--json", "--limit", "100"]);
    let entries: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let resumes: Vec<&Value> = entries.iter().filter(|e| e["action"] == "export.resume").collect();
    assert_eq!(resumes.len(), 3, "{audit}");
    assert!(resumes.iter().all(|e| e["actor"] == "root"));
    assert!(resumes[0]["detail"].as_str().unwrap().contains("resumed after"), "{audit}");
    let starts: Vec<&Value> = entries.iter().filter(|e| e["action"] == "export.start").collect();
    assert!(starts.iter().any(|e| e["detail"].as_str().unwrap().contains("users bob")), "{audit}");
    assert!(starts.iter().any(|e| e["target"] == format!("conversation:{d2}")), "{audit}");
    assert!(
        starts.iter().all(|e| e["detail"]
            .as_str()
            .unwrap()
            .contains("from 2021-01-01T00:00:00.000Z")
            || e["detail"].as_str().unwrap().contains("from 2020-06-15")),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_export_matches_the_data_set_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let target = ["--data-dir", data.to_str().unwrap()];
    add_user(&target, "root", true);
    add_user(&target, "alice", false);
    add_user(&target, "bob", false);
    let (_server, addr) =
        spawn(&["serve", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]);
    the_export_matches_the_data_set(tmp.path(), &format!("http://{addr}"), &Db::Sqlite(data)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cluster_export_matches_the_data_set_in_every_format() {
    let data = TestData::new("export").await;
    let target = ["--database", data.database.as_str()];
    add_user(&target, "root", true);
    add_user(&target, "alice", false);
    add_user(&target, "bob", false);
    let gateway = ["--rate-per-user", "0", "--rate-per-ip", "0"];
    let cluster = Cluster::on(&data).gateway_args(&gateway).start().await;
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://{}", cluster.addrs()[0]);
    the_export_matches_the_data_set(tmp.path(), &url, &Db::Postgres(data.database.clone())).await;
    drop(cluster);
    data.remove().await;
}
