//! The server roles: `serve` (all-in-one), and the cluster's `storage`, `router` and
//! `gateway`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchboard_gateway::ldap::LdapConfig;
use switchboard_gateway::tls::Tls;
use switchboard_gateway::{Cluster, Config, Gateway, auth};
use switchboard_presence::{RedisConfig, RedisLocator, RedisPresence};
use switchboard_storage::attachments::Blobs;
use switchboard_storage::grpc::RemoteStore;
use switchboard_storage::{Durability, PgOptions, PgStore, SqliteStore, Store};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::cli::{
    GatewayArgs, LdapArgs, LimitArgs, RouterArgs, ServeArgs, StorageArgs, SyncMode, TlsArgs,
};

fn config(
    limits: &LimitArgs,
    ldap: &LdapArgs,
    attachments: Option<Blobs>,
) -> anyhow::Result<Config> {
    Ok(Config {
        max_body_bytes: limits.max_body_bytes,
        max_attachment_bytes: limits.max_attachment_bytes,
        attachments,
        max_frame_bytes: limits.max_frame_bytes,
        rate_per_user: limits.rate_per_user,
        rate_burst: limits.rate_burst,
        reconnect_spread: Duration::from_millis(limits.reconnect_spread_ms),
        rate_per_ip: limits.rate_per_ip,
        rate_ip_burst: limits.rate_ip_burst,
        max_connections_per_user: limits.max_connections_per_user,
        max_group_members: limits.max_group_members,
        session_queue_bytes: limits.session_queue_bytes,
        sign_ins_in_flight: limits.sign_ins_in_flight,
        sign_in_queue: limits.sign_in_queue,
        login_backoff_after: limits.login_backoff_after,
        login_backoff_base: Duration::from_millis(limits.login_backoff_base_ms),
        login_lockout_after: limits.login_lockout_after,
        login_lockout: Duration::from_secs(limits.login_lockout_secs),
        login_ip_failures_burst: limits.login_ip_failures_burst,
        login_ip_failures_per_minute: limits.login_ip_failures_per_minute,
        client_ip_header: limits.client_ip_header.clone(),
        allowed_origins: limits.allowed_origins.clone(),
        ldap: ldap_config(ldap)?,
        ..Config::default()
    })
}

/// The directory sign-in settings; None without --ldap-url.
fn ldap_config(args: &LdapArgs) -> anyhow::Result<Option<LdapConfig>> {
    let Some(url) = &args.ldap_url else { return Ok(None) };
    let config = LdapConfig {
        user_dn: args.ldap_user_dn.clone(),
        search_base: args.ldap_search_base.clone(),
        user_filter: args.ldap_user_filter.clone(),
        bind_dn: args.ldap_bind_dn.clone(),
        bind_password: args.ldap_bind_password.clone(),
        admin_group: args.ldap_admin_group.clone(),
        display_name_attr: args.ldap_display_name_attr.clone(),
        org_attr: args.ldap_org_attr.clone(),
        timeout: Duration::from_millis(args.ldap_timeout_ms.max(1)),
        ..LdapConfig::new(url.clone())
    };
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(Some(config))
}

/// Binds `addr` and serves `gateway` (over TLS when configured) until SIGTERM/Ctrl-C,
/// then drains.
async fn serve_gateway(
    gateway: Gateway,
    addr: std::net::SocketAddr,
    tls: &TlsArgs,
    limits: &LimitArgs,
) -> anyhow::Result<()> {
    let tls = match (&tls.tls_cert, &tls.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::load(cert, key).context("cannot set up TLS")?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let drain = Duration::from_secs(limits.drain_secs);
    match tls {
        None => {
            println!("Switchboard is listening on http://{addr} (WebSocket: ws://{addr}/ws)");
            switchboard_gateway::run(listener, gateway, shutdown_signal(), drain).await?;
        }
        Some(tls) => {
            tokio::spawn(reload_on_sighup(tls.clone()));
            println!("Switchboard is listening on https://{addr} (WebSocket: wss://{addr}/ws)");
            switchboard_gateway::run_tls(listener, &tls, gateway, shutdown_signal(), drain).await?;
        }
    }
    println!("Switchboard stopped.");
    Ok(())
}

/// Re-reads the certificate and key on every SIGHUP (certificate rotation): new
/// connections get the new one; a file that does not load leaves the old one in place.
async fn reload_on_sighup(tls: Tls) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; TLS reload needs a restart");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => {
                    tracing::info!("TLS certificate reloaded");
                    println!("TLS certificate reloaded.");
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; keeping the old one");
                    println!("TLS certificate not reloaded (keeping the old one): {e}");
                }
            }
        }
    }
    #[cfg(not(unix))]
    drop(tls);
}

/// The gRPC server side of TLS (`storage`, `router`), when configured.
fn server_tls(tls: &TlsArgs) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&tls.tls_cert, &tls.tls_key) else { return Ok(None) };
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    Ok(Some(ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?))))
}

/// The gRPC client side of TLS (a gateway's links to storage and routers): `https://`
/// URLs need `--tls-ca`.
fn client_tls(args: &GatewayArgs) -> anyhow::Result<Option<ClientTlsConfig>> {
    let https =
        std::iter::once(&args.storage).chain(&args.router).any(|u| u.starts_with("https://"));
    match &args.tls_ca {
        Some(ca) => {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            Ok(Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))))
        }
        None if https => anyhow::bail!(
            "https:// storage or router URLs need --tls-ca (the CA that signed their certificates)"
        ),
        None => Ok(None),
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (durability, acks_survive) = match args.sync {
        SyncMode::Full => (Durability::PowerLoss, "a power loss (--sync full)"),
        SyncMode::Normal => (
            Durability::Crash,
            "a crash of the server, not a power loss or an OS crash (--sync normal)",
        ),
    };
    let store = SqliteStore::open_with(&args.data_dir, durability)
        .await
        .with_context(|| format!("cannot open the database in {}", args.data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    let blobs = args.attachments.blobs(Some(args.data_dir.join("attachments")))?;
    let gateway = Gateway::new(store.clone(), config(&args.limits, &args.ldap, blobs.clone())?);
    bootstrap_admin(&gateway).await?;
    println!("Data: {}", args.data_dir.display());
    println!("Acked messages survive {acks_survive}");
    // Retention runs beside the server and ends with it (a sweep cut short resumes at the
    // next start: every batch is its own transaction).
    let retention = tokio::spawn(switchboard_storage::retention::run(
        store,
        args.retention.config(),
        blobs,
        std::future::pending(),
    ));
    let served = serve_gateway(gateway, args.listen, &args.tls, &args.limits).await;
    retention.abort();
    served
}

/// `switchboard gateway`: a cluster gateway over remote storage, Redis and routers.
pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let config = config(&args.limits, &args.ldap, args.attachments.blobs(None)?)?;
    let tls = client_tls(&args)?;
    let store = RemoteStore::connect_lazy_tls(&args.storage, tls.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("bad --storage")?;
    let gateway_id = args.gateway_id.clone().unwrap_or_else(|| args.listen.to_string());
    let presence = RedisPresence::connect(RedisConfig {
        redis: args.redis.target(),
        prefix: args.redis.redis_prefix.clone(),
        gateway: gateway_id.clone(),
        ttl: Duration::from_secs(args.presence_ttl.max(1)),
    })
    .await
    .with_context(|| {
        format!("cannot reach {} (check --redis or --redis-cluster)", args.redis.target())
    })?;
    let cluster = Cluster { routers: args.router.clone(), gateway_id: gateway_id.clone(), tls };
    let gateway = Gateway::clustered(Arc::new(store), Arc::new(presence), cluster, config);
    println!("Gateway {gateway_id}: storage {}, routers {}", args.storage, args.router.join(","));
    serve_gateway(gateway, args.listen, &args.tls, &args.limits).await
}

/// `switchboard router`: forwards deliveries between gateways.
pub async fn router(args: RouterArgs) -> anyhow::Result<()> {
    let locator =
        RedisLocator::connect(&args.redis.target(), &args.redis.redis_prefix).await.with_context(
            || format!("cannot reach {} (check --redis or --redis-cluster)", args.redis.target()),
        )?;
    let tls = server_tls(&args.tls)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("Switchboard router is listening on {scheme}://{} (gRPC)", listener.local_addr()?);
    switchboard_router::serve_tls(listener, locator, tls, shutdown_signal()).await?;
    println!("Switchboard router stopped.");
    Ok(())
}

/// `switchboard storage`: the gRPC storage service over PostgreSQL.
pub async fn storage(args: StorageArgs) -> anyhow::Result<()> {
    let options = PgOptions {
        commit_pipeline: args.commit_pipeline.into(),
        search_words: args.search_words(),
    };
    let store = PgStore::connect_with(&args.database, options)
        .await
        .context("cannot open the PostgreSQL database (check --database)")?;
    let tls = server_tls(&args.tls)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("Switchboard storage is listening on {scheme}://{} (gRPC)", listener.local_addr()?);
    let store: Arc<dyn Store> = Arc::new(store);
    // The one place of a cluster that deletes by retention: where the data is (and the
    // files of what it deletes, when it knows the attachment store).
    let blobs = args.attachments.blobs(None)?;
    let retention = tokio::spawn(switchboard_storage::retention::run(
        store.clone(),
        args.retention.config(),
        blobs,
        std::future::pending(),
    ));
    let served =
        switchboard_storage::grpc::serve_tls(listener, store, tls, shutdown_signal()).await;
    retention.abort();
    served?;
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
    gateway.audit(switchboard_gateway::AuditEvent {
        actor: switchboard_gateway::LOCAL_ACTOR,
        action: "user.create",
        target: "admin",
        ip: None,
        detail: "admin (first start)",
    });
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
