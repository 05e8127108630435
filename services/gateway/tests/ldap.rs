//! Directory sign-in against a real OpenLDAP server: each test starts its own `slapd` on an
//! ephemeral port, with its own config and database in a temporary directory, seeded with
//! people and groups (scripts/test installs the Debian packages `slapd` and `ldap-utils`).

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, http, test_config};
use switchboard_gateway::Config;
use switchboard_gateway::ldap::LdapConfig;
use switchboard_protocol::ServerFrame;

const BASE: &str = "dc=example,dc=org";
const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
const ROOT_PW: &str = "root-secret";

/// People and the org units they belong to; groups come in [`GROUPS`] after start, so the
/// memberOf overlay records them on the members.
const SEED: &str = "\
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
displayName: Alice Liddell
ou: Engineering/Platform
userPassword: alice-secret

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
sn: Builder
displayName: Bob Builder
ou: Facilities
userPassword: bob-secret

dn: uid=carol,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: Danvers
ou: Operations
userPassword: carol-secret

dn: cn=operators,ou=groups,dc=example,dc=org
objectClass: groupOfUniqueNames
cn: operators
uniqueMember: uid=carol,ou=people,dc=example,dc=org
";

const GROUPS: &str = "\
dn: cn=admins,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: admins
member: uid=alice,ou=people,dc=example,dc=org
";

/// A private slapd, stopped when dropped.
struct Slapd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Slapd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let conf = dir.path().join("slapd.conf");
        std::fs::write(&conf, config_text(dir.path(), &db)).unwrap();
        let seed = dir.path().join("seed.ldif");
        std::fs::write(&seed, SEED).unwrap();
        let out = Command::new(sbin("slapadd")).arg("-f").arg(&conf).arg("-l").arg(&seed).output();
        let out = out.expect("slapadd not found: install the Debian package slapd");
        assert!(out.status.success(), "slapadd: {}", String::from_utf8_lossy(&out.stderr));

        let port = free_port();
        let url = format!("ldap://127.0.0.1:{port}");
        // -d keeps slapd in the foreground (no fork), so the child is the server.
        let child = Command::new(sbin("slapd"))
            .arg("-f")
            .arg(&conf)
            .arg("-h")
            .arg(format!("{url}/"))
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd not found: install the Debian package slapd");
        let mut slapd = Self { child, url, _dir: dir };
        slapd.wait_up(port);
        slapd.apply(GROUPS);
        slapd
    }

    fn wait_up(&mut self, port: u16) {
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("slapd exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("slapd did not listen on {}", self.url);
    }

    /// Applies LDIF (entries to add, or `changetype: modify` records) through the running
    /// server, as its root, so overlays see the change.
    fn apply(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new("ldapmodify")
            .args(["-a", "-x", "-H", &self.url, "-D", ROOT_DN, "-w", ROOT_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify not found: install the Debian package ldap-utils");
        child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "ldapmodify: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(dir: &Path, db: &Path) -> String {
    format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
database mdb
maxsize 4194304
suffix \"{BASE}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PW}
directory {db}
overlay memberof
",
        dir = dir.display(),
        db = db.display(),
    )
}

fn sbin(name: &str) -> PathBuf {
    let path = Path::new("/usr/sbin").join(name);
    if path.exists() { path } else { PathBuf::from(name) }
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ldap_config(url: &str) -> Config {
    Config {
        ldap: Some(LdapConfig {
            user_dn: Some("uid={user},ou=people,dc=example,dc=org".into()),
            admin_group: Some("cn=admins,ou=groups,dc=example,dc=org".into()),
            display_name_attr: Some("displayName".into()),
            org_attr: Some("ou".into()),
            timeout: Duration::from_secs(3),
            ..LdapConfig::new(url)
        }),
        ..test_config()
    }
}

async fn login(addr: SocketAddr, username: &str, password: &str) -> (u16, Value) {
    let body = json!({"username": username, "password": password});
    http(addr, "POST", "/api/v1/login", None, Some(body)).await
}

async fn me(addr: SocketAddr, token: &str) -> Value {
    let (status, body) = http(addr, "GET", "/api/v1/me", Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn directory_users_sign_in_and_are_kept_in_step() {
    let slapd = Slapd::start();
    let server = Server::start_with(ldap_config(&slapd.url)).await;

    // First sign-in creates the user, with the directory's name, org unit and admin group.
    let (status, body) = login(server.addr, "alice", "alice-secret").await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let alice = me(server.addr, &token).await;
    assert_eq!(alice["username"], "alice");
    assert_eq!(alice["display_name"], "Alice Liddell");
    assert_eq!(alice["org"], "Engineering/Platform");
    assert_eq!(alice["admin"], true);

    let (status, body) = login(server.addr, "bob", "bob-secret").await;
    assert_eq!(status, 200, "{body}");
    let bob = me(server.addr, body["token"].as_str().unwrap()).await;
    assert_eq!(
        (bob["display_name"].as_str(), bob["admin"].as_bool()),
        (Some("Bob Builder"), Some(false))
    );

    // The token opens a WebSocket session like any other, and the two can chat.
    let mut ws = server.connect(&token).await;
    let answer = ws
        .request(json!({"type": "send", "to": "bob", "client_msg_id": "m1", "body": "hi Bob"}))
        .await;
    assert!(matches!(answer, ServerFrame::Ack { .. }), "{answer:?}");

    // Changes in the directory reach the account on the next sign-in; nothing is duplicated.
    slapd.apply(
        "dn: uid=alice,ou=people,dc=example,dc=org
changetype: modify
replace: displayName
displayName: Alice Pleasance Liddell
-
replace: ou
ou: Engineering/Security

dn: cn=admins,ou=groups,dc=example,dc=org
changetype: modify
delete: member
member: uid=alice,ou=people,dc=example,dc=org
-
add: member
member: uid=bob,ou=people,dc=example,dc=org
",
    );
    let (status, body) = login(server.addr, "alice", "alice-secret").await;
    assert_eq!(status, 200, "{body}");
    let alice = me(server.addr, body["token"].as_str().unwrap()).await;
    assert_eq!(alice["display_name"], "Alice Pleasance Liddell");
    assert_eq!(alice["org"], "Engineering/Security");
    assert_eq!(alice["admin"], false);
    let (_, body) = login(server.addr, "bob", "bob-secret").await;
    assert_eq!(me(server.addr, body["token"].as_str().unwrap()).await["admin"], true);
    let (_, found) = http(server.addr, "GET", "/api/v1/users?q=liddell", Some(&token), None).await;
    assert_eq!(found["users"].as_array().map(Vec::len), Some(1), "{found}");
}

#[tokio::test]
async fn wrong_password_unknown_user_and_empty_password_are_refused_alike() {
    let slapd = Slapd::start();
    let server = Server::start_with(ldap_config(&slapd.url)).await;
    for (user, password) in
        [("alice", "wrong"), ("nobody", "alice-secret"), ("alice", ""), ("alice,ou=x", "x")]
    {
        let (status, body) = login(server.addr, user, password).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")), "{user}");
        assert_eq!(body["message"], "wrong username or password");
    }
    // Nobody was created by the failed attempts.
    let admin = server.user("root").await;
    let (_, found) = http(server.addr, "GET", "/api/v1/users?q=alice", Some(&admin), None).await;
    assert_eq!(found["users"], json!([]));
}

#[tokio::test]
async fn local_accounts_and_bots_cannot_be_taken_over_by_the_directory() {
    let slapd = Slapd::start();
    let server = Server::start_with(ldap_config(&slapd.url)).await;
    // A local "alice" (not the directory's): only her local password signs her in.
    server
        .gateway
        .create_user(None, "alice", "local-password".into(), "", "", false)
        .await
        .unwrap();
    let (status, _) = login(server.addr, "alice", "local-password").await;
    assert_eq!(status, 200);
    let (status, body) = login(server.addr, "alice", "alice-secret").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    // Nor a bot (bots have no password): "bob" of the directory does not become the bot.
    let (bot, _, _) = server.gateway.create_bot(None, "bob", "Build bot").await.unwrap();
    let (status, body) = login(server.addr, "bob", "bob-secret").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    let stored = server.gateway.store().user_by_name("bob").await.unwrap();
    assert_eq!((stored.display_name, stored.bot, stored.id), ("Build bot".into(), true, bot.id));
}

#[tokio::test]
async fn search_then_bind_with_a_service_account_and_a_group_of_unique_names() {
    let slapd = Slapd::start();
    let config = Config {
        ldap: Some(LdapConfig {
            search_base: Some("ou=people,dc=example,dc=org".into()),
            bind_dn: Some(ROOT_DN.into()),
            bind_password: Some(ROOT_PW.into()),
            admin_group: Some("cn=operators,ou=groups,dc=example,dc=org".into()),
            display_name_attr: Some("displayName".into()),
            org_attr: Some("ou".into()),
            ..LdapConfig::new(&slapd.url)
        }),
        ..test_config()
    };
    let server = Server::start_with(config).await;
    let (status, body) = login(server.addr, "carol", "carol-secret").await;
    assert_eq!(status, 200, "{body}");
    let carol = me(server.addr, body["token"].as_str().unwrap()).await;
    // No displayName in the directory: the username stands in.
    assert_eq!(carol["display_name"], "carol");
    assert_eq!(carol["org"], "Operations");
    assert_eq!(carol["admin"], true);
    let (status, body) = login(server.addr, "carol", "alice-secret").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    let (status, body) = login(server.addr, "zed", "zed-secret").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
}

#[tokio::test]
async fn a_directory_that_is_down_or_silent_is_unavailable_never_a_yes() {
    // Down: nothing listens on the port.
    let down = format!("ldap://127.0.0.1:{}", free_port());
    let server = Server::start_with(ldap_config(&down)).await;
    let (status, body) = login(server.addr, "alice", "alice-secret").await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("directory (LDAP)"), "{message}");
    // Where the directory is stays in the server's log.
    assert!(!message.contains("127.0.0.1"), "{message}");
    // Local accounts still sign in while the directory is down.
    server.user("local").await;

    // Silent: accepts the connection and never answers; the timeout ends the wait.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ldap://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut config = ldap_config(&url);
    if let Some(ldap) = config.ldap.as_mut() {
        ldap.timeout = Duration::from_millis(500);
    }
    let server = Server::start_with(config).await;
    let (status, body) = login(server.addr, "alice", "alice-secret").await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("directory"), "{body}");
    held.abort();
}

/// Directory accounts are throttled like local ones: guessing a directory user's password
/// locks the account (429, the right password refused too), and an unreachable directory
/// counts against nobody.
#[tokio::test]
async fn guessing_a_directory_password_is_locked_out_like_a_local_one() {
    let slapd = Slapd::start();
    let server = Server::start_with(ldap_config(&slapd.url)).await;
    // First sign-in creates the account (no local password).
    let (status, _) = login(server.addr, "alice", "alice-secret").await;
    assert_eq!(status, 200);
    let mut locked = None;
    for attempt in 1..=20 {
        let (status, body) = login(server.addr, "alice", &format!("guess-{attempt}")).await;
        if status == 429 {
            locked = Some((attempt, body));
            break;
        }
        assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    }
    let (attempt, body) = locked.expect("20 wrong directory passwords were never throttled");
    assert!(attempt <= 11, "throttled only at attempt {attempt}");
    assert_eq!(body["code"], "rate_limited");
    let (status, _) = login(server.addr, "alice", "alice-secret").await;
    assert_eq!(status, 429, "the right password is refused while locked");
}
