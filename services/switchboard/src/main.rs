//! The `switchboard` binary: parses the command line, sets up logging and hands off to
//! the command's module. Server roles live in the library crates; this file only wires.

mod admin;
mod cli;
mod client;
mod org;
mod serve;

use clap::Parser;

use cli::{Cli, Command, UserCommand};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) | Command::Storage(_) | Command::Router(_) | Command::Gateway(_) => {
            "info"
        }
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
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
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(exit_code(&e))
        }
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
