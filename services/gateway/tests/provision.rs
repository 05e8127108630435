//! Bulk provisioning (`POST /api/v1/admin/provision`) against a real gateway: admin only,
//! idempotent, and the tokens it issues sign in over the WebSocket.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::{Server, http};

async fn admin(server: &Server) -> String {
    server.gateway.create_user(None, "root", "root-password".into(), "", "", true).await.unwrap();
    server.login("root", "root-password").await
}

fn request() -> Value {
    json!({
        "prefix": "lt",
        "count": 7,
        "password": "loadtest-password",
        "groups": [{"name": "lt-g0", "size": 3}, {"name": "lt-g1", "size": 5}],
        "direct_pairs": true
    })
}

#[tokio::test]
async fn provisions_users_groups_and_tokens_idempotently() {
    let server = Server::start().await;
    let token = admin(&server).await;

    let (status, first) =
        http(server.addr, "POST", "/api/v1/admin/provision", Some(&token), Some(request())).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["created_users"], 7);
    assert_eq!(first["created_groups"], 2);
    assert_eq!(first["created_directs"], 3);
    let users = first["users"].as_array().unwrap();
    let names: Vec<&str> = users.iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["lt-0", "lt-1", "lt-2", "lt-3", "lt-4", "lt-5", "lt-6"]);
    // Groups take consecutive accounts, wrapping around: g0 = 0..3, g1 = 3..8 mod 7.
    assert_eq!(first["groups"][0]["members"], json!(["lt-0", "lt-1", "lt-2"]));
    assert_eq!(first["groups"][1]["members"], json!(["lt-0", "lt-3", "lt-4", "lt-5", "lt-6"]));
    assert_eq!(first["groups"][1]["last_seq"], 1);
    assert_eq!(first["directs"][2]["members"], json!(["lt-4", "lt-5"]));

    // The issued token signs in, and the account's conversations are the provisioned ones.
    let lt3 = users[3]["token"].as_str().unwrap();
    let mut client = server.connect(lt3).await;
    let (status, list) = http(server.addr, "GET", "/api/v1/conversations", Some(lt3), None).await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "g1 and the direct conversation with lt-2: {list}");
    // The shared password works for a normal sign-in too.
    server.login("lt-6", "loadtest-password").await;

    // A re-run creates nothing and answers with the same conversations and new tokens.
    let (status, second) =
        http(server.addr, "POST", "/api/v1/admin/provision", Some(&token), Some(request())).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        (&second["created_users"], &second["created_groups"], &second["created_directs"]),
        (&json!(0), &json!(0), &json!(0))
    );
    assert_eq!(second["groups"], first["groups"]);
    assert_eq!(second["directs"], first["directs"]);
    assert_ne!(second["users"][3]["token"], first["users"][3]["token"]);
    server.connect(second["users"][3]["token"].as_str().unwrap()).await;
    client.request(json!({"type": "ping"})).await;
}

#[tokio::test]
async fn only_admins_may_provision_and_bad_requests_are_refused() {
    let server = Server::start().await;
    let token = admin(&server).await;
    let alice = server.user("alice").await;

    let (status, body) =
        http(server.addr, "POST", "/api/v1/admin/provision", Some(&alice), Some(request())).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, body) =
        http(server.addr, "POST", "/api/v1/admin/provision", None, Some(request())).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));

    for (bad, why) in [
        (json!({"prefix": "lt", "count": 0, "password": "loadtest-password"}), "count 0"),
        (json!({"prefix": "-x", "count": 2, "password": "loadtest-password"}), "bad prefix"),
        (json!({"prefix": "lt", "count": 2, "password": "short"}), "short password"),
        (
            json!({"prefix": "lt", "count": 2, "password": "loadtest-password",
                   "groups": [{"name": "g", "size": 3}]}),
            "group larger than count",
        ),
    ] {
        let (status, body) =
            http(server.addr, "POST", "/api/v1/admin/provision", Some(&token), Some(bad)).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")), "{why}");
    }
    let (status, body) = http(
        server.addr,
        "POST",
        "/api/v1/admin/provision",
        Some(&token),
        Some(json!({"prefix": "lt", "count": 2})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("malformed_frame")));

    // Never a token for an admin account, even one inside the prefix.
    server.gateway.create_user(None, "ops-0", "ops-password".into(), "", "", true).await.unwrap();
    let (status, body) = http(
        server.addr,
        "POST",
        "/api/v1/admin/provision",
        Some(&token),
        Some(json!({"prefix": "ops", "count": 2, "password": "loadtest-password"})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
}
