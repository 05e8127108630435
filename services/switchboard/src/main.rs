//! The `switchboard` binary: parses the command line, sets up logging and hands off to
//! the command's module. Server roles live in the library crates; this file only wires.

mod admin;
mod cli;
mod client;
mod export;
mod org;
mod retention;
mod serve;

use clap::Parser;

use cli::{Cli, Command, UserCommand};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The trace exporter's gRPC client runs on the runtime: set up inside it.
    let telemetry = {
        let _inside = runtime.enter();
        switchboard_telemetry::init(telemetry_config(&cli))
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Storage(args) => serve::storage(args).await,
            Command::Router(args) => serve::router(args).await,
            Command::Gateway(args) => serve::gateway(args).await,
            Command::User { command: UserCommand::Add(args) } => {
                admin::user_add(cli.client, args).await
            }
            Command::User { command: UserCommand::Set(args) } => {
                admin::user_set(cli.client, args).await
            }
            Command::Audit(args) => admin::audit(cli.client, args).await,
            Command::Export(args) => export::run(cli.client, args).await,
            Command::Login(args) => client::login(cli.client, args).await,
            Command::Logout => client::logout(cli.client).await,
            Command::Send(args) => client::send(cli.client, args).await,
            Command::Listen(args) => client::listen(cli.client, args).await,
            Command::History(args) => client::history(cli.client, args).await,
            Command::Search(args) => client::search(cli.client, args).await,
            Command::Edit(args) => client::edit(cli.client, args).await,
            Command::Delete(args) => client::delete(cli.client, args).await,
            Command::Presence { command } => client::presence(cli.client, command).await,
            Command::Who(args) => client::who(cli.client, args).await,
            Command::Post(args) => org::post(cli.client, args).await,
            Command::Bot { command: cli::BotCommand::Add(args) } => {
                org::bot_add(cli.client, args).await
            }
            Command::Webhook { command } => org::webhook(cli.client, command).await,
            Command::Directory { command } => org::directory(cli.client, command).await,
            Command::Broadcast(args) => org::broadcast(cli.client, args).await,
            Command::Retention { command } => retention::retention(cli.client, command).await,
            Command::Hold { command } => retention::hold(cli.client, command).await,
        }
    });
    // Spans still buffered go out before the process ends.
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}

/// Logs for every command; traces only from the server roles, and only when an OTLP
/// endpoint is configured (the standard `OTEL_*` variables, read here and by the
/// OpenTelemetry SDK).
fn telemetry_config(cli: &Cli) -> switchboard_telemetry::Config {
    let (default_level, service) = match cli.command {
        Command::Serve(_) => ("info", Some("switchboard")),
        Command::Storage(_) => ("info", Some("switchboard-storage")),
        Command::Router(_) => ("info", Some("switchboard-router")),
        Command::Gateway(_) => ("info", Some("switchboard-gateway")),
        _ => ("warn", None),
    };
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    switchboard_telemetry::Config {
        format: match cli.log_format {
            cli::LogFormat::Text => switchboard_telemetry::LogFormat::Text,
            cli::LogFormat::Json => switchboard_telemetry::LogFormat::Json,
        },
        filter: std::env::var("SWITCHBOARD_LOG").ok(),
        default_level,
        traces: service.is_some() && endpoint,
        service: service.unwrap_or("switchboard-cli"),
        service_name_set: set("OTEL_SERVICE_NAME"),
    }
}

/// The exit code for a failure (listed in `switchboard --help`), so scripts can tell
/// "retry later" from "fix something".
fn exit_code(e: &anyhow::Error) -> u8 {
    use switchboard_protocol::ErrorCode as C;
    if let Some(server) = e.downcast_ref::<client::ServerError>() {
        return match server.body.code {
            C::Unauthenticated | C::InvalidCredentials => 3,
            C::RateLimited => 6,
            C::Unavailable | C::ShuttingDown | C::SlowConsumer | C::Internal => 5,
            _ => 4,
        };
    }
    if e.chain().any(|cause| cause.downcast_ref::<std::io::Error>().is_some()) {
        return 5;
    }
    1
}
