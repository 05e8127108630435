//! Ending sessions across a cluster (real processes: storage over a PostgreSQL database
//! of this test's own, a router, two gateways on the local Redis under a prefix of this
//! test's own): a sign-out on one gateway ends the sessions of that token on the other,
//! and disabling an account ends all of its sessions wherever they are.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{Cluster, TestData, WsClient, add_admin, add_users};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_outs_and_disabled_accounts_end_sessions_on_every_gateway() {
    let data = TestData::new("cluster-sessions").await;
    add_users(&data.database, &["alice"]);
    add_admin(&data.database, "root");
    let cluster = Cluster::on(&data).gateways(2).start().await;
    let gw = cluster.addrs();

    // alice on her laptop (gw2) and her phone (gw2); she signs the laptop out through gw1.
    let laptop = support::login_token(&gw[0], "alice").await;
    let phone = support::login_token(&gw[0], "alice").await;
    let mut on_laptop = WsClient::connect(&gw[1], &laptop).await;
    let mut on_phone = WsClient::connect(&gw[1], &phone).await;
    let (status, _) = request(&gw[0], "POST", "/api/v1/logout", &laptop, None).await;
    assert_eq!(status, 204);
    let (frames, close) = on_laptop.until_closed().await;
    assert_eq!(frames.last().unwrap()["code"], "unauthenticated", "{frames:?}");
    assert_eq!(close, Some(1008));
    on_phone.send(json!({"type": "ping", "id": "p"})).await;
    on_phone.expect(|f| f["type"] == "pong").await;

    // An admin on gw1 disables her: the phone's session on gw2 ends too.
    let root = support::login_token(&gw[0], "root").await;
    let body = json!({"disabled": true});
    let (status, _) = request(&gw[0], "PUT", "/api/v1/admin/users/alice", &root, Some(body)).await;
    assert_eq!(status, 200);
    let (frames, close) = on_phone.until_closed().await;
    let last = frames.last().unwrap();
    assert_eq!(last["code"], "unauthenticated", "{frames:?}");
    assert!(last["message"].as_str().unwrap().contains("disabled"), "{last}");
    assert_eq!(close, Some(1008));

    drop(cluster);
    data.remove().await;
}

/// An HTTP/1.1 request with a bearer token; the status and the body.
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         connection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response.split_once("\r\n\r\n").unwrap().1.to_owned())
}
