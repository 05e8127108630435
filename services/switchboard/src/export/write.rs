//! Writing export pages to the export directory so that an interruption leaves nothing
//! half done: JSON lines and CSV are appended to one file whose length after each
//! complete page is saved in the state file (a resumed export first cuts the file back
//! to it); each `.eml` file is written under a temporary name and renamed. Everything a
//! page wrote is flushed to disk before the state file says it is done.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use switchboard_protocol::rest::ExportRecord;
use switchboard_protocol::time::rfc3339;

use super::Format;
use super::eml;

pub const JSONL_FILE: &str = "messages.jsonl";
pub const CSV_FILE: &str = "messages.csv";
/// Directories of `.eml` files are named this and the conversation id.
pub const EML_DIR_PREFIX: &str = "conversation-";

const CSV_COLUMNS: [&str; 19] = [
    "conversation_id",
    "conversation_kind",
    "conversation_name",
    "conversation_members",
    "seq",
    "kind",
    "created_at",
    "sender",
    "sender_name",
    "author",
    "thread_seq",
    "body",
    "original_body",
    "edited_at",
    "edits",
    "deleted_at",
    "deleted_by",
    "reactions",
    "other",
];

/// Fields of the message that have CSV columns of their own (or say nothing of it).
const MESSAGE_COLUMNS: [&str; 14] = [
    "conversation_id",
    "seq",
    "sender",
    "kind",
    "body",
    "client_msg_id",
    "ts",
    "author",
    "ref_seq",
    "edited_at",
    "deleted",
    "thread_seq",
    "reply_count",
    "reactions",
];

/// Writes `records` into `dir` in `format`. For JSON lines and CSV, `length` is the data
/// file's length after the last complete page: it is cut back to that first (dropping
/// whatever an interrupted run wrote after it), and the new length is returned.
pub fn page(
    dir: &Path,
    format: Format,
    domain: &str,
    records: &[ExportRecord],
    length: u64,
) -> anyhow::Result<u64> {
    match format {
        Format::Jsonl => {
            let mut text = String::new();
            for record in records {
                text.push_str(&serde_json::to_string(record)?);
                text.push('\n');
            }
            append(&dir.join(JSONL_FILE), length, "", &text)
        }
        Format::Csv => {
            let mut text = String::new();
            for record in records {
                csv_row(&mut text, &csv_fields(record)?);
            }
            let mut header = String::new();
            csv_row(&mut header, &CSV_COLUMNS.map(str::to_owned));
            append(&dir.join(CSV_FILE), length, &header, &text)
        }
        Format::Eml => {
            let mut dirs = Vec::new();
            for record in records {
                let conversation = dir.join(format!("{EML_DIR_PREFIX}{}", record.conversation.id));
                if !dirs.contains(&conversation) {
                    fs::create_dir_all(&conversation)?;
                    dirs.push(conversation.clone());
                }
                let seq = record.message.seq;
                let file = conversation.join(format!("{seq:08}.eml"));
                write_atomically(&file, &eml::message(record, domain))?;
                for edit in &record.edits {
                    let file = conversation.join(format!("{seq:08}-edit-{:08}.eml", edit.seq));
                    write_atomically(&file, &eml::edit(record, edit, domain))?;
                }
            }
            dirs.push(dir.to_owned());
            for d in &dirs {
                sync_dir(d)?;
            }
            Ok(0)
        }
    }
}

/// Cuts `path` back to `length` (a new file gets `header` first), appends `text` and
/// flushes it to disk; returns the new length.
fn append(path: &Path, length: u64, header: &str, text: &str) -> anyhow::Result<u64> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.set_len(length)?;
    let mut file = std::io::BufWriter::new(file);
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(length))?;
    if length == 0 {
        file.write_all(header.as_bytes())?;
    }
    file.write_all(text.as_bytes())?;
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_data().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(file.metadata()?.len())
}

/// Writes `path` whole or not at all: a temporary file, flushed, then renamed.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = temporary(path);
    let mut file = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename {}", tmp.display()))?;
    Ok(())
}

pub fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all().with_context(|| format!("cannot sync {}", dir.display()))
}

fn csv_fields(r: &ExportRecord) -> anyhow::Result<Vec<String>> {
    let m = &r.message;
    let time = |t: Option<i64>| t.map(rfc3339).unwrap_or_default();
    let json_list = |empty: bool, value: serde_json::Result<String>| -> anyhow::Result<String> {
        Ok(if empty { String::new() } else { value? })
    };
    // Whatever else the message carries (fields added after this was written) goes to
    // `other`, as JSON, so nothing is left out.
    let mut other = match serde_json::to_value(m)? {
        serde_json::Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    };
    other.retain(|key, _| !MESSAGE_COLUMNS.contains(&key.as_str()));
    Ok(vec![
        r.conversation.id.to_string(),
        r.conversation.kind.as_str().to_owned(),
        r.conversation.name.clone(),
        r.conversation.members.join(" "),
        m.seq.to_string(),
        m.kind.as_str().to_owned(),
        rfc3339(m.ts),
        m.sender.clone(),
        r.sender_name.clone(),
        m.author.clone().unwrap_or_default(),
        m.thread_seq.map(|s| s.to_string()).unwrap_or_default(),
        m.body.clone(),
        r.original_body.clone().unwrap_or_default(),
        time(m.edited_at),
        json_list(r.edits.is_empty(), serde_json::to_string(&r.edits))?,
        time(r.deleted_at),
        r.deleted_by.clone().unwrap_or_default(),
        json_list(r.reactions.is_empty(), serde_json::to_string(&r.reactions))?,
        if other.is_empty() { String::new() } else { serde_json::to_string(&other)? },
    ])
}

/// One RFC 4180 record: fields with a comma, quote, CR or LF are quoted (quotes
/// doubled); CRLF at the end.
fn csv_row(out: &mut String, fields: &[String]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::csv_row;

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut out = String::new();
        let fields = ["plain", "a,b", "say \"hi\"", "two\nlines", ""].map(str::to_owned);
        csv_row(&mut out, &fields);
        assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
    }
}
