//! Admin commands that work on a data dir directly or through a running server:
//! `user add`, `user set` (role, disabled) and `audit` (the audit log).

use std::sync::Arc;

use anyhow::{Context, bail};
use hyper::Method;
use switchboard_gateway::{AuditEvent, Config, Gateway, LOCAL_ACTOR};
use switchboard_protocol::UserInfo;
use switchboard_protocol::rest::{
    AuditEntry, AuditResponse, CreateUserRequest, UpdateUserRequest, UserFlags,
};
use switchboard_protocol::time::days_from_civil;
use switchboard_storage::{PgStore, SqliteStore, Store, now_ms};

use crate::cli::{AuditArgs, ClientArgs, UserAddArgs, UserSetArgs};
use crate::client::format::utc;
use crate::client::{Connection, read_password};
use crate::org::url_encode;

pub async fn user_add(client: ClientArgs, args: UserAddArgs) -> anyhow::Result<()> {
    let password = read_password(args.password_stdin, &format!("Password for {}: ", args.name))?;
    let store: Arc<dyn Store> = if let Some(url) = &args.database {
        Arc::new(PgStore::connect(url).await.context("cannot open the PostgreSQL database")?)
    } else if let Some(data_dir) = &args.data_dir {
        Arc::new(
            SqliteStore::open(data_dir)
                .await
                .with_context(|| format!("cannot open the database in {}", data_dir.display()))?,
        )
    } else {
        let connection = Connection::resolve(&client).context(
            "say where to create the account: --data-dir DIR, --database URL, or --server URL \
             with an admin's login",
        )?;
        let request = CreateUserRequest {
            username: args.name,
            password,
            display_name: args.display_name,
            org: args.org,
            admin: args.admin,
        };
        let user: UserInfo = connection.http.post("/api/v1/users", &request).await?;
        println!("Created {}{}", user.username, if user.admin { " (admin)" } else { "" });
        return Ok(());
    };
    let gateway = Gateway::new(store, Config::default());
    let user = gateway
        .create_user(None, &args.name, password, &args.display_name, &args.org, args.admin)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.0.message))?;
    gateway.audit(AuditEvent {
        actor: LOCAL_ACTOR,
        action: "user.create",
        target: &user.username,
        ip: None,
        detail: if user.admin { "admin (local command)" } else { "local command" },
    });
    gateway.flush_audit().await;
    println!("Created {}{}", user.username, if user.admin { " (admin)" } else { "" });
    Ok(())
}

/// `switchboard user set NAME --admin BOOL --disabled BOOL`, through the server.
pub async fn user_set(client: ClientArgs, args: UserSetArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&client)?;
    let request = UpdateUserRequest { admin: args.admin, disabled: args.disabled };
    let path = format!("/api/v1/admin/users/{}", url_encode(&args.name));
    let flags: UserFlags = connection.http.exchange(Method::PUT, &path, Some(&request)).await?;
    println!(
        "{}: {}{}",
        flags.username,
        if flags.admin { "admin" } else { "not an admin" },
        if flags.disabled { ", disabled" } else { ", enabled" }
    );
    Ok(())
}

/// `switchboard audit`: one page of the audit log, newest first.
pub async fn audit(client: ClientArgs, args: AuditArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&client)?;
    let now = now_ms();
    let mut path = format!("/api/v1/admin/audit?limit={}", args.limit);
    for (name, value) in [("actor", &args.actor), ("action", &args.action)] {
        if let Some(value) = value {
            path.push_str(&format!("&{name}={}", url_encode(value)));
        }
    }
    for (name, value) in [("since", &args.since), ("until", &args.until)] {
        if let Some(value) = value {
            path.push_str(&format!("&{name}={}", parse_time(value, now)?));
        }
    }
    if let Some(before) = args.before {
        path.push_str(&format!("&before={before}"));
    }
    let answer: AuditResponse = connection.http.get(&path).await?;
    for entry in &answer.entries {
        if args.json {
            println!("{}", serde_json::to_string(entry)?);
        } else {
            println!("{}", entry_line(entry));
        }
    }
    if !args.json && answer.entries.is_empty() {
        println!("(no entries)");
    }
    if let Some(next) = answer.next_before {
        eprintln!("(older entries: add --before {next})");
    }
    Ok(())
}

/// `TIME  actor  action  target  ip  detail`, with `-` for empty columns.
fn entry_line(e: &AuditEntry) -> String {
    let or_dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
    format!(
        "{}  {:<16} {:<20} {:<20} {:<15} {}",
        utc(e.ts),
        e.actor,
        e.action,
        or_dash(&e.target),
        or_dash(&e.ip),
        e.detail
    )
    .trim_end()
    .to_owned()
}

/// A time for `--since`/`--until`, in ms since the epoch: an age (`30m`, `12h`, `7d`,
/// before `now`), ms since the epoch, or a UTC date `YYYY-MM-DD[THH:MM[:SS]][Z]`.
pub fn parse_time(text: &str, now: i64) -> anyhow::Result<i64> {
    let text = text.trim();
    let unit = |c: char| match c {
        's' => Some(1_000),
        'm' => Some(60_000),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        _ => None,
    };
    if let Some(last) = text.chars().last()
        && let Some(ms) = unit(last)
        && let Ok(n) = text[..text.len() - 1].parse::<i64>()
    {
        return Ok(now - n * ms);
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow::anyhow!(
            "cannot read the time {text:?}: use 2026-12-01, 2026-12-01T14:30[:05][Z], \
             milliseconds since the epoch, or an age such as 30m, 12h, 7d"
        )
    };
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, ""));
    let mut d = date.split('-').map(|p| p.parse::<i64>().map_err(|_| bad()));
    let (Some(y), Some(m), Some(day), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad());
    };
    let (y, m, day) = (y?, m?, day?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let mut secs = 0;
    if !time.is_empty() {
        let parts: Vec<i64> = time
            .split(':')
            .map(|p| p.parse::<i64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let (h, min, s) = match parts[..] {
            [h, min] => (h, min, 0),
            [h, min, s] => (h, min, s),
            _ => bail!(bad()),
        };
        if h > 23 || min > 59 || s > 60 {
            return Err(bad());
        }
        secs = h * 3600 + min * 60 + s;
    }
    Ok((days_from_civil(y, m, day) * 86_400 + secs) * 1000)
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_read_as_dates_ages_and_milliseconds() {
        let now = 1_764_547_200_000; // 2025-12-01T00:00:00Z
        assert_eq!(parse_time("2025-12-01", now).ok(), Some(now));
        assert_eq!(parse_time("2025-12-01T01:02:03Z", now).ok(), Some(now + 3_723_000));
        assert_eq!(parse_time("2025-12-01T01:02", now).ok(), Some(now + 3_720_000));
        assert_eq!(parse_time("2024-02-29", now).ok(), Some(1_709_164_800_000));
        assert_eq!(parse_time("30m", now).ok(), Some(now - 1_800_000));
        assert_eq!(parse_time("7d", now).ok(), Some(now - 7 * 86_400_000));
        assert_eq!(parse_time("12345", now).ok(), Some(12345));
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("2025-13-01", now).is_err());
    }
}
