//! The server roles: `serve` (all-in-one), and the cluster's `storage`, `router` and
//! `gateway`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchboard_gateway::{Cluster, Config, Gateway, auth};
use switchboard_presence::{RedisConfig, RedisLocator, RedisPresence};
use switchboard_storage::grpc::RemoteStore;
use switchboard_storage::{PgStore, SqliteStore};

use crate::cli::{GatewayArgs, LimitArgs, RouterArgs, ServeArgs, StorageArgs};

fn config(limits: &LimitArgs) -> Config {
    Config {
        max_body_bytes: limits.max_body_bytes,
        max_frame_bytes: limits.max_frame_bytes,
        rate_per_user: limits.rate_per_user,
        rate_burst: limits.rate_burst,
        reconnect_spread: Duration::from_millis(limits.reconnect_spread_ms),
        ..Config::default()
    }
}

/// Binds `addr` and serves `gateway` until SIGTERM/Ctrl-C, then drains.
async fn serve_gateway(
    gateway: Gateway,
    addr: std::net::SocketAddr,
    limits: &LimitArgs,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    println!("Switchboard is listening on http://{addr} (WebSocket: ws://{addr}/ws)");
    let drain = Duration::from_secs(limits.drain_secs);
    switchboard_gateway::run(listener, gateway, shutdown_signal(), drain).await?;
    println!("Switchboard stopped.");
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let store = SqliteStore::open(&args.data_dir)
        .await
        .with_context(|| format!("cannot open the database in {}", args.data_dir.display()))?;
    let gateway = Gateway::new(Arc::new(store), config(&args.limits));
    bootstrap_admin(&gateway).await?;
    println!("Data: {}", args.data_dir.display());
    serve_gateway(gateway, args.listen, &args.limits).await
}

/// `switchboard gateway`: a cluster gateway over remote storage, Redis and routers.
pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let store = RemoteStore::connect_lazy(&args.storage)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("bad --storage")?;
    let gateway_id = args.gateway_id.clone().unwrap_or_else(|| args.listen.to_string());
    let presence = RedisPresence::connect(RedisConfig {
        url: args.redis.redis.clone(),
        prefix: args.redis.redis_prefix.clone(),
        gateway: gateway_id.clone(),
        ttl: Duration::from_secs(args.presence_ttl.max(1)),
    })
    .await
    .context("cannot reach Redis (check --redis)")?;
    let cluster = Cluster { routers: args.router.clone(), gateway_id: gateway_id.clone() };
    let gateway =
        Gateway::clustered(Arc::new(store), Arc::new(presence), cluster, config(&args.limits));
    println!("Gateway {gateway_id}: storage {}, routers {}", args.storage, args.router.join(","));
    serve_gateway(gateway, args.listen, &args.limits).await
}

/// `switchboard router`: forwards deliveries between gateways.
pub async fn router(args: RouterArgs) -> anyhow::Result<()> {
    let locator = RedisLocator::connect(&args.redis.redis, &args.redis.redis_prefix)
        .await
        .context("cannot reach Redis (check --redis)")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("Switchboard router is listening on http://{} (gRPC)", listener.local_addr()?);
    switchboard_router::serve(listener, locator, shutdown_signal()).await?;
    println!("Switchboard router stopped.");
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
