//! The server roles: `switchboard serve` (all-in-one) and `switchboard storage`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchboard_gateway::{Config, Gateway, auth};
use switchboard_storage::{PgStore, SqliteStore};

use crate::cli::{ServeArgs, StorageArgs};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let store = SqliteStore::open(&args.data_dir)
        .await
        .with_context(|| format!("cannot open the database in {}", args.data_dir.display()))?;
    let config = Config {
        max_body_bytes: args.max_body_bytes,
        max_frame_bytes: args.max_frame_bytes,
        rate_per_user: args.rate_per_user,
        rate_burst: args.rate_burst,
        ..Config::default()
    };
    let gateway = Gateway::new(Arc::new(store), config);
    bootstrap_admin(&gateway).await?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("Switchboard is listening on http://{addr} (WebSocket: ws://{addr}/ws)");
    println!("Data: {}", args.data_dir.display());
    switchboard_gateway::run(
        listener,
        gateway,
        shutdown_signal(),
        Duration::from_secs(args.drain_secs),
    )
    .await?;
    println!("Switchboard stopped.");
    Ok(())
}

/// `switchboard storage`: the gRPC storage service over PostgreSQL.
pub async fn storage(args: StorageArgs) -> anyhow::Result<()> {
    let store = PgStore::connect(&args.database)
        .await
        .context("cannot open the PostgreSQL database (check --database)")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("Switchboard storage is listening on http://{} (gRPC)", listener.local_addr()?);
    switchboard_storage::grpc::serve(listener, Arc::new(store), shutdown_signal()).await?;
    println!("Switchboard storage stopped.");
    Ok(())
}

/// On the first start (no users yet) creates `admin` and prints its password, once.
async fn bootstrap_admin(gateway: &Gateway) -> anyhow::Result<()> {
    if gateway.store().user_count().await? > 0 {
        return Ok(());
    }
    let password = auth::random_password();
    gateway
        .create_user(None, "admin", password.clone(), "Administrator", "", true)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the admin account: {e}"))?;
    println!("Created the first account: admin");
    println!("  one-time password: {password}");
    println!("  (shown only now; sign in with `switchboard login --user admin`)");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
