//! `switchboard search`: message search over the caller's conversations.

use std::io::IsTerminal;

use switchboard_protocol::SearchHit;
use switchboard_protocol::rest::SearchResponse;

use super::{Connection, format};
use crate::cli::{ClientArgs, SearchArgs};
use crate::org::url_encode;

pub async fn search(args: ClientArgs, search: SearchArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&args)?;
    let mut path = format!(
        "/api/v1/search?q={}&limit={}&offset={}",
        url_encode(&search.query.join(" ")),
        search.limit,
        search.offset
    );
    let optional = [
        ("from", &search.from),
        ("in", &search.in_conversation),
        ("before", &search.before),
        ("after", &search.after),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            path.push_str(&format!("&{name}={}", url_encode(value)));
        }
    }
    if search.recent {
        path.push_str("&sort=recent");
    }
    let answer: SearchResponse = connection.http.get(&path).await?;
    let bold = std::io::stdout().is_terminal();
    for hit in &answer.results {
        if search.json {
            println!("{}", serde_json::to_string(hit)?);
        } else {
            println!("{}", hit_line(hit, bold));
        }
    }
    if !search.json && answer.results.is_empty() {
        println!("(nothing found)");
    }
    if answer.has_more {
        let next = search.offset + answer.results.len() as u32;
        eprintln!("(more results: add --offset {next})");
    }
    Ok(())
}

/// `[time] #conversation sender: excerpt`, the matches in bold on a terminal.
fn hit_line(hit: &SearchHit, bold: bool) -> String {
    let excerpt: String = hit
        .highlight
        .iter()
        .enumerate()
        .map(|(i, piece)| match (i % 2 == 1, bold) {
            (true, true) => format!("\x1b[1m{piece}\x1b[0m"),
            _ => piece.clone(),
        })
        .collect();
    let m = &hit.message;
    let who = m.author.as_deref().unwrap_or(&m.sender);
    // One line per hit, whatever the message's line breaks.
    let excerpt = excerpt.replace(['\n', '\r'], " ");
    format!("[{}] #{}:{} {who}: {excerpt}", format::utc(m.ts), m.conversation_id, m.seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::{Message, MessageKind};

    #[test]
    fn hits_print_on_one_line_with_the_matches_marked() {
        let hit = SearchHit {
            message: Message {
                conversation_id: 12,
                seq: 4,
                sender: "alice".into(),
                kind: MessageKind::Text,
                body: "the budget\nis late".into(),
                client_msg_id: None,
                ts: 0,
                author: None,
                ref_seq: None,
                edited_at: None,
                deleted: false,
                thread_seq: None,
                reply_count: 0,
                reactions: Vec::new(),
                attachments: Vec::new(),
            },
            highlight: vec!["the ".into(), "budget".into(), "\nis late".into()],
        };
        assert_eq!(hit_line(&hit, false), "[1970-01-01 00:00:00] #12:4 alice: the budget is late");
        assert!(hit_line(&hit, true).contains("\x1b[1mbudget\x1b[0m"));
    }
}
