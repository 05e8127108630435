//! Commands for organisations' own systems and their admins: `post` (scripts and bots),
//! `bot add`, `webhook add|revoke`, `directory import|search`, `broadcast [status]`.
//! Admin commands work through a running server, or (`bot add`, `directory import`) on
//! a data dir or database directly, like `user add`.

use std::sync::Arc;

use anyhow::Context;
use hyper::Method;
use switchboard_gateway::{AuditEvent, Config, Gateway, LOCAL_ACTOR, import_summary};
use switchboard_protocol::Broadcast;
use switchboard_protocol::rest::{
    BotCreated, BroadcastRequest, BroadcastStatus, CreateBotRequest, CreateWebhookRequest,
    ImportReport, SendRequest, UsersResponse, WebhookCreated,
};
use switchboard_storage::{PgStore, SqliteStore, Store};

use crate::cli::{
    BotAddArgs, BroadcastArgs, BroadcastCommand, ClientArgs, DirectTarget, DirectoryCommand,
    DirectoryImportArgs, PostArgs, WebhookCommand,
};
use crate::client::{Connection, client_msg_id, post_message, read_password, send_target};

/// The store named by `--data-dir` / `--database`, if either was given.
async fn direct_store(target: &DirectTarget) -> anyhow::Result<Option<Arc<dyn Store>>> {
    Ok(if let Some(url) = &target.database {
        Some(Arc::new(PgStore::connect(url).await.context("cannot open the PostgreSQL database")?))
    } else if let Some(dir) = &target.data_dir {
        Some(Arc::new(
            SqliteStore::open(dir)
                .await
                .with_context(|| format!("cannot open the database in {}", dir.display()))?,
        ))
    } else {
        None
    })
}

fn gateway_error(e: switchboard_gateway::ApiError) -> anyhow::Error {
    anyhow::Error::new(crate::client::ServerError { body: e.0 })
}

/// `switchboard post --to C TEXT`: one message, retried (same key) when the server is
/// unreachable or busy, so a cron job gets a definite answer.
pub async fn post(args: ClientArgs, post: PostArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&args)?;
    let (to, conversation_id) = send_target(&post.to);
    let request = SendRequest {
        to,
        conversation_id,
        body: post.text.join(" "),
        client_msg_id: Some(post.key.unwrap_or_else(client_msg_id)),
        kind: None,
        thread_seq: None,
    };
    let answer = post_message(&connection, &request).await?;
    println!("{} {}", answer.conversation_id, answer.seq);
    Ok(())
}

pub async fn bot_add(client: ClientArgs, args: BotAddArgs) -> anyhow::Result<()> {
    let created = match direct_store(&args.target).await? {
        Some(store) => {
            let gateway = Gateway::new(store, Config::default());
            let (user, token, expires_at) = gateway
                .create_bot(None, &args.name, &args.display_name)
                .await
                .map_err(gateway_error)?;
            gateway.audit(AuditEvent {
                actor: LOCAL_ACTOR,
                action: "bot.create",
                target: &user.username,
                ip: None,
                detail: "local command",
            });
            gateway.flush_audit().await;
            BotCreated { user: user.info(), token, expires_at }
        }
        None => {
            let connection = Connection::resolve(&client).context(
                "say where to create the bot: --data-dir DIR, --database URL, or --server URL \
                 with an admin's login",
            )?;
            let request = CreateBotRequest { username: args.name, display_name: args.display_name };
            connection.http.post("/api/v1/admin/bots", &request).await?
        }
    };
    eprintln!("Created bot {}. Its API token (shown once; keep it secret):", created.user.username);
    println!("{}", created.token);
    Ok(())
}

pub async fn webhook(client: ClientArgs, command: WebhookCommand) -> anyhow::Result<()> {
    let connection = Connection::resolve(&client)?;
    match command {
        WebhookCommand::Add { conversation, name } => {
            let created: WebhookCreated = connection
                .http
                .post(
                    &format!("/api/v1/conversations/{conversation}/webhooks"),
                    &CreateWebhookRequest { name },
                )
                .await?;
            eprintln!(
                "Created webhook {} for conversation {} (the URL is shown once; it is the \
                 secret, revoke with `switchboard webhook revoke {}`):",
                created.id, created.conversation_id, created.id
            );
            println!("{}{}", connection.http.base_url(), created.path);
        }
        WebhookCommand::Revoke { id } => {
            connection
                .http
                .call::<()>(Method::DELETE, &format!("/api/v1/webhooks/{id}"), None)
                .await?;
            println!("Revoked webhook {id}");
        }
    }
    Ok(())
}

pub async fn directory(client: ClientArgs, command: DirectoryCommand) -> anyhow::Result<()> {
    match command {
        DirectoryCommand::Import(args) => import(client, args).await,
        DirectoryCommand::Search { query, json } => {
            let connection = Connection::resolve(&client)?;
            let path = format!("/api/v1/users?limit=1000&q={}", url_encode(&query));
            let answer: UsersResponse = connection.http.get(&path).await?;
            for user in &answer.users {
                if json {
                    println!("{}", serde_json::to_string(user)?);
                } else {
                    let extra: Vec<&str> = [user.title.as_str(), user.department.as_str()]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect();
                    println!(
                        "{:<20} {:<28} {:<30} {}",
                        user.username,
                        user.display_name,
                        user.org,
                        extra.join(", ")
                    );
                }
            }
            Ok(())
        }
    }
}

/// Percent-encodes a query parameter value.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn import(client: ClientArgs, args: DirectoryImportArgs) -> anyhow::Result<()> {
    let csv = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?
    };
    let password = if args.password_stdin {
        Some(read_password(true, "Password for new accounts: ")?)
    } else {
        None
    };
    let report: ImportReport = match direct_store(&args.target).await? {
        Some(store) => {
            let gateway = Gateway::new(store, Config::default());
            let report = gateway
                .import_directory(None, &csv, password, args.dry_run)
                .await
                .map_err(gateway_error)?;
            if !report.dry_run {
                gateway.audit(AuditEvent {
                    actor: LOCAL_ACTOR,
                    action: "directory.import",
                    target: "",
                    ip: None,
                    detail: &format!("{} (local command)", import_summary(&report)),
                });
                gateway.flush_audit().await;
            }
            report
        }
        None => {
            let connection = Connection::resolve(&client).context(
                "say where to import: --data-dir DIR, --database URL, or --server URL with an \
                 admin's login",
            )?;
            let request =
                switchboard_gateway::ImportRequest { csv, dry_run: args.dry_run, password };
            connection.http.post("/api/v1/admin/directory", &request).await?
        }
    };
    let verb = if report.dry_run { "would be " } else { "" };
    for name in &report.created {
        println!("created {name}");
    }
    for name in &report.updated {
        println!("updated {name}");
    }
    println!(
        "{} {verb}created, {} {verb}updated, {} unchanged",
        report.created.len(),
        report.updated.len(),
        report.unchanged
    );
    Ok(())
}

pub async fn broadcast(client: ClientArgs, args: BroadcastArgs) -> anyhow::Result<()> {
    let connection = Connection::resolve(&client)?;
    if let Some(BroadcastCommand::Status { id, json }) = args.command {
        let status: BroadcastStatus =
            connection.http.get(&format!("/api/v1/broadcasts/{id}")).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&status)?);
            return Ok(());
        }
        let b = &status.broadcast;
        let to = if b.org.is_empty() { "everyone" } else { b.org.as_str() };
        println!("Broadcast {} to {to}: {}", b.id, b.body);
        println!(
            "{} acknowledged, {} not yet{}",
            status.acknowledged.len(),
            status.pending.len(),
            if b.ack_required { "" } else { " (no acknowledgement was asked for)" }
        );
        for ack in &status.acknowledged {
            println!("  acknowledged  {}", ack.user);
        }
        for user in &status.pending {
            println!("  pending       {user}");
        }
        return Ok(());
    }
    let request = BroadcastRequest {
        to: args.to,
        body: args.text.join(" "),
        ack: args.ack,
        priority: args.priority,
    };
    let sent: Broadcast = connection.http.post("/api/v1/broadcasts", &request).await?;
    println!("{}", sent.id);
    Ok(())
}
