//! A worker: runs the simulated users of one [`Job`] in this process and reports a
//! [`Tick`] every second and a [`WorkerResult`] at the end. With `--workers 1` the run
//! calls [`run`] in-process; with more, each worker is this binary re-invoked as
//! `switchboard-loadtest __worker JOB.json`, writing ticks and the result as JSON lines on
//! stdout ([`serve_child`]).

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::User;
use crate::plan::UserPlan;
use crate::scenario::{Kind, Scenario};
use crate::stats::{Stats, Tick, WorkerResult};
use crate::target::{Gateway, limit_advice};
use crate::xmpp_client::{XmppTarget, XmppUser};

/// How long after the drain a worker waits for stuck users before abandoning them.
const GRACE: Duration = Duration::from_secs(15);

/// Everything a worker needs; written to a file for worker processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub worker: usize,
    pub scenario: Scenario,
    pub gateways: Vec<Gateway>,
    pub sources: Vec<IpAddr>,
    pub users: Vec<UserPlan>,
    /// Users and senders of the whole run (ramp position and rate share).
    pub total_users: u32,
    pub senders: u32,
    /// The common start (Unix milliseconds), so workers ramp and tick in step.
    pub start_unix_ms: u64,
    /// Unique per run: goes into client_msg_ids so a re-run never collides with one.
    pub run_id: u64,
    /// Set for `--protocol xmpp`: the users speak XMPP to this domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmpp: Option<XmppTarget>,
}

/// What the users of a worker share.
pub struct Ctx {
    pub scenario: Scenario,
    pub gateways: Vec<Gateway>,
    pub sources: Vec<IpAddr>,
    pub stats: Stats,
    pub total_users: u32,
    pub senders: u32,
    pub run_id: u64,
    pub start: Instant,
    /// Sends of this worker not yet acknowledged. The drain asks for the final seqs only
    /// once it is 0: a message still queued in the server must not be missed.
    pub outstanding: std::sync::atomic::AtomicI64,
    /// Limits already reported on stderr (each once).
    limits: Mutex<HashSet<&'static str>>,
}

impl Ctx {
    pub fn traffic_start(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.scenario.ramp_secs)
    }

    pub fn traffic_end(&self) -> Instant {
        self.traffic_start() + Duration::from_secs(self.scenario.duration_secs)
    }

    /// When users stop waiting for the last deliveries.
    pub fn drain_end(&self) -> Instant {
        self.traffic_end() + Duration::from_secs(1 + self.scenario.drain_secs)
    }

    pub fn storm_at(&self) -> Option<Instant> {
        (self.scenario.kind == Kind::ReconnectStorm).then(|| {
            self.traffic_start() + Duration::from_secs_f64(self.scenario.reconnect.at_secs)
        })
    }

    /// Says on stderr, once per kind, that a machine or process limit refused a connection.
    pub fn limit_hit(&self, kind: &'static str, detail: &str) {
        let first = self.limits.lock().unwrap_or_else(|e| e.into_inner()).insert(kind);
        if first {
            eprintln!("LIMIT {kind}: {detail}: {}", limit_advice(kind));
        }
    }
}

pub fn unix_ms() -> u64 {
    crate::client::unix_us() / 1000
}

/// Runs the job's users to the end of the run; sends a tick every second.
pub async fn run(job: Job, ticks: mpsc::UnboundedSender<Tick>) -> WorkerResult {
    let now = unix_ms();
    let start = Instant::now() + Duration::from_millis(job.start_unix_ms.saturating_sub(now));
    let ctx = Arc::new(Ctx {
        scenario: job.scenario,
        gateways: job.gateways,
        sources: job.sources,
        stats: Stats::default(),
        total_users: job.total_users,
        senders: job.senders,
        run_id: job.run_id,
        start,
        outstanding: Default::default(),
        limits: Mutex::default(),
    });
    let mut users = JoinSet::new();
    for plan in job.users {
        match &job.xmpp {
            Some(target) => users.spawn(XmppUser::new(ctx.clone(), plan, target.clone()).run()),
            None => users.spawn(User::new(ctx.clone(), plan).run()),
        };
    }
    let hard_end = ctx.drain_end() + GRACE;
    let mut second = 1u64;
    loop {
        let next_tick = start + Duration::from_secs(second);
        tokio::select! {
            joined = users.join_next() => {
                if joined.is_none() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(next_tick) => {
                let _ = ticks.send(ctx.stats.tick(second));
                second += 1;
            }
            _ = tokio::time::sleep_until(hard_end) => {
                ctx.stats.kind("abandoned_users");
                users.abort_all();
                break;
            }
        }
    }
    let _ = ticks.send(ctx.stats.tick(second));
    ctx.stats.result()
}

/// One line of a worker process's stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    Tick(Tick),
    Result(WorkerResult),
}

/// The hidden `__worker` subcommand: runs the job in `path`, printing JSON lines.
pub async fn serve_child(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read(path).with_context(|| format!("cannot read job {}", path.display()))?;
    let job: Job = serde_json::from_slice(&text).context("invalid job file")?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(tick) = rx.recv().await {
            if let Ok(line) = serde_json::to_string(&Line::Tick(tick)) {
                println!("{line}");
            }
        }
    });
    let result = run(job, tx).await;
    let _ = printer.await;
    println!("{}", serde_json::to_string(&Line::Result(result))?);
    Ok(())
}
