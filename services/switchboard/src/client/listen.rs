//! `switchboard listen`: a long-lived WebSocket session that prints what arrives and
//! resumes after a disconnect from the last seq it saw, so nothing is missed or repeated.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use switchboard_protocol::{ClientFrame, ErrorCode, ServerFrame};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{Connection, format};
use crate::cli::{ClientArgs, ListenArgs};

/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub async fn listen(args: ClientArgs, listen: ListenArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&args)?;
    let token = connection.token;
    let url = connection.http.ws_url();
    // conversation id -> last seq printed; sent as `since` when resuming.
    let mut last: BTreeMap<i64, i64> = BTreeMap::new();
    let mut backoff = Duration::from_millis(500);
    let mut first = true;
    loop {
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            outcome = session(&url, &token, &mut last, first, listen.json) => outcome,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match outcome {
            Ok(End::Fatal(e)) => return Err(e),
            Ok(End::Closed(why)) => eprintln!("disconnected: {why}"),
            Err(e) if first => return Err(e),
            Err(e) => eprintln!("disconnected: {e:#}"),
        }
        first = false;
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        let wait = backoff + jitter(backoff / 2);
        eprintln!("reconnecting in {:.1}s", wait.as_secs_f64());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    max.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

enum End {
    /// The connection ended; try again.
    Closed(String),
    /// Retrying cannot help (e.g. the token was refused).
    Fatal(anyhow::Error),
}

async fn session(
    url: &str,
    token: &str,
    last: &mut BTreeMap<i64, i64>,
    first: bool,
    json: bool,
) -> anyhow::Result<End> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let since = (!first).then(|| last.clone());
    let auth = ClientFrame::Auth { id: None, token: token.to_owned(), since, echo: None };
    ws.send(WsMessage::text(serde_json::to_string(&auth)?)).await?;
    let list = ClientFrame::ListConversations { id: Some("listen".into()) };
    ws.send(WsMessage::text(serde_json::to_string(&list)?)).await?;
    let mut me = String::new();
    while let Some(frame) = ws.next().await {
        let text = match frame? {
            WsMessage::Text(text) => text,
            WsMessage::Close(close) => {
                return Ok(End::Closed(close.map(|c| c.reason.to_string()).unwrap_or_default()));
            }
            _ => continue,
        };
        let frame: ServerFrame = match serde_json::from_str(&text) {
            Ok(frame) => frame,
            Err(_) => continue,
        };
        if json {
            println!("{text}");
        }
        match frame {
            ServerFrame::Welcome { user, .. } => {
                if !json && first {
                    eprintln!("Listening as {} (Ctrl-C to stop)", user.username);
                }
                me = user.username;
            }
            ServerFrame::Conversations { conversations, .. } => {
                for c in &conversations {
                    last.entry(c.id).or_insert(c.last_seq);
                }
                let users: BTreeSet<String> = conversations
                    .into_iter()
                    .flat_map(|c| c.members)
                    .filter(|u| *u != me)
                    .collect();
                if !users.is_empty() {
                    let watch = ClientFrame::Watch { id: None, users: users.into_iter().collect() };
                    ws.send(WsMessage::text(serde_json::to_string(&watch)?)).await?;
                }
            }
            ServerFrame::Message { message } => {
                last.insert(message.conversation_id, message.seq);
                if !json {
                    println!("{}", format::message_line(&message));
                }
            }
            ServerFrame::Presence { presence } if !json => {
                println!("* {}", format::presence_line(&presence));
            }
            ServerFrame::PresenceList { presences, .. } if !json && first => {
                for presence in &presences {
                    println!("* {}", format::presence_line(presence));
                }
            }
            ServerFrame::Typing { conversation_id, user } if !json => {
                println!("#{conversation_id} {user} is typing...");
            }
            ServerFrame::Error { code: ErrorCode::Unauthenticated, message, .. } => {
                return Ok(End::Fatal(anyhow::anyhow!(
                    "{message}: sign in again with `switchboard login`"
                )));
            }
            ServerFrame::Error { code, message, .. } if !json => {
                eprintln!("server: {message} ({code})");
            }
            _ => {}
        }
    }
    Ok(End::Closed("connection lost".into()))
}
