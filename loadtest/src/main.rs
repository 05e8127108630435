//! The `switchboard-loadtest` binary: parses the command line and hands off to
//! [`switchboard_loadtest::run`]. Exit status: 0 passed, 1 a threshold was violated,
//! 2 the run could not be carried out.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard_loadtest::run::{Admin, RunConfig, XmppOptions};
use switchboard_loadtest::scenario::Overrides;
use switchboard_loadtest::xmpp_client::XmppTarget;

#[derive(Parser)]
#[command(
    name = "switchboard-loadtest",
    version,
    about = "Load-test a Switchboard server with verified deliveries",
    after_help = "Example:\n  switchboard-loadtest run loadtest/scenarios/office.toml \
        --gateway ws://127.0.0.1:8080 --admin-user admin --admin-password-stdin --out results/office"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario file against one or more gateways
    Run(Box<RunArgs>),
    /// Time org broadcasts (POST /api/v1/broadcasts) until every online user has them
    BroadcastLatency(BroadcastLatencyArgs),
    /// Fill an empty database with a synthetic history for the search benchmark
    SearchSeed(SearchSeedArgs),
    /// Time message search (Store::search) on a seeded database
    SearchBench(SearchBenchArgs),
    /// (internal) One worker process of a run with --workers
    #[command(name = "__worker", hide = true)]
    Worker { job: PathBuf },
}

/// A database for the search benchmark: exactly one of the two.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct SearchTarget {
    /// PostgreSQL URL of an empty database (search-seed) or a seeded one
    #[arg(long)]
    postgres: Option<String>,
    /// Data dir of an embedded server (SQLite), empty or seeded
    #[arg(long)]
    sqlite: Option<PathBuf>,
}

impl SearchTarget {
    fn target(self) -> switchboard_loadtest::searchbench::Target {
        use switchboard_loadtest::searchbench::Target;
        match (self.postgres, self.sqlite) {
            (Some(url), _) => Target::Postgres(url),
            (None, Some(dir)) => Target::Sqlite(dir),
            (None, None) => unreachable!("clap requires one"),
        }
    }
}

#[derive(clap::Args)]
struct SearchSeedArgs {
    #[command(flatten)]
    target: SearchTarget,
    /// Messages to store
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Groups of about 25 members (80% of the messages)
    #[arg(long, default_value_t = 2_000)]
    groups: usize,
    /// Direct conversations between random pairs (20% of the messages)
    #[arg(long, default_value_t = 20_000)]
    directs: usize,
    /// Random seed: the same seed makes the same history
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(clap::Args)]
struct SearchBenchArgs {
    #[command(flatten)]
    target: SearchTarget,
    /// Searchers (random users) timed per kind of query
    #[arg(long, default_value_t = 200)]
    queries: usize,
    #[arg(long, default_value_t = 11)]
    seed: u64,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The scenario (TOML), e.g. loadtest/scenarios/office.toml
    scenario: PathBuf,
    /// Gateway URLs, comma-separated; users are spread round-robin
    /// [default: ws://127.0.0.1:8080, or xmpp://127.0.0.1:5222 with --protocol xmpp]
    #[arg(long, env = "SWITCHBOARD_LOADTEST_GATEWAY")]
    gateway: Option<String>,
    /// What the users speak: Switchboard's WebSocket protocol, or XMPP (c2s over plain TCP,
    /// SASL PLAIN) for the side-by-side comparison with an XMPP server
    #[arg(long, value_enum, default_value = "switchboard")]
    protocol: Protocol,
    /// XMPP: the users' domain (user@DOMAIN)
    #[arg(long, default_value = "localhost")]
    xmpp_domain: String,
    /// XMPP: the MUC service for groups [default: conference.DOMAIN]
    #[arg(long)]
    xmpp_muc: Option<String>,
    /// XMPP: register the users through ejabberd's mod_http_api at HOST:PORT
    /// (POST /api/register; existing accounts are kept); "none" when they exist already
    #[arg(long, default_value = "127.0.0.1:5280")]
    xmpp_api: String,
    /// Override the scenario's number of users
    #[arg(long)]
    users: Option<u32>,
    /// Override the scenario's seconds of traffic
    #[arg(long)]
    duration: Option<u64>,
    /// Override the scenario's messages per second (all senders together)
    #[arg(long)]
    rate: Option<f64>,
    /// Override the scenario's `echo`: false signs in with `auth.echo` false (a sender's
    /// own session gets only the `ack` of its messages)
    #[arg(long)]
    echo: Option<bool>,
    /// Directory for result.json and report.html
    #[arg(long, default_value = "loadtest-results")]
    out: PathBuf,
    /// An admin's bearer token, for provisioning
    #[arg(long, env = "SWITCHBOARD_LOADTEST_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// An admin's username (with --admin-password-stdin) instead of a token
    #[arg(long, conflicts_with = "admin_token")]
    admin_user: Option<String>,
    /// Read the admin's password from the first line of standard input
    #[arg(long, requires = "admin_user")]
    admin_password_stdin: bool,
    /// Worker processes (each may hold up to ~20,000 connections here)
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Spread connections over source addresses 127.0.0.1..=127.0.0.N (0: let the OS choose)
    #[arg(long, default_value_t = 4)]
    source_addrs: u8,
    /// Allow gateways that are not on this machine
    #[arg(long)]
    allow_remote: bool,
}

#[derive(clap::Args)]
struct BroadcastLatencyArgs {
    /// Gateway URLs, comma-separated; users are spread round-robin (loopback only)
    #[arg(long, env = "SWITCHBOARD_LOADTEST_GATEWAY", default_value = "ws://127.0.0.1:8080")]
    gateway: String,
    /// Users online (provisioned as PREFIX-0 .. PREFIX-(N-1), org unit `loadtest`)
    #[arg(long, default_value_t = 1000)]
    users: u32,
    /// Broadcasts to time, one after the other
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Org-unit path to broadcast to ("" = everyone)
    #[arg(long, default_value = "loadtest")]
    to: String,
    /// Prefix of the provisioned usernames
    #[arg(long, default_value = "lt-orgcast")]
    prefix: String,
    /// An admin's bearer token (broadcasts and provisioning need an admin)
    #[arg(long, env = "SWITCHBOARD_LOADTEST_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// An admin's username (with --admin-password-stdin) instead of a token
    #[arg(long, conflicts_with = "admin_token")]
    admin_user: Option<String>,
    /// Read the admin's password from the first line of standard input
    #[arg(long, requires = "admin_user")]
    admin_password_stdin: bool,
    /// Spread connections over source addresses 127.0.0.1..=127.0.0.N (0: let the OS choose)
    #[arg(long, default_value_t = 4)]
    source_addrs: u8,
}

async fn broadcast_latency(args: BroadcastLatencyArgs) -> anyhow::Result<()> {
    use switchboard_loadtest::{orgcast, plan, target};
    let gateways = target::parse_gateways(&args.gateway, false).await?;
    let admin_token = match (&args.admin_token, &args.admin_user) {
        (Some(token), _) => token.clone(),
        (None, Some(user)) if args.admin_password_stdin => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let authority = &gateways.first().context("no gateway")?.authority;
            plan::admin_login(authority, user, line.trim_end_matches(['\r', '\n'])).await?
        }
        _ => anyhow::bail!("give --admin-token, or --admin-user with --admin-password-stdin"),
    };
    let sources = target::source_addrs(&gateways, args.source_addrs);
    orgcast::run(orgcast::Options {
        gateways,
        users: args.users,
        rounds: args.rounds,
        to: args.to,
        prefix: args.prefix,
        admin_token,
        sources,
    })
    .await?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Protocol {
    Switchboard,
    Xmpp,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::BroadcastLatency(args) => match runtime.block_on(broadcast_latency(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::SearchSeed(args) => {
            use switchboard_loadtest::searchbench::{SeedOptions, seed};
            let options = SeedOptions {
                target: args.target.target(),
                messages: args.messages,
                users: args.users,
                groups: args.groups,
                directs: args.directs,
                seed: args.seed,
            };
            report(runtime.block_on(seed(options)))
        }
        Command::SearchBench(args) => {
            use switchboard_loadtest::searchbench::{BenchOptions, bench};
            let options = BenchOptions {
                target: args.target.target(),
                queries: args.queries,
                seed: args.seed,
            };
            report(runtime.block_on(bench(options)))
        }
        Command::Worker { job } => {
            match runtime.block_on(switchboard_loadtest::worker::serve_child(&job)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("worker error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run(args) => {
            let admin = match admin(&args) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let xmpp = (args.protocol == Protocol::Xmpp).then(|| XmppOptions {
                target: XmppTarget {
                    muc: args
                        .xmpp_muc
                        .clone()
                        .unwrap_or_else(|| format!("conference.{}", args.xmpp_domain)),
                    domain: args.xmpp_domain.clone(),
                },
                register_api: (args.xmpp_api != "none").then(|| args.xmpp_api.clone()),
            });
            let gateways = args.gateway.clone().unwrap_or_else(|| {
                match args.protocol {
                    Protocol::Switchboard => "ws://127.0.0.1:8080",
                    Protocol::Xmpp => "xmpp://127.0.0.1:5222",
                }
                .to_owned()
            });
            let cfg = RunConfig {
                scenario: args.scenario,
                gateways,
                overrides: Overrides {
                    users: args.users,
                    duration_secs: args.duration,
                    rate: args.rate,
                    echo: args.echo,
                },
                out: args.out,
                admin,
                xmpp,
                workers: args.workers,
                source_addrs: args.source_addrs,
                allow_remote: args.allow_remote,
            };
            match runtime.block_on(switchboard_loadtest::run::run(cfg)) {
                Ok(outcome) if outcome.passed => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn admin(args: &RunArgs) -> anyhow::Result<Admin> {
    if args.protocol == Protocol::Xmpp {
        return Ok(Admin::None);
    }
    if let Some(token) = &args.admin_token {
        return Ok(Admin::Token(token.clone()));
    }
    let Some(user) = &args.admin_user else {
        anyhow::bail!(
            "give --admin-token (or SWITCHBOARD_LOADTEST_ADMIN_TOKEN), or --admin-user with --admin-password-stdin"
        );
    };
    if !args.admin_password_stdin {
        anyhow::bail!("--admin-user needs --admin-password-stdin");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(Admin::Password {
        user: user.clone(),
        password: line.trim_end_matches(['\r', '\n']).to_owned(),
    })
}

/// Exit status 0, or 2 with the error on stderr.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
