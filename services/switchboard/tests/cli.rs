//! The `switchboard` binary as a newcomer uses it: start the server, sign in, add people,
//! chat from the CLI, stop and restart. Real processes, real ports, a temporary data dir.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    url: String,
    /// Lines printed before the "listening" line.
    banner: Vec<String>,
}

impl Serve {
    fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    fn start_with(data: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        let url = loop {
            let line =
                lines.recv_timeout(Duration::from_secs(30)).expect("serve printed no address");
            if let Some(rest) = line.strip_prefix("Switchboard is listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            banner.push(line);
        };
        Self { child, lines, url, banner }
    }

    fn admin_password(&self) -> Option<String> {
        self.banner
            .iter()
            .find_map(|l| l.trim().strip_prefix("one-time password: ").map(str::to_owned))
    }

    /// SIGTERM, then the exit status and the rest of stdout.
    fn stop(mut self) -> (bool, Vec<String>) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = self.child.wait().unwrap();
        (status.success(), self.lines.try_iter().collect())
    }

    /// SIGKILL, and wait for the process to be gone.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Runs a client command with its own config dir; returns (success, stdout, stderr).
fn cli(config: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let (code, stdout, stderr) = run(config, args, stdin);
    (code == 0, stdout, stderr)
}

/// The bodies of `history --json` output, oldest first.
fn bodies(history: &str) -> Vec<String> {
    history
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn ok(result: (bool, String, String)) -> String {
    assert!(result.0, "command failed: stdout {} stderr {}", result.1, result.2);
    result.1
}

#[test]
fn a_newcomer_starts_the_server_and_chats_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (admin, alice) = (tmp.path().join("admin"), tmp.path().join("alice"));
    let server = Serve::start(&data);
    let password = server.admin_password().expect("first start prints the admin password");
    let url = server.url.clone();

    ok(cli(
        &admin,
        &["login", "--server", &url, "--user", "admin", "--password-stdin"],
        Some(&format!("{password}\n")),
    ));
    let created = ok(cli(
        &admin,
        &["user", "add", "alice", "--org", "HQ/Building 2/Floor 3", "--password-stdin"],
        Some("alice-secret\n"),
    ));
    assert!(created.contains("Created alice"), "{created}");
    // Straight into the data dir, while the server runs.
    let data_arg = data.to_str().unwrap();
    ok(cli(
        &admin,
        &["user", "add", "bob", "--data-dir", data_arg, "--password-stdin"],
        Some("bob-secret\n"),
    ));
    let (success, _, stderr) =
        cli(&admin, &["user", "add", "alice", "--password-stdin"], Some("another-one\n"));
    assert!(!success && stderr.contains("user_exists"), "{stderr}");

    let (success, _, stderr) = cli(
        &alice,
        &["login", "--server", &url, "--user", "alice", "--password-stdin"],
        Some("wrong\n"),
    );
    assert!(!success && stderr.contains("invalid_credentials"), "{stderr}");
    ok(cli(
        &alice,
        &["login", "--server", &url, "--user", "alice", "--password-stdin"],
        Some("alice-secret\n"),
    ));

    // alice listens; admin writes to her.
    let mut listen = Command::new(BIN)
        .args(["listen", "--json"])
        .env("SWITCHBOARD_CONFIG_DIR", &alice)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, heard) = mpsc::channel();
    let stdout = listen.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let welcome = heard.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(welcome.contains("\"welcome\""), "{welcome}");

    let sent = ok(cli(&admin, &["send", "alice", "Welcome", "aboard"], None));
    assert!(sent.contains("seq 1"), "{sent}");
    let got = loop {
        let line = heard.recv_timeout(Duration::from_secs(10)).expect("listen heard nothing");
        if line.contains("\"message\"") {
            break line;
        }
    };
    let frame: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(frame["message"]["body"], "Welcome aboard");
    listen.kill().unwrap();
    let _ = listen.wait();

    ok(cli(&alice, &["send", "admin", "Thanks!"], None));
    let history = ok(cli(&alice, &["history", "admin", "--json"], None));
    assert_eq!(bodies(&history), ["Welcome aboard", "Thanks!"]);
    let plain = ok(cli(&alice, &["history", "admin"], None));
    assert!(plain.contains("admin: Welcome aboard"), "{plain}");

    ok(cli(&alice, &["presence", "set", "busy", "In", "a", "meeting"], None));
    let who = ok(cli(&admin, &["who", "--json"], None));
    let who: serde_json::Value = serde_json::from_str(&who).unwrap();
    // alice has no session open, so she shows offline whatever she chose.
    assert_eq!(who[0]["user"], "alice");
    assert_eq!(who[0]["status"], "offline");
    let (success, _, stderr) = cli(&alice, &["presence", "set", "sleepy"], None);
    assert!(!success && stderr.contains("unknown status"), "{stderr}");

    // Stop (SIGTERM) and start again: history is kept, no new admin password.
    let (clean, rest) = server.stop();
    assert!(clean, "serve exits 0 on SIGTERM");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    let server = Serve::start(&data);
    assert_eq!(server.admin_password(), None);
    let url_flag = ["--server", server.url.as_str()];
    let history = ok(cli(&alice, &[&["history", "admin"][..], &url_flag[..]].concat(), None));
    assert!(history.contains("Thanks!"), "{history}");
    ok(cli(&alice, &[&["logout"][..], &url_flag[..]].concat(), None));
    let (success, _, stderr) =
        cli(&alice, &[&["history", "admin"][..], &url_flag[..]].concat(), None);
    assert!(!success && stderr.contains("not signed in"), "{stderr}");
}

#[test]
fn with_sync_normal_acked_messages_survive_a_killed_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let admin = tmp.path().join("admin");
    let server = Serve::start_with(&data, &["--sync", "normal"]);
    assert!(
        server.banner.iter().any(|l| l.contains("survive a crash of the server, not a power loss")),
        "serve says what an ack survives: {:?}",
        server.banner
    );
    let password = server.admin_password().unwrap();
    ok(cli(
        &admin,
        &["login", "--server", &server.url, "--user", "admin", "--password-stdin"],
        Some(&format!("{password}\n")),
    ));
    ok(cli(&admin, &["user", "add", "carol", "--password-stdin"], Some("carol-secret\n")));
    for n in 1..=20 {
        let sent = ok(cli(&admin, &["send", "carol", &format!("note {n}")], None));
        assert!(sent.contains(&format!("seq {n}")), "{sent}");
    }
    // SIGKILL: no shutdown, no checkpoint; what was acked is in the log.
    server.kill();
    let server = Serve::start(&data);
    assert!(server.banner.iter().any(|l| l.contains("survive a power loss (--sync full)")));
    let url_flag = ["--server", server.url.as_str()];
    let history =
        ok(cli(&admin, &[&["history", "carol", "--json"][..], &url_flag[..]].concat(), None));
    let expected: Vec<String> = (1..=20).map(|n| format!("note {n}")).collect();
    assert_eq!(bodies(&history), expected);
}

#[test]
fn help_explains_the_commands() {
    let (success, help, _) = cli(Path::new("/nonexistent"), &["--help"], None);
    assert!(success);
    for command in [
        "serve",
        "user",
        "login",
        "send",
        "listen",
        "history",
        "presence",
        "who",
        "post",
        "bot",
        "webhook",
        "directory",
        "broadcast",
    ] {
        assert!(help.contains(command), "--help lacks {command}: {help}");
    }
    assert!(help.contains("Exit codes") && help.contains("5  server unreachable"), "{help}");
    let (success, _, stderr) = cli(Path::new("/nonexistent"), &["send", "bob", "hi"], None);
    assert!(!success && stderr.contains("switchboard login"), "{stderr}");
}

#[test]
fn directory_sign_in_is_documented_and_checked_at_start() {
    for command in ["serve", "gateway"] {
        let (success, help, _) = cli(Path::new("/nonexistent"), &[command, "--help"], None);
        assert!(success);
        assert!(help.contains("Directory sign-in (LDAP)"), "{command} --help: {help}");
        for flag in ["--ldap-url", "--ldap-user-dn", "--ldap-search-base", "--ldap-admin-group"] {
            assert!(help.contains(flag), "{command} --help lacks {flag}: {help}");
        }
    }
    // A directory without a way to find users is refused before anything starts.
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir];
    let (success, _, stderr) = cli(
        Path::new("/nonexistent"),
        &[&args[..], &["--ldap-url", "ldap://127.0.0.1:1"]].concat(),
        None,
    );
    assert!(!success && stderr.contains("--ldap-user-dn"), "{stderr}");
}

/// Runs a command; returns its exit code, stdout and stderr.
fn run(config: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("SWITCHBOARD_CONFIG_DIR", config)
        .env_remove("SWITCHBOARD_SERVER")
        .env_remove("SWITCHBOARD_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn directory_import_bots_and_broadcasts_from_the_cli_with_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_arg = data.to_str().unwrap();
    let admin = tmp.path().join("admin");
    let csv = tmp.path().join("people.csv");
    std::fs::write(
        &csv,
        "username,display_name,org,department,title\n\
         amartin,Alice Martin,HQ/Building 2/Floor 3,Facilities,Site manager\n\
         bnguyen,\"Nguyen, Bao\",HQ/Building 1,Finance,\n",
    )
    .unwrap();
    let csv_arg = csv.to_str().unwrap();
    // Straight into the data dir: a dry run first, then for real, then again (no change).
    let (code, out, _) =
        run(&admin, &["directory", "import", csv_arg, "--dry-run", "--data-dir", data_arg], None);
    assert_eq!(code, 0);
    assert!(out.contains("2 would be created"), "{out}");
    let (code, out, _) = run(
        &admin,
        &["directory", "import", csv_arg, "--data-dir", data_arg, "--password-stdin"],
        Some("initial-pass\n"),
    );
    assert_eq!(code, 0);
    assert!(out.contains("created amartin") && out.contains("2 created"), "{out}");
    let (_, out, _) = run(&admin, &["directory", "import", csv_arg, "--data-dir", data_arg], None);
    assert!(out.contains("0 created, 0 updated, 2 unchanged"), "{out}");
    // A bad file: exit code 4, the bad lines on stderr, nothing changed.
    std::fs::write(&csv, "username,org\namartin,HQ/Moved\nbad name,HQ\ncarol,HQ//x\n").unwrap();
    let (code, out, err) =
        run(&admin, &["directory", "import", csv_arg, "--data-dir", data_arg], None);
    assert_eq!(code, 4, "{out} {err}");
    assert!(err.contains("line 3") && err.contains("line 4") && !err.contains("line 2:"), "{err}");

    let server = Serve::start(&data);
    let url = server.url.clone();
    let (code, _, _) = run(
        &admin,
        &["login", "--server", &url, "--user", "amartin", "--password-stdin"],
        Some("initial-pass\n"),
    );
    assert_eq!(code, 0);
    let (_, found, _) = run(&admin, &["directory", "search", "facilities", "--json"], None);
    let found: serde_json::Value = serde_json::from_str(found.lines().next().unwrap()).unwrap();
    assert_eq!(
        (found["org"].as_str(), found["title"].as_str()),
        (Some("HQ/Building 2/Floor 3"), Some("Site manager"))
    );
    // Not an admin: bots and broadcasts are refused (4); a bad token is 3; no server is 5.
    let (code, _, err) = run(&admin, &["bot", "add", "ci"], None);
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = run(&admin, &["broadcast", "--to", "HQ", "hello"], None);
    assert_eq!(code, 4, "{err}");
    let (code, _, _) = run(&admin, &["post", "--token", "sbt_nope", "--to", "bnguyen", "hi"], None);
    assert_eq!(code, 3);
    let (code, _, _) =
        run(&admin, &["post", "--server", "http://127.0.0.1:9", "--to", "bnguyen", "hi"], None);
    assert_eq!(code, 5);
    // A bot made in the data dir posts with its token.
    let (code, token, _) =
        run(&admin, &["bot", "add", "ci", "--display-name", "CI", "--data-dir", data_arg], None);
    assert_eq!(code, 0);
    let (code, out, err) = run(
        &admin,
        &[
            "post",
            "--token",
            token.trim(),
            "--to",
            "amartin",
            "--key",
            "deploy-1",
            "deploy",
            "done",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (_, again, _) = run(
        &admin,
        &[
            "post",
            "--token",
            token.trim(),
            "--to",
            "amartin",
            "--key",
            "deploy-1",
            "deploy",
            "done",
        ],
        None,
    );
    assert_eq!(out, again, "a retry with the same key is stored once");
    let (_, history, _) = run(&admin, &["history", "ci", "--json"], None);
    let m: serde_json::Value = serde_json::from_str(history.lines().next().unwrap()).unwrap();
    assert_eq!((m["sender"].as_str(), m["author"].as_str()), (Some("ci"), Some("CI")));
    drop(server);
}

#[test]
fn people_search_their_messages_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (admin, alice) = (tmp.path().join("admin"), tmp.path().join("alice"));
    let server = Serve::start(&data);
    let password = server.admin_password().unwrap();
    let url = server.url.clone();
    ok(cli(
        &admin,
        &["login", "--server", &url, "--user", "admin", "--password-stdin"],
        Some(&format!("{password}\n")),
    ));
    ok(cli(&admin, &["user", "add", "alice", "--password-stdin"], Some("alice-secret\n")));
    ok(cli(
        &alice,
        &["login", "--server", &url, "--user", "alice", "--password-stdin"],
        Some("alice-secret\n"),
    ));
    ok(cli(&admin, &["send", "alice", "Budget 2027 is approved"], None));
    ok(cli(&alice, &["send", "admin", "thanks for the budget, 2027 looks good"], None));
    ok(cli(&admin, &["send", "alice", "lunch?"], None));

    // The example: a phrase, one author, JSON lines.
    let json = ok(cli(&alice, &["search", "budget 2027", "--from", "admin", "--json"], None));
    let lines: Vec<serde_json::Value> =
        json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{json}");
    assert_eq!(lines[0]["message"]["body"], "Budget 2027 is approved");
    assert_eq!(lines[0]["highlight"][1], "Budget");
    // Both words, anyone, for people: one line each, no escape codes when piped.
    let plain = ok(cli(&alice, &["search", "budget", "2027"], None));
    assert_eq!(plain.lines().count(), 2, "{plain}");
    assert!(plain.contains("alice: thanks for the budget") && !plain.contains('\x1b'), "{plain}");
    let (code, _, stderr) = run(&alice, &["search", "budget", "--from", "nobody"], None);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("user_not_found"), "{stderr}");
    let (code, _, stderr) = run(&alice, &["search", "budget", "--before", "soon"], None);
    assert!(code == 4 && stderr.contains("invalid_request"), "{stderr}");

    // Edit and delete from the CLI; search and history follow.
    let hit: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    let (conv, seq) =
        (hit["message"]["conversation_id"].to_string(), hit["message"]["seq"].to_string());
    let (code, _, stderr) = run(&alice, &["edit", &conv, &seq, "not", "mine"], None);
    assert!(code == 4 && stderr.contains("forbidden"), "{stderr}");
    ok(cli(&admin, &["edit", &conv, &seq, "Budget 2028 is approved"], None));
    assert!(
        ok(cli(&alice, &["search", "2027", "--from", "admin"], None)).contains("nothing found")
    );
    let history = ok(cli(&alice, &["history", "admin"], None));
    assert!(history.contains("Budget 2028 is approved (edited)"), "{history}");
    let deleted = ok(cli(&admin, &["delete", &conv, &seq], None));
    assert!(deleted.contains("Deleted message"), "{deleted}");
    let history = ok(cli(&alice, &["history", "admin"], None));
    assert!(
        history.contains("admin: (deleted)") && !history.contains("admin: Budget 2028"),
        "{history}"
    );
    let (stopped, _) = server.stop();
    assert!(stopped);
}

#[test]
fn admins_read_the_audit_log_and_disable_accounts_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (admin, alice) = (tmp.path().join("admin"), tmp.path().join("alice"));
    let server = Serve::start(&data);
    let password = server.admin_password().unwrap();
    let url = server.url.clone();
    let login = |dir: &Path, user: &str, password: &str| {
        let args = ["login", "--server", &url, "--user", user, "--password-stdin"];
        run(dir, &args, Some(&format!("{password}\n")))
    };
    assert_eq!(login(&admin, "admin", &password).0, 0);
    ok(cli(&admin, &["user", "add", "alice", "--password-stdin"], Some("alice-secret\n")));
    let data_arg = data.to_str().unwrap();
    let local = ["user", "add", "bob", "--data-dir", data_arg, "--password-stdin"];
    ok(cli(&admin, &local, Some("bob-secret\n")));
    assert_eq!(login(&alice, "alice", "not-her-secret").0, 3);
    assert_eq!(login(&alice, "alice", "alice-secret").0, 0);

    let failed = ok(cli(&admin, &["audit", "--action", "auth.login_failed"], None));
    let lines: Vec<&str> = failed.lines().collect();
    assert_eq!(lines.len(), 1, "{failed}");
    for part in ["alice", "auth.login_failed", "127.0.0.1", "wrong password"] {
        assert!(lines[0].contains(part), "{part} missing: {failed}");
    }
    let by_alice = ok(cli(&admin, &["audit", "--actor", "alice", "--json", "--since", "1h"], None));
    let actions: Vec<String> = by_alice
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .inspect(|e| assert_eq!(e["actor"], "alice"))
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["auth.login", "auth.login_failed"]);
    // One per page: the newest, then (with the printed --before) the one before it.
    let (success, newest, hint) =
        cli(&admin, &["audit", "--action", "user.create", "--limit", "1"], None);
    assert!(success && newest.contains("bob") && newest.contains("-  "), "{newest}");
    let before = hint.trim().strip_prefix("(older entries: add --before ").unwrap();
    let before = before.trim_end_matches(')');
    let args = ["audit", "--action", "user.create", "--limit", "1", "--before", before];
    let older = ok(cli(&admin, &args, None));
    assert!(older.contains("alice") && older.contains("admin "), "{older}");

    // Not for non-admins (exit 4: refused); bad times are named.
    let (code, _, stderr) = run(&alice, &["audit"], None);
    assert!(code == 4 && stderr.contains("forbidden"), "{code} {stderr}");
    let (success, _, stderr) = cli(&admin, &["audit", "--since", "yesterday"], None);
    assert!(!success && stderr.contains("cannot read the time"), "{stderr}");

    // Disabling ends alice's token; it is audited.
    let set = ok(cli(&admin, &["user", "set", "alice", "--disabled", "true"], None));
    assert_eq!(set.trim(), "alice: not an admin, disabled");
    let (code, _, stderr) = run(&alice, &["history", "admin"], None);
    assert!(code == 3 && stderr.contains("unauthenticated"), "{code} {stderr}");
    let (success, _, stderr) = cli(&admin, &["user", "set", "alice"], None);
    assert!(!success && stderr.contains("--admin"), "say what to change: {stderr}");
    let updates = ok(cli(&admin, &["audit", "--action", "user."], None));
    assert!(updates.lines().next().unwrap().contains("disabled=true"), "{updates}");

    let (success, help, _) = cli(&admin, &["audit", "--help"], None);
    assert!(success && help.contains("auth.login_failed") && help.contains("Examples"), "{help}");
    server.stop();
}
