//! The CLI client: commands that talk to a running server over REST and WebSocket.

mod credentials;
pub mod format;
mod http;
mod listen;
mod search;

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use hyper::Method;
use switchboard_protocol::rest::{
    EditRequest, HistoryResponse, LoginRequest, LoginResponse, OpenDirectRequest, PresenceResponse,
    SendRequest, SendResponse, SetPresenceRequest, ThreadResponse, UploadResponse,
};
use switchboard_protocol::{Conversation, PresenceStatus};

pub use credentials::Credentials;
pub use http::{Http, ServerError};
pub use listen::listen;
pub use search::search;

use crate::cli::{
    ClientArgs, DeleteArgs, EditArgs, HistoryArgs, LoginArgs, PresenceCommand, SendArgs, WhoArgs,
};

/// Reads a password from stdin's first line, or prompts on the terminal without echo.
pub fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        rpassword::prompt_password(prompt)
            .context("cannot prompt for a password (no terminal?); use --password-stdin")?
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

/// The server and token to use: flags and environment first, then the saved sign-in.
pub struct Connection {
    pub http: Http,
    pub token: String,
}

impl Connection {
    pub fn resolve(args: &ClientArgs) -> anyhow::Result<Self> {
        let dir = credentials::config_dir(args.config_dir.as_deref())?;
        let saved = Credentials::load(&dir)?;
        let server =
            args.server.clone().or_else(|| saved.as_ref().map(|c| c.server.clone())).ok_or_else(
                || anyhow!("no server: pass --server URL or run `switchboard login`"),
            )?;
        let token =
            args.token.clone().or_else(|| saved.as_ref().map(|c| c.token.clone())).ok_or_else(
                || anyhow!("not signed in: run `switchboard login --server URL --user NAME`"),
            )?;
        Ok(Self { http: Http::new(&server, Some(token.clone()))?, token })
    }

    /// A conversation id from `target`: a number is an id, anything else a username
    /// whose direct conversation is opened.
    async fn conversation(&self, target: &str) -> anyhow::Result<i64> {
        if let Ok(id) = target.parse::<i64>() {
            return Ok(id);
        }
        let conversation: Conversation = self
            .http
            .post("/api/v1/conversations/direct", &OpenDirectRequest { user: target.to_owned() })
            .await?;
        Ok(conversation.id)
    }
}

pub async fn login(args: ClientArgs, login: LoginArgs) -> anyhow::Result<()> {
    let server = args
        .server
        .clone()
        .ok_or_else(|| anyhow!("say which server: --server http://HOST:PORT"))?;
    let password = read_password(login.password_stdin, &format!("Password for {}: ", login.user))?;
    let http = Http::new(&server, None)?;
    let answer: LoginResponse =
        http.post("/api/v1/login", &LoginRequest { username: login.user, password }).await?;
    let dir = credentials::config_dir(args.config_dir.as_deref())?;
    let saved = Credentials {
        server: server.clone(),
        username: answer.user.username.clone(),
        token: answer.token,
    }
    .save(&dir)?;
    println!(
        "Signed in as {} on {server} (token saved in {})",
        answer.user.username,
        saved.display()
    );
    Ok(())
}

pub async fn logout(args: ClientArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&args)?;
    connection.http.call::<()>(Method::POST, "/api/v1/logout", None).await?;
    Credentials::forget(&credentials::config_dir(args.config_dir.as_deref())?)?;
    println!("Signed out; the token is revoked.");
    Ok(())
}

/// A new idempotency key: the time in milliseconds, then random digits from the standard
/// library's randomly seeded hasher. Keys that start with the time are the cheapest for
/// the server to store (docs/protocol.md, `client_msg_id`).
pub fn client_msg_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(now.as_nanos());
    let a = hasher.finish();
    hasher.write_u32(std::process::id());
    format!("{:012x}-cli-{a:016x}{:016x}", now.as_millis(), hasher.finish())
}

/// A `--to` value: a conversation id when it is a number, else a username (their direct
/// conversation). Returns `(to, conversation_id)` as [`SendRequest`] wants them.
pub fn send_target(to: &str) -> (Option<String>, Option<i64>) {
    match to.parse::<i64>() {
        Ok(id) => (None, Some(id)),
        Err(_) => (Some(to.to_owned()), None),
    }
}

/// `POST /api/v1/messages`, retried (up to three attempts) while the server is unreachable
/// or busy. Retrying is safe: the server stores one message per client_msg_id.
pub async fn post_message(
    connection: &Connection,
    request: &SendRequest,
) -> anyhow::Result<SendResponse> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match connection.http.post("/api/v1/messages", request).await {
            Ok(answer) => return Ok(answer),
            Err(e) if attempt < 3 && retryable(&e) => {
                eprintln!("warning: {e:#}; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `send --attach FILE`: uploads the file into the conversation (the caption, if any,
/// is the text of the message carrying it).
async fn send_file(connection: &Connection, send: &SendArgs, file: &Path) -> anyhow::Result<()> {
    let conversation = connection.conversation(&send.to).await?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{} names no file", file.display()))?;
    let path = format!(
        "/api/v1/conversations/{conversation}/attachments?name={}&body={}&client_msg_id={}",
        http::query_value(&name),
        http::query_value(&send.text.join(" ")),
        client_msg_id(),
    );
    let answer: UploadResponse =
        connection.http.upload(&path, content_type_of(&name), bytes).await?;
    let file = &answer.attachment;
    println!(
        "Sent {} ({}, {} bytes) to {} (conversation {}, seq {}, attachment {})",
        file.name,
        file.content_type,
        file.size,
        send.to,
        answer.conversation_id,
        answer.seq,
        file.id
    );
    Ok(())
}

/// The type to declare for a file, from its extension (the server checks images' bytes).
fn content_type_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "txt" | "log" => "text/plain",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

pub async fn send(args: ClientArgs, send: SendArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&args)?;
    if let Some(file) = &send.attach {
        return send_file(&connection, &send, file).await;
    }
    let (to, conversation_id) = match send.thread {
        // A reply names its conversation: a username's direct one is opened first.
        Some(_) => (None, Some(connection.conversation(&send.to).await?)),
        None => send_target(&send.to),
    };
    let request = SendRequest {
        to,
        conversation_id,
        body: send.text.join(" "),
        client_msg_id: Some(client_msg_id()),
        kind: None,
        thread_seq: send.thread,
    };
    let answer = post_message(&connection, &request).await?;
    let (id, seq) = (answer.conversation_id, answer.seq);
    match send.thread {
        Some(root) => println!("Replied in thread {id}:{root} (seq {seq})"),
        None => println!("Sent to {} (conversation {id}, seq {seq})", send.to),
    }
    Ok(())
}

pub fn retryable(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<http::ServerError>() {
        Some(server) => server.body.code.retryable(),
        // Not an answer from the server: the connection failed.
        None => true,
    }
}

pub async fn history(args: ClientArgs, history: HistoryArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&args)?;
    let id = connection.conversation(&history.with).await?;
    if let Some(root) = history.thread {
        return thread(&connection, id, root, &history).await;
    }
    let page: HistoryResponse = connection
        .http
        .get(&format!("/api/v1/conversations/{id}/messages?limit={}", history.limit))
        .await?;
    for message in &page.messages {
        if history.json {
            println!("{}", serde_json::to_string(message)?);
        } else {
            println!("{}", format::message_line(message));
        }
    }
    if !history.json && page.messages.is_empty() {
        println!("(no messages yet in conversation {id})");
    }
    Ok(())
}

/// `history --thread SEQ`: the thread's root, then its first `limit` replies, indented.
async fn thread(
    connection: &Connection,
    id: i64,
    root: i64,
    history: &HistoryArgs,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/conversations/{id}/messages/{root}/thread?limit={}", history.limit);
    let page: ThreadResponse = connection.http.get(&path).await?;
    if history.json {
        for message in std::iter::once(&page.root).chain(&page.replies) {
            println!("{}", serde_json::to_string(message)?);
        }
        return Ok(());
    }
    println!("{}", format::message_line(&page.root));
    for reply in &page.replies {
        println!("  {}", format::message_line(reply));
    }
    if page.has_more {
        eprintln!("(more replies: raise --limit)");
    }
    Ok(())
}

pub async fn edit(args: ClientArgs, edit: EditArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&args)?;
    let id = connection.conversation(&edit.conversation).await?;
    let request = EditRequest { body: edit.text.join(" "), client_msg_id: Some(client_msg_id()) };
    let path = format!("/api/v1/conversations/{id}/messages/{}", edit.seq);
    let answer: SendResponse =
        connection.http.exchange(Method::PATCH, &path, Some(&request)).await?;
    println!("Edited message {id}:{} (edit recorded as seq {})", edit.seq, answer.seq);
    Ok(())
}

pub async fn delete(args: ClientArgs, delete: DeleteArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&args)?;
    let id = connection.conversation(&delete.conversation).await?;
    let path = format!(
        "/api/v1/conversations/{id}/messages/{}?client_msg_id={}",
        delete.seq,
        client_msg_id()
    );
    let answer: SendResponse =
        connection.http.exchange::<(), _>(Method::DELETE, &path, None).await?;
    println!("Deleted message {id}:{} (deletion recorded as seq {})", delete.seq, answer.seq);
    Ok(())
}

pub async fn presence(args: ClientArgs, command: PresenceCommand) -> anyhow::Result<()> {
    let PresenceCommand::Set { status, text } = command;
    let status = PresenceStatus::parse(&status).ok_or_else(|| {
        anyhow!(
            "unknown status {status:?}: use available, busy, away, dnd (do-not-disturb) or offline"
        )
    })?;
    let connection = Connection::resolve(&args)?;
    let request = SetPresenceRequest { status, text: text.join(" ") };
    connection.http.call(Method::PUT, "/api/v1/presence", Some(&request)).await?;
    println!("Presence set to {}", status.as_str());
    Ok(())
}

pub async fn who(args: ClientArgs, who: WhoArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&args)?;
    let answer: PresenceResponse = connection.http.get("/api/v1/presence").await?;
    if who.json {
        println!("{}", serde_json::to_string_pretty(&answer.presences)?);
    } else if answer.presences.is_empty() {
        println!("Nobody yet: you share no conversation with anyone.");
    } else {
        for presence in &answer.presences {
            println!("{}", format::presence_line(presence));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::client_msg_id;

    #[test]
    fn keys_are_distinct_and_sort_by_time() {
        let first = client_msg_id();
        let second = client_msg_id();
        assert_ne!(first, second);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = client_msg_id();
        assert!(later > first && later > second, "{later} sorts before {first} or {second}");
        assert!(first.len() <= 128, "{first} is longer than the protocol allows");
    }
}
