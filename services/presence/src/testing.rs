//! A Redis Cluster on this machine, for tests (ours and the cluster roles' tests):
//! real `redis-server` processes, not a mock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::RedisTarget;

/// A Redis Cluster of our own on spare ports: 3 primaries and 3 replicas (`redis-server
/// --cluster-enabled yes`, then `redis-cli --cluster create`), with a 1 s node timeout so
/// a failover takes seconds. Killed, with its files, when dropped.
pub struct LocalCluster {
    dir: std::path::PathBuf,
    nodes: Vec<(u16, Option<std::process::Child>)>,
    /// The node frozen by `freeze_a_primary`, which answers nothing.
    frozen: Option<u16>,
}

impl LocalCluster {
    pub fn start() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sb-redis-cluster-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("local cluster");
        let mut nodes = Vec::new();
        while nodes.len() < 6 {
            // The cluster bus listens on port + 10000: both must be free.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .expect("local cluster")
                .local_addr()
                .expect("local cluster");
            let port = port.port();
            if port > 55_000 || std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
                continue;
            }
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                // A replica takes over however long ago it last heard from its primary.
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (run scripts/test)");
            nodes.push((port, Some(child)));
        }
        let cluster = Self { dir, nodes, frozen: None };
        for (port, _) in &cluster.nodes {
            wait_until("a cluster node to listen", || {
                std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()
            });
        }
        let addresses: Vec<String> =
            cluster.nodes.iter().map(|(port, _)| format!("127.0.0.1:{port}")).collect();
        let created = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_healthy();
        cluster
    }

    pub fn seeds(&self) -> RedisTarget {
        RedisTarget::Cluster(
            self.nodes.iter().map(|(port, _)| format!("redis://127.0.0.1:{port}")).collect(),
        )
    }

    fn cli(port: u16, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every node says the cluster is ok and sees three primaries, and every replica is in
    /// step with its primary.
    pub fn wait_healthy(&self) {
        wait_until("the Redis Cluster to be healthy", || {
            self.nodes.iter().all(|(port, _)| {
                let info = Self::cli(*port, &["cluster", "info"]);
                let replication = Self::cli(*port, &["info", "replication"]);
                info.contains("cluster_state:ok")
                    && info.contains("cluster_size:3")
                    && (replication.contains("role:master")
                        || replication.contains("master_link_status:up"))
            })
        });
    }

    /// Every live node sees a connected primary serving hash slot 0 again (the replica of
    /// the one killed took over).
    pub fn wait_failed_over(&self) {
        wait_until("a replica to take over", || {
            self.nodes.iter().filter(|(port, _)| Some(*port) != self.frozen).all(|(port, _)| {
                Self::cli(*port, &["cluster", "nodes"]).lines().any(|line| {
                    let fields: Vec<&str> = line.split(' ').collect();
                    fields.get(2).is_some_and(|flags| flags.contains("master"))
                        && fields.get(7) == Some(&"connected")
                        && fields.iter().any(|f| f.starts_with("0-"))
                })
            })
        });
    }

    /// Freezes the primary serving hash slot 0 (SIGSTOP: its connections stay open and
    /// nothing answers, as when a pod becomes unreachable; a clean death that refuses
    /// connections is the easier case); returns its port. It stays frozen until dropped.
    pub fn freeze_a_primary(&mut self) -> u16 {
        let nodes = Self::cli(self.nodes[0].0, &["cluster", "nodes"]);
        let victim = nodes
            .lines()
            .find(|line| line.contains("master") && line.split(' ').any(|f| f.starts_with("0-")))
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|address| address.split(['@', ':']).nth(1))
            .and_then(|port| port.parse::<u16>().ok())
            .expect("a primary serving slot 0");
        let node = self.nodes.iter_mut().find(|(port, _)| *port == victim).expect("local cluster");
        let child = node.1.as_ref().expect("local cluster");
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", &child.id().to_string()])
            .status()
            .expect("local cluster");
        assert!(stopped.success());
        self.frozen = Some(victim);
        victim
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
