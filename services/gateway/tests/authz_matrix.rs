//! The authorization matrix: every REST endpoint and every WebSocket client frame type,
//! tried by six kinds of caller, with the outcome each must get (status and typed error
//! code). The tables below are the policy; `docs/security.md` ("Authorization") explains
//! it. The test fails when the gateway serves an endpoint, or the protocol has a frame
//! type, that has no row here: a new endpoint must say who may call it.
//!
//! The callers, in the tables' column order:
//! - `anon`: no token at all;
//! - `user`: a signed-in person, member (not owner) of the group `Ops` the rows act on;
//! - `outsider`: a signed-in person who is not a member of `Ops`;
//! - `bot`: a bot account, member of `Ops`;
//! - `caster`: a person allowed to broadcast to `HQ/Building 2` (`broadcast_scope`),
//!   not a member of `Ops`;
//! - `admin`: an administrator, not a member of `Ops` (being an admin does not open
//!   other people's conversations).
//!
//! An outcome is `"200"` (any success status is spelled out), or `"403 not_member"`:
//! the status and the `code` of the JSON error. For WebSocket frames it is `"ok"` (the
//! answer is not an error) or the error frame's code.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};
use support::{Client, Config, Server, http, http_raw, test_config};
use switchboard_protocol::{ClientFrame, ServerFrame};

const ROLES: [&str; 6] = ["anon", "user", "outsider", "bot", "caster", "admin"];
/// The order rows run in: the member `user` last, so that what it changes (a deleted
/// message) cannot change another caller's outcome.
const RUN_ORDER: [usize; 6] = [0, 2, 3, 4, 5, 1];

/// `(method, path, body, outcomes by role)`. In paths and bodies, `{conv}` is the group
/// `Ops`, `{seq}` a message `user` sent there, `{role}` the caller's column name,
/// `{hook}` a webhook of `Ops` made for this caller to try to revoke, `{hook_key}` a live
/// webhook key, `{broadcast}` a broadcast to `HQ/Building 2` that asks for an ack,
/// `{name}` an account for admins to change, `{emoji}` a reaction, `{file}` an attachment of `Ops`, `{no_hold}` a hold id that does not exist, `{asset}` every file of the web client. Bodies are JSON text after substitution.
type Row = (&'static str, &'static str, &'static str, [&'static str; 6]);

const OPEN: [&str; 6] = ["200", "200", "200", "200", "200", "200"];
const SIGNED_IN: [&str; 6] = ["401 unauthenticated", "200", "200", "200", "200", "200"];
const MEMBERS: [&str; 6] =
    ["401 unauthenticated", "200", "403 not_member", "200", "403 not_member", "403 not_member"];
const ADMINS: [&str; 6] = [
    "401 unauthenticated",
    "403 forbidden",
    "403 forbidden",
    "403 forbidden",
    "403 forbidden",
    "200",
];

const REST: &[Row] = &[
    ("GET", "/healthz", "", OPEN),
    ("GET", "/readyz", "", OPEN),
    ("GET", "/metrics", "", OPEN),
    ("GET", "{asset}", "", OPEN),
    ("GET", "/api/v1/no-such-endpoint", "", ["404 not_found"; 6]),
    // A plain GET, not an upgrade; the frames table covers the WebSocket itself.
    ("GET", "/ws", "", ["400 invalid_request"; 6]),
    ("POST", "/api/v1/login", r#"{"username":"owner","password":"owner-password"}"#, OPEN),
    ("GET", "/api/v1/me", "", SIGNED_IN),
    ("GET", "/api/v1/users", "", SIGNED_IN),
    ("GET", "/api/v1/contacts", "", SIGNED_IN),
    ("GET", "/api/v1/conversations", "", SIGNED_IN),
    ("POST", "/api/v1/conversations/direct", r#"{"user":"owner"}"#, SIGNED_IN),
    ("GET", "/api/v1/presence", "", SIGNED_IN),
    (
        "PUT",
        "/api/v1/presence",
        r#"{"status":"busy","text":""}"#,
        ["401 unauthenticated", "204", "204", "204", "204", "204"],
    ),
    ("GET", "/api/v1/search?q=hello", "", SIGNED_IN),
    (
        "POST",
        "/api/v1/messages",
        r#"{"conversation_id":{conv},"body":"hello from {role}"}"#,
        ["401 unauthenticated", "201", "403 not_member", "201", "403 not_member", "403 not_member"],
    ),
    (
        "POST",
        "/api/v1/messages",
        r#"{"conversation_id":{conv},"body":"notice","kind":"broadcast"}"#,
        [
            "401 unauthenticated",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "403 not_member",
        ],
    ),
    ("GET", "/api/v1/conversations/{conv}/messages", "", MEMBERS),
    ("GET", "/api/v1/conversations/{conv}/reads", "", MEMBERS),
    ("GET", "/api/v1/conversations/{conv}/messages/{seq}/thread", "", MEMBERS),
    (
        "POST",
        "/api/v1/conversations/{conv}/attachments?name=note-{role}.txt",
        r#""a file from {role}""#,
        ["401 unauthenticated", "201", "403 not_member", "201", "403 not_member", "403 not_member"],
    ),
    // A file of Ops: its members only; to anyone else it does not exist.
    (
        "GET",
        "/api/v1/attachments/{file}",
        "",
        ["401 unauthenticated", "200", "404 not_found", "200", "404 not_found", "404 not_found"],
    ),
    ("PUT", "/api/v1/conversations/{conv}/messages/{seq}/reactions/{emoji}", "", MEMBERS),
    ("DELETE", "/api/v1/conversations/{conv}/messages/{seq}/reactions/{emoji}", "", MEMBERS),
    (
        "PATCH",
        "/api/v1/conversations/{conv}/messages/{seq}",
        r#"{"body":"edited by {role}"}"#,
        [
            "401 unauthenticated",
            "201",
            "403 not_member",
            "403 forbidden",
            "403 not_member",
            "403 not_member",
        ],
    ),
    (
        "DELETE",
        "/api/v1/conversations/{conv}/messages/{seq}",
        "",
        [
            "401 unauthenticated",
            "201",
            "403 not_member",
            "403 forbidden",
            "403 not_member",
            "403 not_member",
        ],
    ),
    // Webhooks: made by the group's owner or an admin; revoked by those or the creator.
    (
        "POST",
        "/api/v1/conversations/{conv}/webhooks",
        r#"{"name":"hook of {role}"}"#,
        [
            "401 unauthenticated",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "201",
        ],
    ),
    (
        "DELETE",
        "/api/v1/webhooks/{hook}",
        "",
        [
            "401 unauthenticated",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "204",
        ],
    ),
    // The key is the credential; a bearer token changes nothing.
    ("POST", "/hooks/{hook_key}", r#"{"text":"queue depth 12"}"#, OPEN),
    ("POST", "/hooks/whk_999999_0000", r#"{"text":"guess"}"#, ["404 not_found"; 6]),
    // Broadcasts: admins anywhere, others within their broadcast_scope.
    (
        "POST",
        "/api/v1/broadcasts",
        r#"{"to":"HQ/Building 2","body":"notice from {role}"}"#,
        ["401 unauthenticated", "403 forbidden", "403 forbidden", "403 forbidden", "201", "201"],
    ),
    (
        "POST",
        "/api/v1/broadcasts",
        r#"{"to":"HQ","body":"wider notice from {role}"}"#,
        [
            "401 unauthenticated",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "201",
        ],
    ),
    // Acknowledgements and their status: recipients ack; the sender and admins read.
    (
        "POST",
        "/api/v1/broadcasts/{broadcast}/ack",
        "",
        ["401 unauthenticated", "204", "204", "403 forbidden", "204", "204"],
    ),
    ("GET", "/api/v1/broadcasts/{broadcast}", "", ADMINS),
    // Administration.
    (
        "POST",
        "/api/v1/users",
        r#"{"username":"new-{role}","password":"new-password"}"#,
        [
            "401 unauthenticated",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "201",
        ],
    ),
    (
        "POST",
        "/api/v1/admin/bots",
        r#"{"username":"bot-{role}"}"#,
        [
            "401 unauthenticated",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "201",
        ],
    ),
    (
        "POST",
        "/api/v1/admin/directory",
        r#"{"csv":"username,org\ndir-{role},HQ\n","dry_run":true}"#,
        ADMINS,
    ),
    (
        "POST",
        "/api/v1/admin/provision",
        r#"{"prefix":"prov-{role}","count":2,"password":"prov-password"}"#,
        ADMINS,
    ),
    ("PUT", "/api/v1/admin/users/{name}", r#"{"admin":false}"#, ADMINS),
    ("GET", "/api/v1/admin/audit", "", ADMINS),
    ("GET", "/api/v1/admin/export?from=0&to=4102444800000&limit=5&count=true", "", ADMINS),
    ("GET", "/api/v1/admin/retention", "", ADMINS),
    ("PUT", "/api/v1/admin/retention", r#"{"conversation_id":{conv},"keep_days":3650}"#, ADMINS),
    (
        "DELETE",
        "/api/v1/admin/retention/{conv}",
        "",
        [
            "401 unauthenticated",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "204",
        ],
    ),
    ("GET", "/api/v1/admin/holds", "", ADMINS),
    (
        "POST",
        "/api/v1/admin/holds",
        r#"{"conversation_id":{conv},"reason":"held by {role}"}"#,
        [
            "401 unauthenticated",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "201",
        ],
    ),
    // A hold that does not exist: who may look is decided first.
    (
        "DELETE",
        "/api/v1/admin/holds/{no_hold}",
        "",
        [
            "401 unauthenticated",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "403 forbidden",
            "404 not_found",
        ],
    ),
    // Last: it revokes the caller's token.
    ("POST", "/api/v1/logout", "", ["401 unauthenticated", "204", "204", "204", "204", "204"]),
];

/// `(frame type, frame, outcomes by role)`: the frame is JSON text after substitution
/// (as for REST, plus `{victim}`: a member of `Ops` this caller tries to remove, and
/// `{extra}`: an account this caller tries to add). `anon` sends it as its first frame,
/// without signing in.
type FrameRow = (&'static str, &'static str, [&'static str; 6]);

const WS_SIGNED_IN: [&str; 6] = ["unauthenticated", "ok", "ok", "ok", "ok", "ok"];
const WS_MEMBERS: [&str; 6] =
    ["unauthenticated", "ok", "not_member", "ok", "not_member", "not_member"];

const FRAMES: &[FrameRow] = &[
    (
        "auth",
        r#"{"type":"auth","token":"sbt_not-a-token"}"#,
        [
            "unauthenticated",
            "invalid_request",
            "invalid_request",
            "invalid_request",
            "invalid_request",
            "invalid_request",
        ],
    ),
    ("ping", r#"{"type":"ping"}"#, WS_SIGNED_IN),
    // A sync names conversations; only the caller's own are ever read.
    ("sync", r#"{"type":"sync","since":{"{conv}":0}}"#, WS_SIGNED_IN),
    ("list_conversations", r#"{"type":"list_conversations"}"#, WS_SIGNED_IN),
    ("open_direct", r#"{"type":"open_direct","user":"owner"}"#, WS_SIGNED_IN),
    (
        "create_group",
        r#"{"type":"create_group","name":"g-{role}","members":["owner"]}"#,
        WS_SIGNED_IN,
    ),
    ("set_presence", r#"{"type":"set_presence","status":"away"}"#, WS_SIGNED_IN),
    ("watch", r#"{"type":"watch","users":["owner"]}"#, WS_SIGNED_IN),
    ("unwatch", r#"{"type":"unwatch","users":["owner"]}"#, WS_SIGNED_IN),
    ("search_users", r#"{"type":"search_users","q":"own"}"#, WS_SIGNED_IN),
    // Search covers the caller's conversations only: an outsider naming Ops finds nothing.
    ("search", r#"{"type":"search","q":"hello","in":"{conv}"}"#, WS_SIGNED_IN),
    (
        "send",
        r#"{"type":"send","conversation_id":{conv},"client_msg_id":"ws-{role}","body":"hi"}"#,
        WS_MEMBERS,
    ),
    ("history", r#"{"type":"history","conversation_id":{conv}}"#, WS_MEMBERS),
    ("thread", r#"{"type":"thread","conversation_id":{conv},"seq":{seq}}"#, WS_MEMBERS),
    (
        "react",
        r#"{"type":"react","conversation_id":{conv},"seq":{seq},"emoji":"{emoji}"}"#,
        WS_MEMBERS,
    ),
    (
        "unreact",
        r#"{"type":"unreact","conversation_id":{conv},"seq":{seq},"emoji":"{emoji}"}"#,
        WS_MEMBERS,
    ),
    ("typing", r#"{"type":"typing","conversation_id":{conv}}"#, WS_MEMBERS),
    ("read", r#"{"type":"read","conversation_id":{conv},"seq":1}"#, WS_MEMBERS),
    (
        "edit",
        r#"{"type":"edit","conversation_id":{conv},"seq":{seq},"client_msg_id":"e-{role}","body":"x"}"#,
        ["unauthenticated", "ok", "not_member", "forbidden", "not_member", "not_member"],
    ),
    (
        "delete",
        r#"{"type":"delete","conversation_id":{conv},"seq":{ws_seq},"client_msg_id":"d-{role}"}"#,
        ["unauthenticated", "ok", "not_member", "forbidden", "not_member", "not_member"],
    ),
    // Any member may add people; only the owner, an admin (who is a member) or the person
    // themselves may remove someone.
    (
        "add_members",
        r#"{"type":"add_members","conversation_id":{conv},"users":["{extra}"]}"#,
        WS_MEMBERS,
    ),
    (
        "remove_member",
        r#"{"type":"remove_member","conversation_id":{conv},"user":"{victim}"}"#,
        ["unauthenticated", "forbidden", "not_member", "forbidden", "not_member", "not_member"],
    ),
    (
        "ack_broadcast",
        r#"{"type":"ack_broadcast","broadcast_id":{broadcast}}"#,
        ["unauthenticated", "ok", "ok", "forbidden", "ok", "ok"],
    ),
];

/// Everything the rows refer to.
struct World {
    server: Server,
    /// Each role's token (`anon`: none).
    tokens: Vec<Option<String>>,
    vars: HashMap<&'static str, String>,
    /// Per role: a webhook of Ops for it to try to revoke.
    hooks: Vec<i64>,
    /// Where the server keeps attachments.
    _files: tempfile::TempDir,
}

async fn token(server: &Server, name: &str) -> String {
    server.login(name, &format!("{name}-password")).await
}

async fn world() -> World {
    let files = tempfile::tempdir().unwrap();
    let blobs = switchboard_storage::attachments::Blobs::local(files.path()).unwrap();
    let server = Server::start_with(Config { attachments: Some(blobs), ..test_config() }).await;
    let gw = &server.gateway;
    for (name, admin) in [("owner", false), ("user", false), ("outsider", false), ("caster", false)]
    {
        let password = format!("{name}-password");
        gw.create_user(None, name, password, "", "HQ/Building 2", admin).await.unwrap();
    }
    gw.create_user(None, "admin", "admin-password".into(), "", "HQ/Building 2", true)
        .await
        .unwrap();
    let csv = "username,org,broadcast_scope\ncaster,HQ/Building 2,HQ/Building 2\n";
    gw.import_directory(None, csv, None, false).await.unwrap();
    let (_, bot_token, _) = gw.create_bot(None, "bot", "Bot").await.unwrap();
    let mut members = vec!["user".to_owned(), "bot".to_owned()];
    for role in ROLES {
        gw.create_user(None, &format!("victim-{role}"), "victim-password".into(), "", "HQ", false)
            .await
            .unwrap();
        gw.create_user(None, &format!("extra-{role}"), "extra-password".into(), "", "HQ", false)
            .await
            .unwrap();
        members.push(format!("victim-{role}"));
    }
    let store = gw.store();
    let owner = store.user_by_name("owner").await.unwrap();
    let mut member_users = Vec::new();
    for name in &members {
        member_users.push(store.user_by_name(name).await.unwrap());
    }
    let (ops, _) = store.create_group(&owner, "Ops", &member_users).await.unwrap();
    let mut hooks = Vec::new();
    for _ in ROLES {
        hooks.push(gw.create_webhook(&owner, ops.id, "to revoke").await.unwrap().0.id);
    }
    let (_, hook_key) = gw.create_webhook(&owner, ops.id, "live").await.unwrap();
    let admin = store.user_by_name("admin").await.unwrap();
    let broadcast =
        gw.broadcast(&admin, "HQ/Building 2", "Fire drill".into(), true, false).await.unwrap();

    let mut tokens = vec![None];
    for role in &ROLES[1..] {
        tokens.push(Some(if *role == "bot" {
            bot_token.clone()
        } else {
            token(&server, role).await
        }));
    }
    let mut seqs = Vec::new();
    for key in ["rest-target", "ws-target"] {
        let body = json!({"conversation_id": ops.id, "body": "hello Ops", "client_msg_id": key});
        let (status, sent) =
            http(server.addr, "POST", "/api/v1/messages", tokens[1].as_deref(), Some(body)).await;
        assert_eq!(status, 201, "{sent}");
        seqs.push(sent["seq"].as_i64().unwrap());
    }
    let (seq, ws_seq) = (seqs[0], seqs[1]);
    // A file in Ops (its content JSON, as the table's answers are read as JSON).
    let path = format!("/api/v1/conversations/{}/attachments?name=plan.json", ops.id);
    let (status, sent) =
        http_raw(server.addr, "POST", &path, tokens[1].as_deref(), Some(b"{}".to_vec())).await;
    assert_eq!(status, 201, "{sent}");
    let file = sent["attachment"]["id"].as_i64().unwrap();
    let vars = HashMap::from([
        ("{conv}", ops.id.to_string()),
        ("{seq}", seq.to_string()),
        ("{ws_seq}", ws_seq.to_string()),
        ("{hook_key}", hook_key),
        ("{broadcast}", broadcast.id.to_string()),
        ("{name}", "owner".to_owned()),
        ("{emoji}", "plus1".to_owned()),
        ("{no_hold}", "999999".to_owned()),
        ("{file}", file.to_string()),
    ]);
    World { server, tokens, vars, hooks, _files: files }
}

impl World {
    fn fill(&self, text: &str, role: usize) -> String {
        let mut out = text.replace("{role}", ROLES[role]);
        for (name, value) in &self.vars {
            out = out.replace(name, value);
        }
        out.replace("{hook}", &self.hooks[role].to_string())
            .replace("{victim}", &format!("victim-{}", ROLES[role]))
            .replace("{extra}", &format!("extra-{}", ROLES[role]))
    }
}

/// `"200"` or `"403 not_member"`: what a caller got.
fn outcome(status: u16, body: &Value) -> String {
    match body.get("code").and_then(Value::as_str) {
        Some(code) if status >= 400 => format!("{status} {code}"),
        _ => status.to_string(),
    }
}

/// The `(method, path)` of every route the gateway's source declares (`.route("path",
/// get(..).post(..))`), and the web client's files (`asset!("path", ..)`), read from
/// `src/`: what the REST table must cover.
fn declared_routes() -> (BTreeSet<(String, String)>, Vec<String>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut routes = BTreeSet::new();
    let mut assets = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for (at, _) in source.match_indices("asset!(\"") {
            let rest = &source[at + 8..];
            assets.push(rest[..rest.find('"').unwrap()].to_owned());
        }
        for (at, _) in source.match_indices(".route(") {
            let rest = source[at + 7..].trim_start();
            // The call's text, up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .unwrap()
                .0;
            let call = &rest[..end];
            let Some(literal) = call.strip_prefix('"') else {
                // `router.route(asset.path, ..)` in web.rs serves the assets; `router.route(
                // routed)` is the router link, not HTTP.
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    call.starts_with("asset.path") || !call.contains("get("),
                    "{file}: a route whose path is not a literal; give it a row: {call}"
                );
                continue;
            };
            let route = literal[..literal.find('"').unwrap()].to_owned();
            for method in ["get", "post", "put", "patch", "delete"] {
                let called = call
                    .match_indices(&format!("{method}("))
                    .any(|(i, _)| i == 0 || !call.as_bytes()[i - 1].is_ascii_alphanumeric());
                if called {
                    routes.insert((method.to_uppercase(), route.clone()));
                }
            }
        }
    }
    assert!(!assets.is_empty(), "found no web client files in src/web.rs");
    (routes, assets)
}

/// A path with every `{parameter}` written `{}`: the router's names and the table's
/// placeholders differ.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push_str("{}");
            }
            '}' => inside = false,
            _ if inside => {}
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn every_route_and_frame_type_has_a_row() {
    let (declared, _) = declared_routes();
    let declared: BTreeSet<(String, String)> =
        declared.into_iter().map(|(m, p)| (m, shape(&p))).collect();
    let rows: BTreeSet<(String, String)> =
        REST.iter().map(|(m, p, _, _)| ((*m).to_owned(), shape(p))).collect();
    let missing: Vec<_> = declared.difference(&rows).collect();
    assert!(missing.is_empty(), "endpoints without a row in REST: {missing:?}");
    let unserved: Vec<_> = rows
        .iter()
        .filter(|r| !declared.contains(*r))
        .filter(|(_, p)| !["{}", "/api/v1/no-such-endpoint"].contains(&p.as_str()))
        .filter(|(_, p)| !p.starts_with("/hooks/whk_"))
        .collect();
    assert!(unserved.is_empty(), "rows for endpoints the gateway does not declare: {unserved:?}");
    let framed: BTreeSet<&str> = FRAMES.iter().map(|(t, _, _)| *t).collect();
    let types: BTreeSet<&str> = ClientFrame::TYPES.iter().copied().collect();
    assert_eq!(framed, types, "FRAMES must have exactly one row per ClientFrame::TYPES entry");
    assert_eq!(FRAMES.len(), types.len(), "one row per frame type");
}

#[tokio::test]
async fn every_caller_gets_what_the_rest_table_says() {
    let world = world().await;
    let (_, assets) = declared_routes();
    let mut wrong = Vec::new();
    for (method, path, body, expected) in REST {
        for role in RUN_ORDER {
            let paths: Vec<String> =
                if *path == "{asset}" { assets.clone() } else { vec![world.fill(path, role)] };
            for target in paths {
                let body = (!body.is_empty()).then(|| {
                    let text = world.fill(body, role);
                    serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
                });
                let token = world.tokens[role].as_deref();
                let plain = *path == "{asset}" || *path == "/metrics";
                let (status, answer) = if !plain {
                    http(world.server.addr, method, &target, token, body).await
                } else {
                    asset(world.server.addr, &target).await
                };
                let got = outcome(status, &answer);
                if got != expected[role] {
                    wrong.push(format!(
                        "{method} {path} as {}: expected {:?}, got {got:?} {answer}",
                        ROLES[role], expected[role]
                    ));
                }
            }
        }
    }
    world.server.stop().await;
    assert!(wrong.is_empty(), "authorization matrix (REST) differs:\n{}", wrong.join("\n"));
}

/// A web client file: its status (its body is not JSON).
async fn asset(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    (text.split(' ').nth(1).unwrap().parse().unwrap(), Value::Null)
}

#[tokio::test]
async fn every_caller_gets_what_the_frame_table_says() {
    let world = world().await;
    let mut wrong = Vec::new();
    for role in RUN_ORDER {
        let mut client = match &world.tokens[role] {
            Some(token) => Some(world.server.connect(token).await),
            None => None,
        };
        for (kind, frame, expected) in FRAMES {
            let mut frame: Value = serde_json::from_str(&world.fill(frame, role))
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            let got = match client.as_mut() {
                Some(client) => match client.request(frame).await {
                    ServerFrame::Error { code, .. } => code.as_str().to_owned(),
                    _ => "ok".to_owned(),
                },
                None => {
                    // Not signed in: the frame comes first, and must be refused.
                    frame["id"] = json!("r1");
                    let mut anon = Client::raw(&world.server.ws_url()).await;
                    anon.send(frame).await;
                    let (frames, _) = anon.until_closed().await;
                    match frames.first() {
                        Some(ServerFrame::Error { code, .. }) => code.as_str().to_owned(),
                        other => format!("{other:?}"),
                    }
                }
            };
            if got != expected[role] {
                wrong.push(format!(
                    "{kind} as {}: expected {:?}, got {got:?}",
                    ROLES[role], expected[role]
                ));
            }
        }
        if let Some(client) = client {
            client.close().await;
        }
    }
    world.server.stop().await;
    assert!(wrong.is_empty(), "authorization matrix (WebSocket) differs:\n{}", wrong.join("\n"));
}
