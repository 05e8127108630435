//! `switchboard-loadtest run`: provisions, starts the workers (in-process or as child
//! processes), prints progress every second, then writes `result.json` and `report.html`
//! and checks the thresholds.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::plan::{self, UserPlan};
use crate::report::{self, Meta, Series};
use crate::scenario::{Overrides, Scenario};
use crate::stats::{Tick, WorkerResult};
use crate::target;
use crate::worker::{self, Job, Line};
use crate::xmpp_client::{self, XmppTarget};

/// Everything `run` takes from the command line.
pub struct RunConfig {
    pub scenario: PathBuf,
    pub gateways: String,
    pub overrides: Overrides,
    pub out: PathBuf,
    pub admin: Admin,
    /// `Some` for `--protocol xmpp`.
    pub xmpp: Option<XmppOptions>,
    pub workers: usize,
    pub source_addrs: u8,
    pub allow_remote: bool,
}

pub enum Admin {
    Token(String),
    Password {
        user: String,
        password: String,
    },
    /// XMPP runs provision through the server's HTTP API (or not at all).
    None,
}

/// `--protocol xmpp`: the users' domain and MUC service, and where to register them.
pub struct XmppOptions {
    pub target: XmppTarget,
    /// `host:port` of ejabberd's mod_http_api (`POST /api/register`); `None`: the accounts
    /// exist already (e.g. `loadtest/peers/ejabberd.sh register`).
    pub register_api: Option<String>,
}

/// The outcome, for the exit status.
pub struct Outcome {
    pub passed: bool,
    pub summary: report::Summary,
}

enum Event {
    Tick(Tick),
    Done(WorkerResult),
    Failed(String),
}

pub async fn run(cfg: RunConfig) -> anyhow::Result<Outcome> {
    let scenario = Scenario::load(&cfg.scenario, &cfg.overrides)?;
    let gateways = target::parse_gateways(&cfg.gateways, cfg.allow_remote).await?;
    if cfg.workers == 0 || cfg.workers > 64 {
        bail!("--workers must be 1 to 64");
    }
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let scheme = if cfg.xmpp.is_some() { "xmpp://" } else { "ws://" };
    if let Some(g) = gateways.iter().find(|g| !g.url.starts_with(scheme)) {
        bail!(
            "gateway {} does not match the protocol (give {scheme}HOST:PORT with --protocol {})",
            g.url,
            if cfg.xmpp.is_some() { "xmpp" } else { "switchboard" }
        );
    }
    let authority = gateways[0].authority.clone();
    let plans = match &cfg.xmpp {
        Some(x) => {
            if scenario.kind == crate::scenario::Kind::ReconnectStorm {
                bail!("the reconnect-storm scenario is not supported with --protocol xmpp");
            }
            let plans = xmpp_client::plan(&scenario);
            if let Some(api) = &x.register_api {
                let addr = target::parse_gateways(&format!("ws://{api}"), cfg.allow_remote)
                    .await
                    .context("--xmpp-api")?;
                xmpp_client::register(&addr[0].authority, &x.target.domain, &plans).await?;
            }
            plans
        }
        None => {
            let admin_token = match cfg.admin {
                Admin::Token(t) => t,
                Admin::Password { user, password } => {
                    plan::admin_login(&authority, &user, &password).await?
                }
                Admin::None => bail!(
                    "give --admin-token (or SWITCHBOARD_LOADTEST_ADMIN_TOKEN), or --admin-user \
                     with --admin-password-stdin"
                ),
            };
            plan::provision(&scenario, &authority, &admin_token).await?
        }
    };
    // Offline users are provisioned (members of groups and 1:1 pairs) but never connect.
    let plans: Vec<UserPlan> = plans.into_iter().filter(|p| scenario.online(p.index)).collect();
    let senders = plans.iter().filter(|p| p.sends).count() as u32;
    let sources = target::source_addrs(&gateways, cfg.source_addrs);
    let run_id = worker::unix_ms();
    // Leave time for worker processes to start and read their jobs.
    let lead = if cfg.workers > 1 { 2000 + plans.len() as u64 / 20 } else { 500 };
    let start_unix_ms = worker::unix_ms() + lead;
    eprintln!(
        "running {} ({}): {} users ({} online), {} s after a {} s ramp, {} msg/s, {} worker(s), gateways {}",
        scenario.name,
        scenario.kind.as_str(),
        scenario.users,
        plans.len(),
        scenario.duration_secs,
        scenario.ramp_secs,
        scenario.rate,
        cfg.workers,
        gateways.iter().map(|g| g.url.as_str()).collect::<Vec<_>>().join(", ")
    );

    // Users are dealt round-robin, so every worker ramps over the whole ramp.
    let mut shares: Vec<Vec<UserPlan>> = vec![Vec::new(); cfg.workers];
    for p in plans {
        shares[p.index as usize % cfg.workers].push(p);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut job_files = Vec::new();
    for (i, users) in shares.into_iter().enumerate() {
        let job = Job {
            worker: i,
            scenario: scenario.clone(),
            gateways: gateways.clone(),
            sources: sources.clone(),
            users,
            total_users: scenario.users,
            senders,
            start_unix_ms,
            run_id,
            xmpp: cfg.xmpp.as_ref().map(|x| x.target.clone()),
        };
        if cfg.workers == 1 {
            spawn_in_process(job, tx.clone());
        } else {
            job_files.push(spawn_child(job, &cfg.out, tx.clone()).await?);
        }
    }
    drop(tx);

    let mut series = Series::default();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Tick(tick) => {
                if let Some(point) = series.add(tick, cfg.workers) {
                    eprintln!("{}", report::progress(&point));
                }
            }
            Event::Done(r) => results.push(r),
            Event::Failed(e) => failures.push(e),
        }
    }
    for f in job_files {
        let _ = std::fs::remove_file(f);
    }
    if !failures.is_empty() {
        bail!("{} worker(s) failed: {}", failures.len(), failures.join("; "));
    }
    let meta = Meta {
        workers: cfg.workers,
        gateways: gateways.iter().map(|g| g.url.clone()).collect(),
        started_at_unix_ms: start_unix_ms,
        elapsed_secs: (worker::unix_ms().saturating_sub(start_unix_ms)) as f64 / 1000.0,
    };
    let summary = report::summarise(&scenario, meta, &results, &series);
    let json = serde_json::to_string_pretty(&summary)?;
    std::fs::write(cfg.out.join("result.json"), json)
        .with_context(|| format!("cannot write {}", cfg.out.join("result.json").display()))?;
    std::fs::write(cfg.out.join("report.html"), crate::html::render(&summary))
        .with_context(|| format!("cannot write {}", cfg.out.join("report.html").display()))?;
    eprintln!("\n{}", report::table(&summary));
    eprintln!(
        "wrote {} and {}",
        cfg.out.join("result.json").display(),
        cfg.out.join("report.html").display()
    );
    Ok(Outcome { passed: summary.passed, summary })
}

fn spawn_in_process(job: Job, events: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let forward = {
            let events = events.clone();
            tokio::spawn(async move {
                while let Some(tick) = rx.recv().await {
                    let _ = events.send(Event::Tick(tick));
                }
            })
        };
        let result = worker::run(job, tx).await;
        let _ = forward.await;
        let _ = events.send(Event::Done(result));
    });
}

/// Writes the job to a file in `out` and starts `current_exe __worker FILE`; its JSON lines
/// become events. Returns the job file, removed after the run (it holds tokens).
async fn spawn_child(
    job: Job,
    out: &std::path::Path,
    events: mpsc::UnboundedSender<Event>,
) -> anyhow::Result<PathBuf> {
    let path = out.join(format!(".job-{}-{}.json", job.run_id, job.worker));
    std::fs::write(&path, serde_json::to_vec(&job)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("__worker")
        .arg(&path)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a worker process")?;
    let stdout = child.stdout.take().context("worker has no stdout")?;
    let worker = job.worker;
    // A worker that outlives the run by far is stuck: kill it.
    let hard_end = Duration::from_millis(job.start_unix_ms.saturating_sub(worker::unix_ms()))
        + Duration::from_secs_f64(job.scenario.ramp_secs)
        + Duration::from_secs(job.scenario.duration_secs + job.scenario.drain_secs + 60);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut done = false;
        let read = async {
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Line>(&line) {
                    Ok(Line::Tick(t)) => {
                        let _ = events.send(Event::Tick(t));
                    }
                    Ok(Line::Result(r)) => {
                        done = true;
                        let _ = events.send(Event::Done(r));
                    }
                    Err(e) => {
                        let _ =
                            events.send(Event::Failed(format!("worker {worker}: bad line: {e}")));
                    }
                }
            }
        };
        if tokio::time::timeout(hard_end, read).await.is_err() {
            let _ = child.kill().await;
        }
        let status = child.wait().await;
        if !done {
            let _ = events.send(Event::Failed(format!(
                "worker {worker} ended without a result ({status:?})"
            )));
        }
    });
    Ok(path)
}
