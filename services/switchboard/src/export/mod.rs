//! `switchboard export`: the compliance export, page by page from
//! `GET /api/v1/admin/export` into a directory, as JSON lines, CSV or `.eml` files, with
//! progress on stderr. Resumable: `export-state.json` in the directory holds the
//! settings, the cursor after the last page written completely, and how much was
//! written; running the same command again continues from there (see `write.rs` for why
//! that never leaves half a record or a duplicate). The layout is in
//! docs/operations.md.

mod eml;
mod progress;
mod write;

use std::fs;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use switchboard_protocol::rest::ExportResponse;
use switchboard_protocol::time::days_from_civil;

use crate::cli::{ClientArgs, ExportArgs};
use crate::client::{Connection, retryable};
use crate::org::url_encode;

pub const STATE_FILE: &str = "export-state.json";
const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line (messages.jsonl)
    Jsonl,
    /// RFC 4180 CSV with a header row (messages.csv)
    Csv,
    /// One RFC 5322 mail file per message and per edit (conversation-ID/SEQ.eml)
    Eml,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Eml => "eml",
        }
    }
}

/// What an export is of and how it is written: a resumed run must match it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Settings {
    from: i64,
    to: i64,
    conversations: Vec<i64>,
    users: Vec<String>,
    format: Format,
    mail_domain: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    version: u32,
    settings: Settings,
    /// The cursor after the last page written completely; None before the first.
    after: Option<String>,
    /// Messages written completely.
    written: u64,
    /// Length of messages.jsonl / messages.csv after the last complete page.
    length: u64,
    complete: bool,
}

pub async fn run(client: ClientArgs, args: ExportArgs) -> anyhow::Result<()> {
    let from = parse_date(&args.from, false)?;
    let to = parse_date(&args.to, true)?;
    if from >= to {
        bail!("--from must be before --to");
    }
    let mut conversations = args.conversations.clone();
    conversations.sort_unstable();
    conversations.dedup();
    let mut users = args.users.clone();
    users.sort();
    users.dedup();
    let settings = Settings {
        from,
        to,
        conversations,
        users,
        format: args.format,
        mail_domain: args.mail_domain,
    };
    let connection = Connection::resolve(&client)?;
    let dir = args.out.as_path();
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut state = prepare(dir, settings, args.restart)?;
    let settings = state.settings.clone();
    if state.complete {
        println!(
            "The export in {} is complete ({} messages); add --restart to export again",
            dir.display(),
            state.written
        );
        return Ok(());
    }
    let resuming = state.after.is_some();
    if resuming {
        eprintln!("Resuming the export in {} after {} messages", dir.display(), state.written);
    }
    let mut progress = None;
    let mut pages = 0u64;
    loop {
        let first = progress.is_none();
        let path = page_path(&settings, state.after.as_deref(), args.page_size, first, resuming);
        let page = fetch(&connection, &path).await?;
        let progress = progress.get_or_insert_with(|| {
            progress::Progress::new(state.written, page.total.map(|t| t.max(0) as u64))
        });
        state.length =
            write::page(dir, settings.format, &settings.mail_domain, &page.records, state.length)?;
        state.written += page.records.len() as u64;
        state.complete = page.next_after.is_none();
        state.after = page.next_after;
        save(dir, &state)?;
        pages += 1;
        if state.complete {
            progress.finish(state.written);
            break;
        }
        progress.update(state.written);
        if args.stop_after_pages.is_some_and(|n| pages >= n) {
            progress.finish(state.written);
            eprintln!("Stopped after {pages} pages; run the same command again to resume");
            return Ok(());
        }
    }
    println!(
        "Exported {} messages to {} ({})",
        state.written,
        dir.display(),
        settings.format.name()
    );
    Ok(())
}

fn page_path(
    settings: &Settings,
    after: Option<&str>,
    limit: u32,
    first: bool,
    resuming: bool,
) -> String {
    let mut path = format!(
        "/api/v1/admin/export?from={}&to={}&limit={limit}&format={}",
        settings.from,
        settings.to,
        settings.format.name()
    );
    if !settings.conversations.is_empty() {
        let ids: Vec<String> = settings.conversations.iter().map(i64::to_string).collect();
        path.push_str(&format!("&conversations={}", url_encode(&ids.join(","))));
    }
    if !settings.users.is_empty() {
        path.push_str(&format!("&users={}", url_encode(&settings.users.join(","))));
    }
    if let Some(after) = after {
        path.push_str(&format!("&after={}", url_encode(after)));
    }
    if first {
        path.push_str("&count=true");
        if resuming {
            path.push_str("&resume=true");
        }
    }
    path
}

/// One page, retried (five attempts in all) while the server is unreachable or busy:
/// reading a page twice changes nothing.
async fn fetch(connection: &Connection, path: &str) -> anyhow::Result<ExportResponse> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match connection.http.get(path).await {
            Ok(page) => return Ok(page),
            Err(e) if attempt < 5 && retryable(&e) => {
                eprintln!("warning: {e:#}; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The state to continue from: the directory's own when its settings match (leftovers of
/// an interrupted page cleaned up), else a fresh one; refuses to mix two exports or to
/// write into a directory holding something else.
fn prepare(dir: &Path, settings: Settings, restart: bool) -> anyhow::Result<State> {
    let path = dir.join(STATE_FILE);
    let fresh = |settings| State {
        version: STATE_VERSION,
        settings,
        after: None,
        written: 0,
        length: 0,
        complete: false,
    };
    if !path.exists() {
        if fs::read_dir(dir)?.next().is_some() {
            bail!(
                "{} is not empty and holds no export; choose a new or empty directory",
                dir.display()
            );
        }
        let state = fresh(settings);
        save(dir, &state)?;
        return Ok(state);
    }
    let text = fs::read_to_string(&path)?;
    let old: State = serde_json::from_str(&text).with_context(|| {
        format!("{} is damaged; remove the directory to start over", path.display())
    })?;
    if restart {
        remove_export(dir)?;
        let state = fresh(settings);
        save(dir, &state)?;
        return Ok(state);
    }
    if old.version != STATE_VERSION || old.settings != settings {
        bail!(
            "{} holds an export with other settings ({}); run the same command to resume it, \
             or add --restart to discard it and start this one",
            dir.display(),
            describe(&old.settings)
        );
    }
    remove_temporary(dir)?;
    Ok(old)
}

fn describe(s: &Settings) -> String {
    let time = switchboard_protocol::time::rfc3339;
    let mut text =
        format!("--from {} --to {} --format {}", time(s.from), time(s.to), s.format.name());
    for id in &s.conversations {
        text.push_str(&format!(" --conversation {id}"));
    }
    for user in &s.users {
        text.push_str(&format!(" --user {user}"));
    }
    text
}

fn save(dir: &Path, state: &State) -> anyhow::Result<()> {
    write::write_atomically(&dir.join(STATE_FILE), &serde_json::to_string_pretty(state)?)?;
    write::sync_dir(dir)
}

/// Removes what an export writes (and only that) from `dir`.
fn remove_export(dir: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(write::EML_DIR_PREFIX) && entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else if [write::JSONL_FILE, write::CSV_FILE, STATE_FILE].contains(&name.as_str()) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Temporary files an interrupted run left (never renamed into place: not written).
fn remove_temporary(dir: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(write::EML_DIR_PREFIX) && entry.file_type()?.is_dir() {
            remove_temporary(&entry.path())?;
        } else if name.ends_with(".tmp") {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// A `--from`/`--to` value in ms: a day `YYYY-MM-DD` (UTC; as `--to` it includes that
/// whole day) or an RFC 3339 time (`2026-12-01T14:30:00Z`, `...+02:00`, fractions).
pub fn parse_date(text: &str, end: bool) -> anyhow::Result<i64> {
    let bad = || {
        anyhow::anyhow!(
            "cannot read the date {text:?}: use YYYY-MM-DD (UTC) or an RFC 3339 time such as \
             2026-12-01T14:30:00Z or 2026-12-01T15:30:00+01:00"
        )
    };
    let text = text.trim();
    let number = |s: &str| -> anyhow::Result<i64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts[..] else { return Err(bad()) };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (y, m, d) = (number(y)?, number(m)?, number(d)?);
    let days_in_month =
        days_from_civil(y + i64::from(m == 12), m % 12 + 1, 1) - days_from_civil(y, m, 1);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month {
        return Err(bad());
    }
    let day = days_from_civil(y, m, d) * 86_400_000;
    let Some(time) = time else {
        return Ok(if end { day + 86_400_000 } else { day });
    };
    // HH:MM:SS[.fraction] then Z or ±HH:MM.
    let zone_at = time.find(['Z', 'z', '+', '-']).ok_or_else(bad)?;
    let (clock, zone) = time.split_at(zone_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let hms: Vec<&str> = hms.split(':').collect();
    let [h, min, s] = hms[..] else { return Err(bad()) };
    if [h, min, s].iter().any(|p| p.len() != 2) {
        return Err(bad());
    }
    let (h, min, s) = (number(h)?, number(min)?, number(s)?);
    if h > 23 || min > 59 || s > 60 {
        return Err(bad());
    }
    let millis = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().chain("00".chars()).take(3).collect();
        number(fraction)?;
        number(&digits)?
    };
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let (sign, rest) = zone.split_at(1);
            let [oh, om] = rest.split(':').collect::<Vec<_>>()[..] else { return Err(bad()) };
            if oh.len() != 2 || om.len() != 2 {
                return Err(bad());
            }
            let minutes = number(oh)? * 60 + number(om)?;
            if sign == "-" { -minutes } else { minutes }
        }
    };
    Ok(day + ((h * 60 + min - offset) * 60 + s) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::parse_date;

    #[test]
    fn dates_are_days_or_rfc3339_times() {
        let day = 1_795_564_800_000; // 2026-11-25T00:00:00Z
        assert_eq!(parse_date("2026-11-25", false).ok(), Some(day));
        assert_eq!(parse_date("2026-11-25", true).ok(), Some(day + 86_400_000));
        assert_eq!(parse_date("2026-11-25T12:00:00Z", true).ok(), Some(day + 43_200_000));
        assert_eq!(parse_date("2026-11-25T13:00:00.5+01:00", false).ok(), Some(day + 43_200_500));
        assert_eq!(parse_date("2026-11-24T23:30:00-00:30", false).ok(), Some(day));
        for bad in
            ["2026-02-30", "2026-11-25T12:00Z", "yesterday", "2026-11-25T12:00:00", "26-11-25"]
        {
            assert!(parse_date(bad, false).is_err(), "{bad}");
        }
    }
}
