//! A test's own data on the shared servers ([`TestData`]: a fresh PostgreSQL database, a
//! Redis key prefix) and a cluster of real role processes over it ([`Cluster`]), so that
//! each test states only what its cluster has that the others' do not.

use super::{Proc, all_ready, forget_prefix, spawn_with_env};
use sqlx::Connection;

/// The PostgreSQL server the tests make their databases on (`SWITCHBOARD_TEST_POSTGRES`,
/// an admin connection URL; by default the local one scripts/test starts).
fn postgres_admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis the tests keep their prefixes on (`SWITCHBOARD_TEST_REDIS`; by default the
/// local one scripts/test starts).
fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A test's own data on the shared servers: the database `sbtest_{test}_{pid}` (made
/// afresh) and the Redis key prefix `sbtest:{test}:{pid}` (`-` in `test` becomes `_` in
/// the database's name). With one test per process (nextest), or a different `test` for
/// each test of a process, no two tests meet. [`TestData::remove`] drops both at the end
/// of a test that passed; a failed one leaves them for a look, and its next run starts
/// afresh.
pub struct TestData {
    /// The database's URL, for `--database`.
    pub database: String,
    /// The local Redis's URL (a test may bring a Redis of its own instead).
    pub redis_url: String,
    /// The key prefix, for `--redis-prefix`.
    pub prefix: String,
    name: String,
    admin: sqlx::PgConnection,
}

impl TestData {
    pub async fn new(test: &str) -> Self {
        let pid = std::process::id();
        let name = format!("sbtest_{}_{pid}", test.replace('-', "_"));
        let admin_url = postgres_admin_url();
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        let database = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
        Self {
            database,
            redis_url: redis_url(),
            prefix: format!("sbtest:{test}:{pid}"),
            name,
            admin,
        }
    }

    /// `--redis URL --redis-prefix PREFIX`, as routers and gateways take them.
    pub fn redis_args(&self) -> Vec<String> {
        ["--redis", &self.redis_url, "--redis-prefix", &self.prefix].map(str::to_owned).to_vec()
    }

    /// Forgets the prefix's keys and drops the database (ending its connections).
    pub async fn remove(mut self) {
        forget_prefix(&self.redis_url, &self.prefix).await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut self.admin)
            .await
            .unwrap();
    }
}

/// One storage, routers and gateways (ids `gw1`, `gw2`, ...) as real processes on ephemeral
/// ports, each killed when dropped (or taken out of its field and dropped).
pub struct Cluster {
    /// The process and its `host:port`.
    pub storage: (Proc, String),
    pub routers: Vec<(Proc, String)>,
    pub gateways: Vec<(Proc, String)>,
    how: ClusterBuilder,
}

/// Extra environment variables of a process, by its role.
type RoleEnv = dyn Fn(&str) -> Vec<(String, String)> + Send + Sync;

/// What a test's cluster has that the others' do not; see [`Cluster::on`].
pub struct ClusterBuilder {
    database: String,
    redis: Vec<String>,
    routers: usize,
    gateways: usize,
    storage_args: Vec<String>,
    router_args: Vec<String>,
    gateway_args: Vec<String>,
    scheme: &'static str,
    env: Box<RoleEnv>,
}

impl Cluster {
    /// A cluster over `data`: by default one router and one gateway, on the data's prefix
    /// of the local Redis, plain HTTP, nothing more on any command line.
    pub fn on(data: &TestData) -> ClusterBuilder {
        ClusterBuilder {
            database: data.database.clone(),
            redis: data.redis_args(),
            routers: 1,
            gateways: 1,
            storage_args: Vec::new(),
            router_args: Vec::new(),
            gateway_args: Vec::new(),
            scheme: "http",
            env: Box::new(|_| Vec::new()),
        }
    }

    /// The gateways' addresses, in order.
    pub fn addrs(&self) -> Vec<String> {
        self.gateways.iter().map(|(_, addr)| addr.clone()).collect()
    }

    /// A storage process on `listen` (the address of one that stopped, to replace it).
    pub fn spawn_storage(&self, listen: &str) -> (Proc, String) {
        self.how.spawn_storage(listen)
    }

    /// A router on `listen` (an address of one that stopped, to replace it).
    pub fn spawn_router(&self, listen: &str) -> (Proc, String) {
        self.how.spawn_router(listen)
    }

    /// Gateway `gw{n + 1}` on `listen` (its address, to replace it after it stopped),
    /// linked to the storage and every router.
    pub fn spawn_gateway(&self, n: usize, listen: &str) -> (Proc, String) {
        let routers: Vec<&str> = self.routers.iter().map(|(_, addr)| addr.as_str()).collect();
        self.how.spawn_gateway(n, listen, &self.storage.1, &routers)
    }
}

impl ClusterBuilder {
    pub fn routers(mut self, n: usize) -> Self {
        self.routers = n;
        self
    }

    pub fn gateways(mut self, n: usize) -> Self {
        self.gateways = n;
        self
    }

    /// More arguments for the storage process.
    pub fn storage_args(mut self, args: &[&str]) -> Self {
        self.storage_args.extend(owned(args));
        self
    }

    /// More arguments for every router.
    pub fn router_args(mut self, args: &[&str]) -> Self {
        self.router_args.extend(owned(args));
        self
    }

    /// More arguments for every gateway.
    pub fn gateway_args(mut self, args: &[&str]) -> Self {
        self.gateway_args.extend(owned(args));
        self
    }

    /// Where routers and gateways find Redis, instead of the data's prefix on the local
    /// Redis (`--redis URL` of a Redis of the test's own, `--redis-cluster NODES`).
    pub fn redis(mut self, args: &[&str]) -> Self {
        self.redis = owned(args);
        self
    }

    /// The storage's and routers' URLs are `https://` (give them `--tls-cert`/`--tls-key`,
    /// the gateways `--tls-ca`).
    pub fn https(mut self) -> Self {
        self.scheme = "https";
        self
    }

    /// More environment for each process, by role: `storage`, `router` or the gateway's
    /// id.
    pub fn env(
        mut self,
        env: impl Fn(&str) -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> Self {
        self.env = Box::new(env);
        self
    }

    /// Starts storage, the routers, then the gateways; returns once every gateway is
    /// ready (storage answers, the routers are linked).
    pub async fn start(self) -> Cluster {
        let storage = self.spawn_storage("127.0.0.1:0");
        let routers: Vec<(Proc, String)> =
            (0..self.routers).map(|_| self.spawn_router("127.0.0.1:0")).collect();
        let router_addrs: Vec<&str> = routers.iter().map(|(_, addr)| addr.as_str()).collect();
        let gateways: Vec<(Proc, String)> = (0..self.gateways)
            .map(|n| self.spawn_gateway(n, "127.0.0.1:0", &storage.1, &router_addrs))
            .collect();
        let cluster = Cluster { storage, routers, gateways, how: self };
        all_ready(&cluster.addrs()).await;
        cluster
    }

    fn spawn(&self, args: &[&str], role: &str) -> (Proc, String) {
        let env = (self.env)(role);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        spawn_with_env(args, &env)
    }

    fn spawn_storage(&self, listen: &str) -> (Proc, String) {
        let args = [
            &["storage", "--listen", listen, "--database", &self.database][..],
            &str_refs(&self.storage_args)[..],
        ]
        .concat();
        self.spawn(&args, "storage")
    }

    fn spawn_router(&self, listen: &str) -> (Proc, String) {
        let args = [
            &["router", "--listen", listen][..],
            &str_refs(&self.redis)[..],
            &str_refs(&self.router_args)[..],
        ]
        .concat();
        self.spawn(&args, "router")
    }

    fn spawn_gateway(
        &self,
        n: usize,
        listen: &str,
        storage: &str,
        routers: &[&str],
    ) -> (Proc, String) {
        let id = format!("gw{}", n + 1);
        let storage_url = format!("{}://{storage}", self.scheme);
        let router_urls: Vec<String> =
            routers.iter().map(|addr| format!("{}://{addr}", self.scheme)).collect();
        let router_urls = router_urls.join(",");
        let args = [
            &["gateway", "--listen", listen, "--gateway-id", &id][..],
            &["--storage", &storage_url, "--router", &router_urls][..],
            &str_refs(&self.redis)[..],
            &str_refs(&self.gateway_args)[..],
        ]
        .concat();
        self.spawn(&args, &id)
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

fn str_refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
