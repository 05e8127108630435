//! How the CLI prints messages, presence and times for people.

use switchboard_protocol::time::civil_from_days;
use switchboard_protocol::{Message, MessageKind, Presence, PresenceStatus};

/// `YYYY-MM-DD HH:MM:SS` in UTC for a time in ms since the epoch.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub fn message_line(message: &Message) -> String {
    let when = utc(message.ts);
    let at = format!("#{}:{}", message.conversation_id, message.seq);
    let sender = &message.sender;
    match message.kind {
        MessageKind::Text if message.deleted => format!("[{when}] {at} {sender}: (deleted)"),
        MessageKind::Text => {
            let edited = if message.edited_at.is_some() { " (edited)" } else { "" };
            let reactions: String =
                message.reactions.iter().map(|r| format!(" [{} {}]", r.emoji, r.count)).collect();
            let thread = match (message.thread_seq, message.reply_count) {
                (Some(root), _) => format!(" (reply in thread {root})"),
                (None, 1) => " (1 reply)".to_owned(),
                (None, n) if n > 1 => format!(" ({n} replies)"),
                _ => String::new(),
            };
            let files: String = message
                .attachments
                .iter()
                .map(|f| {
                    format!(" [file {}: {} ({} bytes, {})]", f.id, f.name, f.size, f.content_type)
                })
                .collect();
            format!("[{when}] {at} {sender}: {}{edited}{files}{reactions}{thread}", message.body)
        }
        MessageKind::System => format!("[{when}] {at} * {}", message.body),
        MessageKind::Broadcast => {
            format!("[{when}] {at} ! broadcast from {sender}: {}", message.body)
        }
        MessageKind::Edit => {
            let of = message.ref_seq.unwrap_or_default();
            format!("[{when}] {at} * {sender} edited message {of}: {}", message.body)
        }
        MessageKind::Delete => {
            format!(
                "[{when}] {at} * {sender} deleted message {}",
                message.ref_seq.unwrap_or_default()
            )
        }
        MessageKind::React | MessageKind::Unreact => {
            let did = if message.kind == MessageKind::React { "reacted" } else { "took back" };
            let of = message.ref_seq.unwrap_or_default();
            format!("[{when}] {at} * {sender} {did} {} on message {of}", message.body)
        }
    }
}

pub fn presence_line(presence: &Presence) -> String {
    let status = match presence.status {
        PresenceStatus::DoNotDisturb => "do-not-disturb",
        other => other.as_str(),
    };
    if presence.text.is_empty() {
        format!("{:<20} {status}", presence.user)
    } else {
        format!("{:<20} {status:<15} {}", presence.user, presence.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        // 2026-11-25 12:00:00 UTC
        assert_eq!(utc(1_795_608_000_000), "2026-11-25 12:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
