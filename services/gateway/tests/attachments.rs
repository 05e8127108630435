//! Attachments against a real embedded server (SQLite, files in a directory): an upload
//! arrives as a message carrying the file, live and in history; only members download
//! it, with its checked type; oversized and mistyped uploads are refused and leave no
//! object, no staging file, no row and no message behind.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};
use support::{Server, http, test_config};
use switchboard_storage::attachments::Blobs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A 1x1 PNG.
const PNG: &[u8] = b"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\x0d\x49\x44\x41\x54\x78\xda\x63\x64\xf8\xcf\x50\x0f\x00\x03\x86\x01\x80\x5a\x34\x7d\x6b\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";

struct Answer {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// One HTTP/1.1 request on a fresh connection. `chunked`: the body goes in 16 KiB chunks
/// with no declared length, so the server only learns its size by reading it.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
    chunked: bool,
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: {content_type}\r\n"
    );
    if chunked {
        head.push_str("transfer-encoding: chunked\r\n");
    } else {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    if let Some(token) = token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    if chunked {
        for chunk in body.chunks(16 * 1024) {
            stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.unwrap();
            stream.write_all(chunk).await.unwrap();
            stream.write_all(b"\r\n").await.unwrap();
        }
        stream.write_all(b"0\r\n\r\n").await.unwrap();
    } else {
        stream.write_all(body).await.unwrap();
    }
    let mut response = Vec::new();
    tokio::time::timeout(support::WAIT, stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = headers.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Answer { status, headers, body }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
    out
}

async fn upload(
    server: &Server,
    token: &str,
    conversation: i64,
    query: &str,
    content_type: &str,
    body: &[u8],
    chunked: bool,
) -> Answer {
    let path = format!("/api/v1/conversations/{conversation}/attachments?{query}");
    request(server.addr, "POST", &path, Some(token), content_type, body, chunked).await
}

async fn download(server: &Server, token: &str, id: i64) -> Answer {
    let path = format!("/api/v1/attachments/{id}");
    request(server.addr, "GET", &path, Some(token), "application/json", b"", false).await
}

/// Every file under `dir`, recursively (staging files of aborted uploads included).
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

/// A server keeping attachments in a directory of its own, with `limit` bytes at most.
async fn server(limit: u64) -> (Server, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    let config = support::Config {
        attachments: Some(Blobs::local(files.path()).unwrap()),
        max_attachment_bytes: limit,
        ..test_config()
    };
    (Server::start_with(config).await, files)
}

async fn history(server: &Server, token: &str, conversation: i64) -> Vec<Value> {
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let (_, page) = http(server.addr, "GET", &path, Some(token), None).await;
    page["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn members_get_the_file_live_and_download_it_outsiders_do_not() {
    let (server, files) = server(1024 * 1024).await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let eve = server.user("eve").await;
    let mut b = server.connect(&bob).await;
    let (_, conv) = http(
        server.addr,
        "POST",
        "/api/v1/conversations/direct",
        Some(&alice),
        Some(json!({"user": "bob"})),
    )
    .await;
    let conv = conv["id"].as_i64().unwrap();

    let sent = upload(
        &server,
        &alice,
        conv,
        "name=..%2Fplan.png&body=the%20plan&client_msg_id=f1",
        "image/png",
        PNG,
        true,
    )
    .await;
    assert_eq!(sent.status, 201, "{}", String::from_utf8_lossy(&sent.body));
    let answer = sent.json();
    let file = answer["attachment"].clone();
    assert_eq!(file["name"], "plan.png");
    assert_eq!(
        (file["content_type"].as_str(), file["size"].as_i64()),
        (Some("image/png"), Some(70))
    );
    assert_eq!(file["sha256"].as_str().unwrap().len(), 64);
    let id = file["id"].as_i64().unwrap();

    // bob's session gets the message with the file.
    let live = b.message().await;
    assert_eq!((live.seq, live.body.as_str()), (answer["seq"].as_i64().unwrap(), "the plan"));
    assert_eq!(live.attachments[0].id, id);
    assert!(live.attachments[0].is_image());
    // So does history.
    let page = history(&server, &bob, conv).await;
    assert_eq!(page.last().unwrap()["attachments"][0], file);

    // The same upload again (a retry) is the same message; only one object is kept.
    let again = upload(
        &server,
        &alice,
        conv,
        "name=plan.png&body=the%20plan&client_msg_id=f1",
        "image/png",
        PNG,
        false,
    )
    .await;
    assert_eq!((again.status, again.json()["attachment"]["id"].as_i64()), (200, Some(id)));
    assert_eq!(files_under(files.path()).len(), 1);

    // bob downloads it: the bytes, their checked type, shown inline, never sniffed.
    let got = download(&server, &bob, id).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, PNG);
    assert_eq!(got.header("content-type").as_deref(), Some("image/png"));
    assert_eq!(got.header("x-content-type-options").as_deref(), Some("nosniff"));
    assert!(
        got.header("content-disposition").unwrap().starts_with("inline; filename=\"plan.png\"")
    );

    // eve is no member: her download is answered exactly like an id that does not exist.
    let refused = download(&server, &eve, id).await;
    let unknown = download(&server, &bob, id + 1000).await;
    assert_eq!((refused.status, unknown.status), (404, 404));
    assert_eq!(
        (refused.json()["code"].as_str(), unknown.json()["code"].as_str()),
        (Some("not_found"), Some("not_found"))
    );
    assert!(!String::from_utf8_lossy(&refused.body).contains("\\x89PNG"));
    // Nor may she upload into the conversation, and nobody may without signing in.
    let outsider = upload(&server, &eve, conv, "name=x.png", "image/png", PNG, false).await;
    assert_eq!((outsider.status, outsider.json()["code"].as_str()), (403, Some("not_member")));
    let anonymous =
        request(server.addr, "GET", &format!("/api/v1/attachments/{id}"), None, "", b"", false)
            .await;
    assert_eq!(anonymous.status, 401);

    // A file that is no image is served as a download with a safe type.
    let page = upload(
        &server,
        &alice,
        conv,
        "name=page.html",
        "text/html",
        b"<script>alert(1)</script>",
        false,
    )
    .await;
    assert_eq!(page.status, 201);
    let html = page.json()["attachment"].clone();
    assert_eq!(html["content_type"], "application/octet-stream");
    let got = download(&server, &bob, html["id"].as_i64().unwrap()).await;
    assert_eq!(got.header("content-type").as_deref(), Some("application/octet-stream"));
    assert!(got.header("content-disposition").unwrap().starts_with("attachment;"));

    // Once its message is deleted, the file is gone for people too.
    let seq = answer["seq"].as_i64().unwrap();
    let path = format!("/api/v1/conversations/{conv}/messages/{seq}");
    let (status, _) = http(server.addr, "DELETE", &path, Some(&alice), None).await;
    assert_eq!(status, 201);
    assert_eq!(download(&server, &bob, id).await.status, 404);
}

#[tokio::test]
async fn oversized_and_mistyped_uploads_are_refused_and_leave_nothing_behind() {
    // Over 5 MiB an upload goes up in parts (a staging file here): 6 MiB lets both ways
    // be refused.
    let limit = 6 * 1024 * 1024;
    let (server, files) = server(limit).await;
    let alice = server.user("alice").await;
    server.user("bob").await;
    let (_, conv) = http(
        server.addr,
        "POST",
        "/api/v1/conversations/direct",
        Some(&alice),
        Some(json!({"user": "bob"})),
    )
    .await;
    let conv = conv["id"].as_i64().unwrap();
    let before = history(&server, &alice, conv).await.len();

    let big = vec![7u8; limit as usize + 1024 * 1024];
    // Streamed with no length: refused when the byte past the limit arrives.
    let streamed =
        upload(&server, &alice, conv, "name=big.bin", "application/octet-stream", &big, true).await;
    assert_eq!(streamed.status, 413, "{}", String::from_utf8_lossy(&streamed.body));
    assert_eq!(streamed.json()["code"], "attachment_too_large");
    // With a declared length over the limit: refused before reading.
    let declared =
        upload(&server, &alice, conv, "name=big.bin", "application/octet-stream", &big, false)
            .await;
    assert_eq!(
        (declared.status, declared.json()["code"].as_str()),
        (413, Some("attachment_too_large"))
    );
    // Declared a PNG, but is not one.
    let fake = upload(
        &server,
        &alice,
        conv,
        "name=cat.png",
        "image/png",
        b"GIF89a not a png at all",
        true,
    )
    .await;
    assert_eq!(
        (fake.status, fake.json()["code"].as_str()),
        (415, Some("attachment_type_mismatch"))
    );
    // A real image declared as another kind of image.
    let wrong = upload(&server, &alice, conv, "name=cat.jpg", "image/jpeg", PNG, false).await;
    assert_eq!(
        (wrong.status, wrong.json()["code"].as_str()),
        (415, Some("attachment_type_mismatch"))
    );
    // Empty, or nameless.
    let empty = upload(&server, &alice, conv, "name=e.txt", "text/plain", b"", false).await;
    assert_eq!((empty.status, empty.json()["code"].as_str()), (400, Some("invalid_request")));
    let nameless = upload(&server, &alice, conv, "name=", "text/plain", b"x", false).await;
    assert_eq!(nameless.status, 400);

    // Nothing was kept: no object, no staging file, no message (so no row either).
    assert_eq!(files_under(files.path()), Vec::<String>::new());
    assert_eq!(history(&server, &alice, conv).await.len(), before);

    // Just under the limit, in several parts, is fine and comes back whole.
    let fits = vec![9u8; limit as usize];
    let ok =
        upload(&server, &alice, conv, "name=fits.bin", "application/octet-stream", &fits, true)
            .await;
    assert_eq!(ok.status, 201, "{}", String::from_utf8_lossy(&ok.body));
    let id = ok.json()["attachment"]["id"].as_i64().unwrap();
    let got = download(&server, &alice, id).await;
    assert_eq!((got.status, got.body.len()), (200, fits.len()));
    assert!(got.body == fits);
    assert_eq!(files_under(files.path()).len(), 1);
}
