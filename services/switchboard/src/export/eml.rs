//! Exported messages as RFC 5322 mail files: one for each message, one for each of its
//! edits (a reply to it). Headers that are not plain short ASCII are RFC 2047 encoded
//! words; bodies are UTF-8 text, 8-bit when every line is short, else quoted-printable.
//! No mail library: this is the little of the RFCs that plain text needs.

use switchboard_protocol::rest::{ExportEdit, ExportRecord};
use switchboard_protocol::time::civil_from_days;
use switchboard_protocol::{ConversationKind, MessageKind};

/// Longest line an 8-bit body may keep (RFC 5322 allows 998 octets); longer lines make
/// the body quoted-printable.
const MAX_8BIT_LINE: usize = 900;

/// The file of `record`'s message: its text as first sent, dated when it was sent.
pub fn message(record: &ExportRecord, domain: &str) -> String {
    let m = &record.message;
    let text = record.original_body.as_deref().unwrap_or(&m.body);
    let mut mail = Mail::default();
    mail.address("From", &record.sender_name, &m.sender, domain);
    recipients(&mut mail, record, domain);
    mail.raw("Date", &date(m.ts));
    mail.raw("Message-ID", &message_id(record.conversation.id, m.seq, domain));
    if let Some(root) = m.thread_seq {
        let root = message_id(record.conversation.id, root, domain);
        mail.raw("In-Reply-To", &root);
        mail.raw("References", &root);
    }
    mail.text("Subject", &subject("", text));
    mail.raw("X-Switchboard-Conversation", &record.conversation.id.to_string());
    mail.raw("X-Switchboard-Seq", &m.seq.to_string());
    mail.raw("X-Switchboard-Kind", m.kind.as_str());
    if let Some(author) = &m.author {
        mail.text("X-Switchboard-Author", author);
    }
    if let Some(edit) = record.edits.last() {
        mail.raw("X-Switchboard-Edited", &date(edit.edited_at));
    } else if let Some(at) = m.edited_at {
        mail.raw("X-Switchboard-Edited", &date(at));
    }
    if let Some(at) = record.deleted_at {
        let by = record.deleted_by.as_deref().unwrap_or("unknown");
        mail.text("X-Switchboard-Deleted", &format!("{} by {by}", date(at)));
    }
    if !record.reactions.is_empty() {
        let reactions: Vec<String> =
            record.reactions.iter().map(|r| format!("{} {}", r.emoji, r.users.join(" "))).collect();
        mail.text("X-Switchboard-Reactions", &reactions.join("; "));
    }
    mail.finish(text)
}

/// The file of one edit of `record`'s message: the new text, a reply to the message.
pub fn edit(record: &ExportRecord, edit: &ExportEdit, domain: &str) -> String {
    let m = &record.message;
    let mut mail = Mail::default();
    let name = if edit.by == m.sender { record.sender_name.as_str() } else { "" };
    mail.address("From", name, &edit.by, domain);
    recipients(&mut mail, record, domain);
    mail.raw("Date", &date(edit.edited_at));
    mail.raw("Message-ID", &message_id(record.conversation.id, edit.seq, domain));
    let original = message_id(record.conversation.id, m.seq, domain);
    mail.raw("In-Reply-To", &original);
    mail.raw("References", &original);
    mail.text("Subject", &subject("Edit: ", &edit.body));
    mail.raw("X-Switchboard-Conversation", &record.conversation.id.to_string());
    mail.raw("X-Switchboard-Seq", &edit.seq.to_string());
    mail.raw("X-Switchboard-Kind", MessageKind::Edit.as_str());
    mail.raw("X-Switchboard-Edit-Of", &m.seq.to_string());
    mail.finish(&edit.body)
}

/// `To`: a direct conversation's other member (oneself for notes to self); a group as an
/// RFC 5322 group with its name and no addresses (`Ops:;`), since members change.
fn recipients(mail: &mut Mail, record: &ExportRecord, domain: &str) {
    let c = &record.conversation;
    if c.kind == ConversationKind::Group {
        let name =
            if c.name.is_empty() { format!("conversation {}", c.id) } else { c.name.clone() };
        mail.line(format!("To: {}:;", phrase(&name)));
        return;
    }
    let others: Vec<&String> = c.members.iter().filter(|u| **u != record.message.sender).collect();
    let to: Vec<String> = if others.is_empty() {
        vec![address(&record.message.sender, domain)]
    } else {
        others.iter().map(|u| address(u, domain)).collect()
    };
    mail.line(format!("To: {}", to.join(", ")));
}

fn message_id(conversation: i64, seq: i64, domain: &str) -> String {
    format!("<c{conversation}.s{seq}@{domain}>")
}

/// `prefix` and the text's first line, cut to 60 characters.
fn subject(prefix: &str, text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(no text)");
    let mut cut: String = line.chars().take(60).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    format!("{prefix}{cut}")
}

/// RFC 5322 date, in UTC: `Tue, 01 Dec 2026 05:13:19 +0000`.
pub fn date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (days, secs) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000) / 1000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `user@domain`, the local part quoted when the username is not a dot-atom.
fn address(user: &str, domain: &str) -> String {
    let atom = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
    };
    if user.split('.').all(atom) {
        format!("<{user}@{domain}>")
    } else {
        format!("<\"{}\"@{domain}>", user.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A display name: a quoted string when ASCII, else encoded words.
fn phrase(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    if name.is_ascii() {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        encoded_words(&name)
    }
}

/// RFC 2047 `=?UTF-8?B?...?=` words of at most 75 characters, split between characters,
/// folded onto continuation lines.
fn encoded_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Quoted-printable (RFC 2045) of `text`, lines ending in CRLF, at most 76 characters.
fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for line in text.split('\n') {
        let bytes = line.as_bytes();
        let mut width = 0;
        for (i, b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let literal = matches!(b, 33..=60 | 62..=126) || (matches!(b, b' ' | b'\t') && !last);
            let piece = if literal { (*b as char).to_string() } else { format!("={b:02X}") };
            if width + piece.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += piece.len();
            out.push_str(&piece);
        }
        out.push_str("\r\n");
    }
    out
}

/// A mail being built: header lines, then the body.
#[derive(Default)]
struct Mail {
    head: String,
}

impl Mail {
    fn line(&mut self, line: String) {
        self.head.push_str(&line);
        self.head.push_str("\r\n");
    }

    /// A header whose value is ASCII we made (dates, ids, numbers).
    fn raw(&mut self, name: &str, value: &str) {
        self.line(format!("{name}: {value}"));
    }

    /// An unstructured header of any text: kept as it is when short printable ASCII,
    /// else encoded words.
    fn text(&mut self, name: &str, value: &str) {
        let plain = value.bytes().all(|b| (32..127).contains(&b)) && !value.contains("=?");
        if plain && name.len() + value.len() <= 76 {
            self.line(format!("{name}: {value}"));
        } else {
            self.line(format!("{name}: {}", encoded_words(value)));
        }
    }

    fn address(&mut self, name: &str, display: &str, user: &str, domain: &str) {
        let display = if display.is_empty() { user } else { display };
        self.line(format!("{name}: {} {}", phrase(display), address(user, domain)));
    }

    fn finish(mut self, body: &str) -> String {
        let body = body.replace("\r\n", "\n");
        let short = body.split('\n').all(|l| l.len() <= MAX_8BIT_LINE);
        let eight_bit = short && !body.contains(['\r', '\0']);
        self.raw("MIME-Version", "1.0");
        self.raw("Content-Type", "text/plain; charset=utf-8");
        if eight_bit {
            self.raw("Content-Transfer-Encoding", "8bit");
            let lines: Vec<&str> = body.split('\n').collect();
            format!("{}\r\n{}\r\n", self.head, lines.join("\r\n"))
        } else {
            self.raw("Content-Transfer-Encoding", "quoted-printable");
            format!("{}\r\n{}", self.head, quoted_printable(&body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_the_rfcs_say() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(encoded_words("Zoë"), "=?UTF-8?B?Wm/Dqw==?=");
        let long = encoded_words(&"é".repeat(40));
        assert!(long.split("\r\n ").all(|w| w.len() <= 75), "{long}");
        assert_eq!(long.split("\r\n ").count(), 2);
        assert_eq!(quoted_printable("a=b é \nx"), "a=3Db =C3=A9=20\r\nx\r\n");
        let wrapped = quoted_printable(&"x".repeat(200));
        assert!(wrapped.lines().all(|l| l.len() <= 76), "{wrapped}");
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(date(1_795_608_000_000), "Wed, 25 Nov 2026 12:00:00 +0000");
        assert_eq!(address("a.b-c", "x.invalid"), "<a.b-c@x.invalid>");
        assert_eq!(address("a..b", "x.invalid"), "<\"a..b\"@x.invalid>");
        assert_eq!(subject("", "\n  hello\nworld"), "hello");
    }
}
