//! The command line, in one place: every flag, its environment fallback and its help.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use switchboard_presence::RedisTarget;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: self-hosted instant messaging for organisations",
    long_about = "Switchboard: self-hosted instant messaging for organisations.\n\n\
        Start a server with `switchboard serve`, create accounts with `switchboard user add`, \
        then chat from the CLI (`login`, `send`, `listen`, `history`, `presence`, `who`) or \
        any WebSocket client (see docs/protocol.md).",
    after_help = "Quick start:\n  switchboard serve\n  switchboard login --server http://127.0.0.1:8080 --user admin\n  \
        switchboard user add alice --password-stdin --server http://127.0.0.1:8080\n\n\
        Exit codes (every command; errors go to stderr):\n  \
        0  done\n  1  any other failure\n  2  bad command line\n  \
        3  the server refused the token or password (sign in again)\n  \
        4  refused: not allowed, not a member, not found, invalid or too large (do not retry)\n  \
        5  server unreachable or unavailable (retry later)\n  6  rate limited (retry later)"
)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Log lines as text, or as one JSON object per line (with `trace_id` and `span_id`
    /// inside traced work). Logs go to stderr; `SWITCHBOARD_LOG` filters them (e.g.
    /// `info,switchboard_gateway=debug`). Traces are exported over OTLP/gRPC when
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see docs/operations.md)
    #[arg(long, global = true, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// `serve --sync`: SQLite's `synchronous` setting for the embedded store.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SyncMode {
    Full,
    Normal,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the CLI client finds the server and its credentials.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Server URL, e.g. http://127.0.0.1:8080 [default: the one saved by `login`]
    #[arg(long, global = true, env = "SWITCHBOARD_SERVER")]
    pub server: Option<String>,
    /// Bearer token [default: the one saved by `login`]
    #[arg(long, global = true, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Directory holding the saved credentials [default: $XDG_CONFIG_HOME/switchboard,
    /// else ~/.config/switchboard]
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the all-in-one server: gateway, router and storage in one process, SQLite on disk
    Serve(ServeArgs),
    /// Run the storage service (cluster mode): gRPC over PostgreSQL
    Storage(StorageArgs),
    /// Run a router (cluster mode): forwards deliveries between gateways
    Router(RouterArgs),
    /// Run a gateway (cluster mode): WebSocket and REST, with remote storage and routers
    Gateway(GatewayArgs),
    /// Manage accounts
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Sign in and save the token for the other commands
    Login(LoginArgs),
    /// Revoke the saved token and forget it
    Logout,
    /// Send a message to a user or a conversation
    Send(SendArgs),
    /// Print incoming messages, typing and presence as they arrive (reconnects by itself)
    Listen(ListenArgs),
    /// Print a conversation's history
    History(HistoryArgs),
    /// Replace the text of one of your messages (everyone sees it edited)
    Edit(EditArgs),
    /// Delete one of your messages (everyone sees it deleted)
    Delete(DeleteArgs),
    /// Search the messages of your conversations
    #[command(after_help = SEARCH_HELP)]
    Search(SearchArgs),
    /// Set your presence
    Presence {
        #[command(subcommand)]
        command: PresenceCommand,
    },
    /// Show the presence of everyone you share a conversation with
    Who(WhoArgs),
    /// Post a message from a script or bot (`--token` a bot's token); see the exit codes
    #[command(after_help = EXIT_CODES)]
    Post(PostArgs),
    /// Manage bot accounts
    Bot {
        #[command(subcommand)]
        command: BotCommand,
    },
    /// Manage incoming webhooks (Slack-compatible JSON posts into a conversation)
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// The organisation directory: import people from CSV, search
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// Send a broadcast to everyone, or to an org unit and everything under it
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = EXIT_CODES
    )]
    Broadcast(BroadcastArgs),
    /// Retention policies (admins): delete messages older than N days, or keep forever
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Legal holds (admins): keep a user's or a conversation's messages whatever the policy
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// Read the audit log: sign-ins, failed sign-ins, admin actions, bots, webhooks,
    /// broadcasts (admins only)
    #[command(after_help = AUDIT_HELP)]
    Audit(AuditArgs),
    /// Compliance export (admins): every message of a time range, with edits, deletions
    /// and reactions, into a directory as JSON lines, CSV or .eml files; resumable
    #[command(after_help = EXPORT_HELP)]
    Export(ExportArgs),
}

const EXPORT_HELP: &str = "Dates are YYYY-MM-DD (UTC; --to includes that whole day) or RFC 3339 \
    times (2026-12-01T14:30:00Z, 2026-12-01T15:30:00+01:00; --to excludes that instant).\n\n\
Files in DIR (see docs/operations.md):\n  \
    jsonl  messages.jsonl: one JSON object per message\n  \
    csv    messages.csv: RFC 4180, a header row, one row per message\n  \
    eml    conversation-ID/SEQ.eml per message and SEQ-edit-EDITSEQ.eml per edit\n  \
    export-state.json: the settings and how far the export got\n\n\
An interrupted export resumes when the same command runs again; another export into the \
same DIR is refused unless --restart. Every export is recorded in the audit log.\n\n\
Examples:\n  switchboard export --from 2026-01-01 --to 2026-03-31 --format jsonl --out q1\n  \
    switchboard export --from 2026-11-01 --to 2026-11-30 --user alice --format eml --out alice";

#[derive(Args)]
pub struct ExportArgs {
    /// Messages sent from this day or time on (see below)
    #[arg(long, value_name = "DATE")]
    pub from: String,
    /// Messages sent up to this day (included) or time (see below)
    #[arg(long, value_name = "DATE")]
    pub to: String,
    /// Only this conversation (its id); repeat for several
    #[arg(long = "conversation", value_name = "ID")]
    pub conversations: Vec<i64>,
    /// Only messages sent by this user; repeat for several
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
    /// File format
    #[arg(long, value_enum)]
    pub format: crate::export::Format,
    /// Directory to write into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Discard the export already in DIR (finished or not) and start this one
    #[arg(long)]
    pub restart: bool,
    /// Domain of the addresses in .eml files (usernames become NAME@DOMAIN)
    #[arg(long, default_value = "switchboard.invalid")]
    pub mail_domain: String,
    /// Messages per request (at most 1000)
    #[arg(long, default_value_t = 200)]
    pub page_size: u32,
    /// Stop after this many pages as if interrupted (for testing resumption)
    #[arg(long, hide = true)]
    pub stop_after_pages: Option<u64>,
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Print the organisation's default and every conversation's own policy
    Show {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Set the default (without --conversation) or a conversation's policy
    Set(RetentionSetArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("policy").required(true).args(["keep_days", "keep_forever", "inherit"])))]
pub struct RetentionSetArgs {
    /// The conversation's id; without it, the organisation's default
    #[arg(long)]
    pub conversation: Option<i64>,
    /// Delete messages older than this many days
    #[arg(long)]
    pub keep_days: Option<i64>,
    /// Keep messages forever (on a conversation: even if the default deletes)
    #[arg(long)]
    pub keep_forever: bool,
    /// Remove the conversation's own policy so it follows the default again (without
    /// --conversation: remove the default, which keeps everything)
    #[arg(long)]
    pub inherit: bool,
}

#[derive(Subcommand)]
pub enum HoldCommand {
    /// Place a hold on a user's messages or on a conversation
    Add(HoldAddArgs),
    /// Lift a hold (by the id `hold list` shows)
    Remove { id: i64 },
    /// Print every hold
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("held").required(true).args(["user", "conversation"])))]
pub struct HoldAddArgs {
    /// Keep every message this user sent, in every conversation
    #[arg(long)]
    pub user: Option<String>,
    /// Keep every message of this conversation (its id)
    #[arg(long)]
    pub conversation: Option<i64>,
    /// Why (a case or matter reference), shown by `hold list`
    #[arg(long, default_value = "")]
    pub reason: String,
}

const AUDIT_HELP: &str = "Times (--since, --until) are UTC: 2026-12-01, 2026-12-01T14:30, \
    2026-12-01T14:30:05Z, milliseconds since the epoch, or an age: 30m, 12h, 7d (that long ago).\n\n\
Actions (--action takes one, or a prefix ending in '.', e.g. auth.):\n  \
    auth.login  auth.login_failed  auth.logout\n  \
    user.create  user.update  user.provision  directory.import\n  \
    bot.create  webhook.create  webhook.revoke  broadcast.send\n  \
    retention.set  retention.clear  hold.add  hold.remove\n\n\
Output: one line per entry, newest first: time, actor, action, target, client IP, detail.\n\n\
Examples:\n  switchboard audit --action auth.login_failed --since 24h\n  \
    switchboard audit --actor alice --action user. --json\n  \
    switchboard audit --limit 100 --before 5120      # the page after the one ending at 5120";

/// `switchboard audit`: the filters of `GET /api/v1/admin/audit`.
#[derive(Args)]
pub struct AuditArgs {
    /// Only entries by this username (for failed sign-ins: the name that was tried)
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action, or every action under a prefix ending in '.' (see below)
    #[arg(long)]
    pub action: Option<String>,
    /// Only entries at or after this time (see below)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only entries before this time (see below)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Entries to show, newest first (at most 1000)
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Paging: only entries with an id below this (printed at the end of a full page)
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
    /// Print each entry as a JSON line
    #[arg(long)]
    pub json: bool,
}

/// What `post` and `broadcast` exit with (every command does the same).
const EXIT_CODES: &str = "Exit codes (errors go to stderr):\n  0  done (stdout: conversation and seq, or the broadcast id)\n  \
    2  bad command line\n  3  the server refused the token\n  \
    4  refused: not allowed, not a member, not found, invalid or too large (do not retry)\n  \
    5  server unreachable or unavailable (retry later)\n  6  rate limited (retry later)\n  1  anything else";

#[derive(Args)]
pub struct PostArgs {
    /// Conversation id, or a username (your direct conversation with them)
    #[arg(long)]
    pub to: String,
    /// Idempotency key: a retry with the same key (e.g. a cron job re-run) is stored once
    #[arg(long)]
    pub key: Option<String>,
    /// The message; several words are joined with spaces
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
}

#[derive(Subcommand)]
pub enum BotCommand {
    /// Create a bot account and print its API token (shown once)
    Add(BotAddArgs),
}

#[derive(Args)]
pub struct BotAddArgs {
    /// The bot's username
    pub name: String,
    /// Name shown on its messages [default: the username]
    #[arg(long, default_value = "")]
    pub display_name: String,
    #[command(flatten)]
    pub target: DirectTarget,
}

/// Where an admin command writes when it does not go through a running server.
#[derive(Args)]
pub struct DirectTarget {
    /// Write into this data dir directly (the server may be running). Without it or
    /// --database, the command goes through the server (--server, or the saved login) as
    /// an admin.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", conflicts_with = "database")]
    pub data_dir: Option<PathBuf>,
    /// Write into the cluster's PostgreSQL database directly
    #[arg(long, env = "SWITCHBOARD_DATABASE")]
    pub database: Option<String>,
}

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Create a webhook for a conversation (admins, or the group's owner); prints its URL
    Add {
        /// Conversation id
        conversation: i64,
        /// Shown as the author of posts that name no `username`
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Revoke a webhook: its URL answers 404 from now on
    Revoke {
        /// Webhook id (printed by `webhook add`)
        id: i64,
    },
}

#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Create or update accounts from a CSV file (header: username, and any of
    /// display_name, org, department, title, broadcast_scope). All or nothing: a bad line
    /// changes nothing and is reported with its line number.
    Import(DirectoryImportArgs),
    /// Search the directory (name, org path, department, title)
    Search {
        /// Text to look for
        query: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct DirectoryImportArgs {
    /// The CSV file (`-` for standard input)
    pub file: PathBuf,
    /// Report what would change, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Read a password for the accounts this import creates from standard input (else
    /// they cannot sign in with a password)
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub target: DirectTarget,
}

#[derive(Args)]
pub struct BroadcastArgs {
    #[command(subcommand)]
    pub command: Option<BroadcastCommand>,
    /// Org-unit path, e.g. "HQ/Building 2": everyone there and below [default: everyone]
    #[arg(long, default_value = "")]
    pub to: String,
    /// Ask every recipient to acknowledge it (see `broadcast status ID`)
    #[arg(long)]
    pub ack: bool,
    /// Urgent (safety): clients alert even on do-not-disturb
    #[arg(long)]
    pub priority: bool,
    /// The text; several words are joined with spaces
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
}

#[derive(Subcommand)]
pub enum BroadcastCommand {
    /// Who acknowledged a broadcast, and who has not yet
    Status {
        id: i64,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    /// Directory for the SQLite database
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "./switchboard-data")]
    pub data_dir: PathBuf,
    /// Address for HTTP and WebSocket
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// What a message's ack waits for. full: the disk has it (an fsync per commit), so
    /// acked messages survive a power loss. normal: it is written to the database's log,
    /// so acked messages survive a crash of the server but not a power loss or an OS
    /// crash (the disk syncs at checkpoints); acks then do not wait for the disk's
    /// flushes, which stall on some shared or throttled VM disks
    #[arg(long, env = "SWITCHBOARD_SYNC", value_enum, default_value_t = SyncMode::Full)]
    pub sync: SyncMode,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub ldap: LdapArgs,
    #[command(flatten)]
    pub attachments: AttachmentArgs,
}

/// Where attachments' bytes are kept (`serve`, `gateway`, and `storage`, whose retention
/// job deletes the files of messages it deletes).
#[derive(Args)]
pub struct AttachmentArgs {
    /// Where attachments are kept: a directory, or s3://BUCKET (an S3-compatible bucket,
    /// the same for every gateway and storage replica) [serve: DATA_DIR/attachments;
    /// gateway: none, uploads are refused; storage: none, retention leaves the files]
    #[arg(long, env = "SWITCHBOARD_ATTACHMENTS")]
    pub attachments: Option<String>,
    /// With s3://: the endpoint of an S3-compatible server (http(s)://host:port) instead
    /// of AWS
    #[arg(long, env = "SWITCHBOARD_ATTACHMENTS_S3_ENDPOINT")]
    pub attachments_s3_endpoint: Option<String>,
    /// With s3://: the bucket's region
    #[arg(long, env = "SWITCHBOARD_ATTACHMENTS_S3_REGION", default_value = "us-east-1")]
    pub attachments_s3_region: String,
    /// With s3://: the access key id
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub attachments_s3_access_key_id: Option<String>,
    /// With s3://: the secret access key (better given in the environment)
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub attachments_s3_secret_access_key: Option<String>,
}

impl AttachmentArgs {
    /// The store --attachments names, else one in `default_dir`, else none.
    pub fn blobs(
        &self,
        default_dir: Option<PathBuf>,
    ) -> anyhow::Result<Option<switchboard_storage::attachments::Blobs>> {
        use anyhow::Context as _;
        use switchboard_storage::attachments::{Blobs, S3Config};
        let blobs = match (&self.attachments, default_dir) {
            (Some(url), _) if url.starts_with("s3://") => {
                let bucket = url.trim_start_matches("s3://").trim_end_matches('/');
                anyhow::ensure!(!bucket.is_empty(), "--attachments s3:// needs a bucket name");
                Blobs::s3(&S3Config {
                    bucket: bucket.to_owned(),
                    endpoint: self.attachments_s3_endpoint.clone(),
                    region: self.attachments_s3_region.clone(),
                    access_key_id: self.attachments_s3_access_key_id.clone(),
                    secret_access_key: self.attachments_s3_secret_access_key.clone(),
                })
                .context("bad --attachments")?
            }
            (Some(dir), _) => {
                let dir = PathBuf::from(dir.strip_prefix("file://").unwrap_or(dir));
                Blobs::local(&dir).context("bad --attachments")?
            }
            (None, Some(dir)) => {
                Blobs::local(&dir).context("cannot create the attachments directory")?
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(blobs))
    }
}

/// How the retention job (in `serve` and `storage`) deletes messages past their policy.
#[derive(Args)]
pub struct RetentionArgs {
    /// Seconds between retention sweeps (0: never delete, whatever the policies say)
    #[arg(long, env = "SWITCHBOARD_RETENTION_INTERVAL_SECS", default_value_t = 3600)]
    pub retention_interval_secs: u64,
    /// Most messages one retention transaction deletes (the time budget usually ends it
    /// first)
    #[arg(long, env = "SWITCHBOARD_RETENTION_BATCH", default_value_t = 1000)]
    pub retention_batch: u32,
    /// Work per retention transaction, in milliseconds: it commits once this much time
    /// passed inside it, so sends wait at most about this long behind a delete (0: no
    /// time limit, --retention-batch messages per transaction)
    #[arg(long, env = "SWITCHBOARD_RETENTION_BUDGET_MS", default_value_t = 1)]
    pub retention_budget_ms: u64,
    /// Most of the time the retention job holds the database, in percent: after each
    /// transaction it rests long enough (25: three times as long as it took). Lower it if
    /// sends slow down while a large deletion runs, raise it to delete faster; 100: no rest
    #[arg(long, env = "SWITCHBOARD_RETENTION_SHARE_PERCENT", default_value_t = 25,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub retention_share_percent: u32,
    /// Also rest at least this long (milliseconds) after every --retention-batch
    /// messages deleted, counted across conversations: caps the deletion rate (1000 with
    /// batches of 1000: at most 1,000 messages a second)
    #[arg(long, env = "SWITCHBOARD_RETENTION_PAUSE_MS", default_value_t = 1000)]
    pub retention_pause_ms: u64,
    /// Delete attachment objects no message carries (an upload whose message was never
    /// stored) once they are this old, in seconds, after each retention sweep; only keys
    /// of the shape uploads get are touched. 0: never (when the bucket is shared with
    /// another installation, which this would take for orphans)
    #[arg(long, env = "SWITCHBOARD_RETENTION_ORPHAN_GRACE_SECS", default_value_t = 86_400)]
    pub retention_orphan_grace_secs: u64,
}

impl RetentionArgs {
    pub fn config(&self) -> switchboard_storage::retention::RetentionConfig {
        switchboard_storage::retention::RetentionConfig {
            interval: std::time::Duration::from_secs(self.retention_interval_secs),
            batch: self.retention_batch.max(1),
            budget: std::time::Duration::from_millis(self.retention_budget_ms),
            share_percent: self.retention_share_percent,
            pause: std::time::Duration::from_millis(self.retention_pause_ms),
            orphan_grace: std::time::Duration::from_secs(self.retention_orphan_grace_secs),
        }
    }
}

/// TLS on a server's port: both files or neither (plain HTTP / gRPC then).
#[derive(Args)]
pub struct TlsArgs {
    /// Certificate chain (PEM, server certificate first): serve HTTPS and wss:// (gRPC
    /// over TLS for `storage` and `router`) instead of plain. Gateways re-read it and
    /// --tls-key on SIGHUP
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Limits every gateway enforces (`serve` and `gateway`).
#[derive(Args)]
pub struct LimitArgs {
    /// Largest message body in bytes
    #[arg(long, env = "SWITCHBOARD_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Largest attachment in bytes (bigger uploads are refused while streaming; nothing
    /// is kept)
    #[arg(long, env = "SWITCHBOARD_MAX_ATTACHMENT_BYTES",
          default_value_t = switchboard_protocol::DEFAULT_MAX_ATTACHMENT_BYTES)]
    pub max_attachment_bytes: u64,
    /// Largest WebSocket frame in bytes (bigger frames close the connection)
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME_BYTES", default_value_t = 256 * 1024)]
    pub max_frame_bytes: usize,
    /// Messages per second one user may send, sustained (0: unlimited)
    #[arg(long, env = "SWITCHBOARD_RATE_PER_USER", default_value_t = 50.0)]
    pub rate_per_user: f64,
    /// Messages one user may send in a burst
    #[arg(long, env = "SWITCHBOARD_RATE_BURST", default_value_t = 100.0)]
    pub rate_burst: f64,
    /// Seconds to wait for sessions to close on shutdown (SIGTERM); then the router links
    /// and presence take up to 5 s more
    #[arg(long, env = "SWITCHBOARD_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,
    /// On shutdown, clients are told to reconnect after a random delay of up to this many
    /// milliseconds, so they do not all reconnect to the other gateways at once
    #[arg(long, env = "SWITCHBOARD_RECONNECT_SPREAD_MS", default_value_t = 5000)]
    pub reconnect_spread_ms: u64,
    /// Messages per second one client IP may send, sustained, over all its sessions and
    /// REST, on top of --rate-per-user (0: unlimited)
    #[arg(long, env = "SWITCHBOARD_RATE_PER_IP", default_value_t = 200.0)]
    pub rate_per_ip: f64,
    /// Messages one client IP may send in a burst
    #[arg(long, env = "SWITCHBOARD_RATE_IP_BURST", default_value_t = 400.0)]
    pub rate_ip_burst: f64,
    /// WebSocket sessions one user may hold on one gateway; one more is refused with
    /// too_many_connections (0: unlimited)
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_USER", default_value_t = 10)]
    pub max_connections_per_user: usize,
    /// Most members of a group, owner included; more gets group_too_large (0: unlimited)
    #[arg(long, env = "SWITCHBOARD_MAX_GROUP_MEMBERS", default_value_t = 1000)]
    pub max_group_members: usize,
    /// Bytes of frames queued for one session; a client that falls further behind is
    /// disconnected with slow_consumer (it reconnects and syncs)
    #[arg(long, env = "SWITCHBOARD_SESSION_QUEUE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub session_queue_bytes: usize,
    /// WebSocket sign-ins that may be checking their token and starting their session
    /// against storage at once; more wait their turn (0: unlimited). Keeps a storm of
    /// sign-ins (every client of a restarted cluster) from swamping storage
    #[arg(long, env = "SWITCHBOARD_SIGN_INS_IN_FLIGHT", default_value_t = 32)]
    pub sign_ins_in_flight: usize,
    /// WebSocket sign-ins that may wait for their turn; one more, or one waiting over
    /// 10 s, is refused with unavailable and a retry_after_ms estimated from the queue
    #[arg(long, env = "SWITCHBOARD_SIGN_IN_QUEUE", default_value_t = 1000)]
    pub sign_in_queue: usize,
    /// Failed sign-ins in a row after which each failure locks the account for a delay
    /// that doubles from --login-backoff-base-ms
    #[arg(long, env = "SWITCHBOARD_LOGIN_BACKOFF_AFTER", default_value_t = 3)]
    pub login_backoff_after: u32,
    /// The first sign-in backoff delay, in milliseconds
    #[arg(long, env = "SWITCHBOARD_LOGIN_BACKOFF_BASE_MS", default_value_t = 1000)]
    pub login_backoff_base_ms: u64,
    /// Failed sign-ins in a row that lock the account for --login-lockout-secs (the
    /// right password is refused too until then; issued tokens keep working)
    #[arg(long, env = "SWITCHBOARD_LOGIN_LOCKOUT_AFTER", default_value_t = 10)]
    pub login_lockout_after: u32,
    /// How long a lockout lasts, in seconds
    #[arg(long, env = "SWITCHBOARD_LOGIN_LOCKOUT_SECS", default_value_t = 900)]
    pub login_lockout_secs: u64,
    /// Failed sign-ins one client IP may make in a burst (per gateway); then all its
    /// sign-ins get 429 until the budget refills
    #[arg(long, env = "SWITCHBOARD_LOGIN_IP_FAILURES_BURST", default_value_t = 30.0)]
    pub login_ip_failures_burst: f64,
    /// Failed sign-ins per minute a client IP gets back (0: no per-IP sign-in limit)
    #[arg(long, env = "SWITCHBOARD_LOGIN_IP_FAILURES_PER_MINUTE", default_value_t = 10.0)]
    pub login_ip_failures_per_minute: f64,
    /// Take the client IP for the per-IP limits from this header (set by your reverse
    /// proxy, e.g. X-Forwarded-For: its last entry) instead of the TCP peer address
    #[arg(long, env = "SWITCHBOARD_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// An origin (scheme://host[:port]) besides the server's own whose pages may open
    /// WebSockets and get CORS access to /api/v1; repeatable (env: comma-separated)
    #[arg(long = "allowed-origin", env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
}

/// Directory sign-in (`serve` and `gateway`). Accounts with a local password sign in with
/// it; every other username is checked against the directory, and created locally (with
/// no local password) on its first successful sign-in.
#[derive(Args)]
#[command(next_help_heading = "Directory sign-in (LDAP)")]
pub struct LdapArgs {
    /// Sign users in against this LDAP / Active Directory server (ldap://host:port)
    #[arg(long, env = "SWITCHBOARD_LDAP_URL", value_name = "URL")]
    pub ldap_url: Option<String>,
    /// Name to bind as, {user} standing for the username: a DN such as
    /// "uid={user},ou=people,dc=example,dc=org", or Active Directory's "{user}@example.org"
    #[arg(long, env = "SWITCHBOARD_LDAP_USER_DN", value_name = "TEMPLATE")]
    pub ldap_user_dn: Option<String>,
    /// Search users under this DN (search-then-bind when --ldap-user-dn is not given)
    #[arg(long, env = "SWITCHBOARD_LDAP_SEARCH_BASE", value_name = "DN")]
    pub ldap_search_base: Option<String>,
    /// Filter that finds one user under --ldap-search-base, {user} standing for the
    /// username (Active Directory: "(sAMAccountName={user})")
    #[arg(long, env = "SWITCHBOARD_LDAP_USER_FILTER", default_value = "(uid={user})")]
    pub ldap_user_filter: String,
    /// Service account DN for the search [default: search anonymously]
    #[arg(long, env = "SWITCHBOARD_LDAP_BIND_DN", value_name = "DN")]
    pub ldap_bind_dn: Option<String>,
    /// Password of --ldap-bind-dn (prefer the environment variable)
    #[arg(long, env = "SWITCHBOARD_LDAP_BIND_PASSWORD", hide_env_values = true)]
    pub ldap_bind_password: Option<String>,
    /// Members of this group (DN; via memberOf or the group's member/uniqueMember/memberUid)
    /// are admins, others are not [default: the admin flag is left alone]
    #[arg(long, env = "SWITCHBOARD_LDAP_ADMIN_GROUP", value_name = "DN")]
    pub ldap_admin_group: Option<String>,
    /// Attribute copied to the display name on each sign-in (e.g. displayName, cn)
    #[arg(long, env = "SWITCHBOARD_LDAP_DISPLAY_NAME_ATTR", value_name = "ATTR")]
    pub ldap_display_name_attr: Option<String>,
    /// Attribute copied to the org unit on each sign-in (e.g. ou, department)
    #[arg(long, env = "SWITCHBOARD_LDAP_ORG_ATTR", value_name = "ATTR")]
    pub ldap_org_attr: Option<String>,
    /// Milliseconds a directory sign-in may take in all (connect, bind, searches); past
    /// it, sign-in answers 503 unavailable
    #[arg(long, env = "SWITCHBOARD_LDAP_TIMEOUT_MS", default_value_t = 5000)]
    pub ldap_timeout_ms: u64,
}

#[derive(Args)]
pub struct GatewayArgs {
    /// gRPC URL of the storage service (https:// with --tls-ca)
    #[arg(long, env = "SWITCHBOARD_STORAGE", default_value = "http://127.0.0.1:7100")]
    pub storage: String,
    /// gRPC URLs of every router replica, comma-separated (https:// with --tls-ca)
    #[arg(long, env = "SWITCHBOARD_ROUTERS", value_delimiter = ',', required = true)]
    pub router: Vec<String>,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// This gateway's id, unique in the cluster [default: the listen address]
    #[arg(long, env = "SWITCHBOARD_GATEWAY_ID")]
    pub gateway_id: Option<String>,
    /// Seconds without a heartbeat after which a gateway's users show offline
    #[arg(long, env = "SWITCHBOARD_PRESENCE_TTL", default_value_t = 15)]
    pub presence_ttl: u64,
    /// Address for HTTP and WebSocket
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// CA certificate(s) (PEM) that signed the storage service's and routers'
    /// certificates: needed for https:// --storage and --router URLs (a private CA, as
    /// in a Kubernetes cluster)
    #[arg(long, env = "SWITCHBOARD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub ldap: LdapArgs,
    #[command(flatten)]
    pub attachments: AttachmentArgs,
}

#[derive(Args)]
pub struct RouterArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Address for gRPC
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:7200")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Where the cluster's Redis is.
#[derive(Args)]
pub struct RedisArgs {
    /// Redis URL (one server)
    #[arg(long, env = "SWITCHBOARD_REDIS", default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// A Redis Cluster instead (Redis 7+): some of its nodes, comma-separated
    /// (`redis://host:port` or `host:port`); the rest are discovered. Overrides --redis
    #[arg(long, env = "SWITCHBOARD_REDIS_CLUSTER", value_delimiter = ',')]
    pub redis_cluster: Vec<String>,
    /// Prefix of every key and channel, so several clusters can share one Redis (no
    /// braces: they pick cluster shards)
    #[arg(long, env = "SWITCHBOARD_REDIS_PREFIX", default_value = "switchboard")]
    pub redis_prefix: String,
}

impl RedisArgs {
    pub fn target(&self) -> RedisTarget {
        if self.redis_cluster.is_empty() {
            return RedisTarget::Single(self.redis.clone());
        }
        let node = |n: &String| {
            let n = n.trim();
            if n.contains("://") { n.to_owned() } else { format!("redis://{n}") }
        };
        RedisTarget::Cluster(self.redis_cluster.iter().map(node).collect())
    }
}

#[derive(Args)]
pub struct StorageArgs {
    /// PostgreSQL URL, e.g. postgres://switchboard@db:5432/switchboard (migrations are
    /// applied on start)
    #[arg(long, env = "SWITCHBOARD_DATABASE")]
    pub database: String,
    /// Address for gRPC
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:7100")]
    pub listen: SocketAddr,
    /// Batches of messages committing at once (each on its own database connection). 1
    /// commits one batch at a time: fewer, larger commits, no batch waiting on another's
    /// locks. More let the next batch start while the last one waits for the disk, which
    /// helps only where commits wait on the disk rather than on the database's CPU
    #[arg(long, env = "SWITCHBOARD_COMMIT_PIPELINE", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=8))]
    pub commit_pipeline: u8,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub attachments: AttachmentArgs,
    /// Milliseconds between rounds of the search-word harvester, which adds new messages'
    /// words to the dictionary prefix searches (`budg*`) expand from: a prefix finds a new
    /// word about this much after it was sent (whole words at once). Of several replicas
    /// one harvests at a time. Each round also merges the search index's pending list,
    /// which appends would otherwise do under their locks. 0: both off here (another
    /// replica on the database must run them)
    #[arg(long, env = "SWITCHBOARD_SEARCH_WORDS_INTERVAL_MS", default_value_t = 1000)]
    pub search_words_interval_ms: u64,
}

impl StorageArgs {
    pub fn search_words(&self) -> switchboard_storage::SearchWordsConfig {
        switchboard_storage::SearchWordsConfig {
            interval: std::time::Duration::from_millis(self.search_words_interval_ms),
            ..Default::default()
        }
    }
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account (in a data dir directly, or on a running server with --server)
    Add(UserAddArgs),
    /// Change an account's role or disable it (through the server, as an admin). A
    /// disabled account cannot sign in and its tokens stop working until it is enabled
    #[command(after_help = "Examples:\n  switchboard user set alice --admin true\n  \
        switchboard user set mallory --disabled true")]
    Set(UserSetArgs),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("change").required(true).multiple(true).args(["admin", "disabled"]))]
pub struct UserSetArgs {
    /// Username
    pub name: String,
    /// Make the account an administrator (true) or not (false)
    #[arg(long, value_name = "BOOL")]
    pub admin: Option<bool>,
    /// Disable the account (true) or enable it again (false)
    #[arg(long, value_name = "BOOL")]
    pub disabled: Option<bool>,
}

#[derive(Args)]
pub struct UserAddArgs {
    /// Username: letters, digits, '.', '_' or '-'
    pub name: String,
    /// Make the account an administrator
    #[arg(long)]
    pub admin: bool,
    /// Name shown to others [default: the username]
    #[arg(long, default_value = "")]
    pub display_name: String,
    /// Org-unit path, e.g. "HQ/Building 2/Floor 3"
    #[arg(long, default_value = "")]
    pub org: String,
    /// Read the password from the first line of standard input (else prompt for it)
    #[arg(long)]
    pub password_stdin: bool,
    /// Write into this data dir directly (the server may be running). Without it or
    /// --database, the account is created through the server (--server, or the saved
    /// login) as an admin.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", conflicts_with = "database")]
    pub data_dir: Option<PathBuf>,
    /// Write into the cluster's PostgreSQL database directly
    #[arg(long, env = "SWITCHBOARD_DATABASE")]
    pub database: Option<String>,
}

#[derive(Args)]
pub struct LoginArgs {
    /// Username
    #[arg(long)]
    pub user: String,
    /// Read the password from standard input (else prompt for it)
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Args)]
pub struct SendArgs {
    /// A username (direct message) or a conversation id
    pub to: String,
    /// Reply in the thread of message SEQ of that conversation (`history` shows each
    /// message as #CONVERSATION:SEQ)
    #[arg(long, value_name = "SEQ")]
    pub thread: Option<i64>,
    /// The message; several words are joined with spaces (with --attach: the caption,
    /// may be left out)
    #[arg(required_unless_present = "attach", num_args = 0..)]
    pub text: Vec<String>,
    /// Send this file (members can download it; images show as pictures in the web
    /// client)
    #[arg(long, value_name = "FILE")]
    pub attach: Option<PathBuf>,
}

#[derive(Args)]
pub struct ListenArgs {
    /// Print each server frame as one JSON line (for scripts)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// A username (your direct conversation) or a conversation id
    pub with: String,
    /// Show one thread instead: message SEQ and its replies, oldest first
    #[arg(long, value_name = "SEQ")]
    pub thread: Option<i64>,
    /// How many of the newest messages (with --thread: the first replies) to show
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print messages as JSON lines
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct EditArgs {
    /// A username (your direct conversation) or a conversation id
    pub conversation: String,
    /// The message's seq (shown by `history` and `search` as #CONVERSATION:SEQ)
    pub seq: i64,
    /// The new text; several words are joined with spaces
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// A username (your direct conversation) or a conversation id
    pub conversation: String,
    /// The message's seq
    pub seq: i64,
}

const SEARCH_HELP: &str = "The query:\n  \
    budget 2027          messages with both words (whole words, any case)\n  \
    \"budget 2027\"        the phrase: these words, in this order\n  \
    budg*                words starting with budg\n  \
    from:alice           sent by alice (or --from)\n  \
    in:Ops  in:bob  in:12   in the group Ops, your direct conversation with bob, conversation 12 (or --in)\n  \
    before:2027-01-31    sent before that day (UTC); after:DAY on or after it; on:DAY that day\n\n\
Examples:\n  switchboard search \"budget 2027\" --from alice --json\n  switchboard search 'deploy in:ops after:2026-11-01' --recent";

#[derive(Args)]
pub struct SearchArgs {
    /// Words, "phrases", prefix* and operators (see below); several arguments are joined
    #[arg(required = true, num_args = 1..)]
    pub query: Vec<String>,
    /// Only messages sent by this user
    #[arg(long)]
    pub from: Option<String>,
    /// Only this conversation: a group's name, a username (your direct conversation) or an id
    #[arg(long = "in", value_name = "CONVERSATION")]
    pub in_conversation: Option<String>,
    /// Only messages sent before this day (YYYY-MM-DD, UTC)
    #[arg(long, value_name = "DAY")]
    pub before: Option<String>,
    /// Only messages sent on or after this day (YYYY-MM-DD, UTC)
    #[arg(long, value_name = "DAY")]
    pub after: Option<String>,
    /// Newest first instead of best match first
    #[arg(long)]
    pub recent: bool,
    /// Results to show (at most 100)
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Results to skip: the next page starts at the number shown so far
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
    /// Print each result (message and highlight) as a JSON line
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum PresenceCommand {
    /// Set your status: available, busy, away, dnd (do-not-disturb) or offline
    Set {
        status: String,
        /// Status text, e.g. "In a meeting until 3"
        #[arg(num_args = 0..)]
        text: Vec<String>,
    },
}

#[derive(Args)]
pub struct WhoArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}
