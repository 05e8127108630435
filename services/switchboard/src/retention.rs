//! Admin commands for history: `retention show|set` and `hold add|remove|list`, through
//! a running server with an admin's login (the REST endpoints under `/api/v1/admin`).

use hyper::Method;
use switchboard_protocol::rest::{
    HoldRequest, HoldsResponse, LegalHold, RetentionPolicies, RetentionPolicy,
};

use crate::cli::{ClientArgs, HoldCommand, RetentionCommand};
use crate::client::Connection;
use crate::client::format::utc;

fn keep(days: Option<i64>) -> String {
    match days {
        Some(1) => "delete messages older than 1 day".into(),
        Some(days) => format!("delete messages older than {days} days"),
        None => "keep forever".into(),
    }
}

pub async fn retention(args: ClientArgs, command: RetentionCommand) -> anyhow::Result<()> {
    let connection = Connection::resolve(&args)?;
    match command {
        RetentionCommand::Show { json } => {
            let list: RetentionPolicies = connection.http.get("/api/v1/admin/retention").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let default = list.policies.iter().find(|p| p.conversation_id.is_none());
            println!("default: {}", keep(default.and_then(|p| p.keep_days)));
            for p in list.policies.iter().filter(|p| p.conversation_id.is_some()) {
                println!(
                    "conversation {}: {}",
                    p.conversation_id.unwrap_or_default(),
                    keep(p.keep_days)
                );
            }
        }
        RetentionCommand::Set(set) => {
            if set.inherit {
                let scope = set.conversation.map_or("default".to_owned(), |id| id.to_string());
                let path = format!("/api/v1/admin/retention/{scope}");
                connection.http.call::<()>(Method::DELETE, &path, None).await?;
                match set.conversation {
                    Some(id) => println!("conversation {id}: follows the default"),
                    None => println!("default: keep forever (no default policy)"),
                }
                return Ok(());
            }
            let policy = RetentionPolicy {
                conversation_id: set.conversation,
                keep_days: if set.keep_forever { None } else { set.keep_days },
            };
            let set: RetentionPolicy = connection
                .http
                .exchange(Method::PUT, "/api/v1/admin/retention", Some(&policy))
                .await?;
            match set.conversation_id {
                Some(id) => println!("conversation {id}: {}", keep(set.keep_days)),
                None => println!("default: {}", keep(set.keep_days)),
            }
        }
    }
    Ok(())
}

fn hold_line(h: &LegalHold) -> String {
    let what = match (&h.user, h.conversation_id) {
        (Some(user), _) => format!("user {user}"),
        (None, Some(id)) => format!("conversation {id}"),
        (None, None) => "?".into(),
    };
    let reason = if h.reason.is_empty() { String::new() } else { format!(" - {}", h.reason) };
    format!("{} {what} (by {}, {}){reason}", h.id, h.created_by, utc(h.created_at))
}

pub async fn hold(args: ClientArgs, command: HoldCommand) -> anyhow::Result<()> {
    let connection = Connection::resolve(&args)?;
    match command {
        HoldCommand::Add(add) => {
            let request = HoldRequest {
                user: add.user,
                conversation_id: add.conversation,
                reason: add.reason,
            };
            let hold: LegalHold = connection.http.post("/api/v1/admin/holds", &request).await?;
            println!("{}", hold_line(&hold));
        }
        HoldCommand::Remove { id } => {
            let path = format!("/api/v1/admin/holds/{id}");
            connection.http.call::<()>(Method::DELETE, &path, None).await?;
            println!("Lifted hold {id}");
        }
        HoldCommand::List { json } => {
            let list: HoldsResponse = connection.http.get("/api/v1/admin/holds").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            for h in &list.holds {
                println!("{}", hold_line(h));
            }
        }
    }
    Ok(())
}
