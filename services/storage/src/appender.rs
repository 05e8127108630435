//! Group commit for message appends, shared by both backends.
//!
//! Sends queue up in bounded channels; an appender task takes everything waiting (up to
//! [`MAX_BATCH`]) and stores it in one transaction, so one fsync covers many messages.
//! Each sender's reply is sent only after that commit returns: an ack never runs ahead of
//! durability. A database error fails the whole batch and nothing of it is stored, so
//! every sender sees either its seq or a retryable error.
//!
//! With several appenders, a message goes to the one chosen by its sender: one sender's
//! messages (and retries) are then stored in the order sent, by one task.
//!
//! A batch costs the database far more than one more message in it (PostgreSQL: about
//! 300 us of CPU per `append_batch` call against 6 us per message in it). Under steady
//! load an appender that commits whatever is waiting the moment it is free runs batches
//! of one or two, back to back, and spends the database's CPU on the per-batch part. So
//! batches gather while commits are under way:
//!
//! - An appender may have up to [`Pipeline::depth`] batches committing at once. While one
//!   commits, the next gathers; it starts as soon as [`Pipeline::linger_until`] appends
//!   wait, or when the commit before it ends. A commit in flight is the timer.
//! - With nothing committing, under steady load (the last commit ended moments ago), a
//!   small batch waits up to [`Pipeline::linger`] for more; at light load nothing waits.
//!
//! Batches that commit at once must not reorder one sender's messages (the database
//! would take their locks in either order): an append whose sender has an append in a
//! batch still committing waits for that commit to end, behind it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use switchboard_telemetry::trace;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Span;

use crate::metrics::APPENDERS as METRICS;
use crate::{Appended, NewMessage, Result, StoreError};

/// Most messages committed in one transaction.
const MAX_BATCH: usize = 512;
/// Appends waiting per appender; senders wait (backpressure) when it is full.
const QUEUE: usize = 8192;
/// A first append arriving this soon after the last commit ended means steady load.
const BUSY: Duration = Duration::from_millis(2);

/// How an appender gathers and commits batches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pipeline {
    /// Batches committing at once (one database connection each). One where the database
    /// has a single writer anyway (SQLite).
    pub depth: usize,
    /// Longest a batch waits for company when nothing is committing, under steady load
    /// (tokio's timer resolution is one millisecond). Zero: no timer.
    pub linger: Duration,
    /// A batch this big starts at once (in a free slot, even while another commits).
    pub linger_until: usize,
}

/// The outcome of committing one batch: per message, in the batch's order.
pub(crate) type BatchFuture = Pin<Box<dyn Future<Output = Result<Vec<Result<Appended>>>> + Send>>;

struct Job {
    message: NewMessage,
    reply: oneshot::Sender<Result<Appended>>,
    queued_at: Instant,
    /// The append's span when it is in a sampled trace (the batch's commit span is its
    /// child or links to it); `Span::none()` otherwise.
    span: Span,
}

/// Most other appends' spans a batch's commit span links to.
const MAX_LINKS: usize = 32;

pub(crate) struct Appenders {
    queues: Vec<mpsc::Sender<Job>>,
}

impl Appenders {
    /// Starts `count` appender tasks, each committing its batches with `commit` as
    /// `pipeline` says. They stop when `Appenders` is dropped and their queues are drained.
    pub fn spawn<F>(count: usize, pipeline: Pipeline, commit: F) -> Self
    where
        F: Fn(Vec<NewMessage>) -> BatchFuture + Clone + Send + Sync + 'static,
    {
        let queues = (0..count.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(commit.clone(), rx, pipeline));
                tx
            })
            .collect();
        Self { queues }
    }

    pub async fn append(&self, message: NewMessage) -> Result<Appended> {
        let queue = &self.queues[message.sender.id.unsigned_abs() as usize % self.queues.len()];
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable("the message writer has stopped".into());
        let span = if trace::sampled_here() { Span::current() } else { Span::none() };
        let job = Job { message, reply, queued_at: Instant::now(), span };
        queue.send(job).await.map_err(|_| closed())?;
        METRICS.queued.inc();
        answer.await.map_err(|_| closed())?
    }
}

/// A batch being committed: its senders and, per message, the reply and queueing time.
type Replies = Vec<(i64, oneshot::Sender<Result<Appended>>, Instant)>;
type Commit = Pin<Box<dyn Future<Output = (Replies, Result<Vec<Result<Appended>>>)> + Send>>;

/// The appends an appender holds: in arrival order, with the senders whose appends are in
/// a batch still committing (those senders' next appends wait).
struct Waiting {
    jobs: VecDeque<Job>,
    /// Sender -> its appends in batches committing now.
    committing: HashMap<i64, usize>,
    /// Scratch: senders passed over in the current scan (their later appends wait too).
    passed: HashSet<i64>,
}

impl Waiting {
    /// Appends that may join a batch now, counted up to `limit`.
    fn ready(&mut self, limit: usize) -> usize {
        if self.committing.is_empty() {
            return self.jobs.len().min(limit);
        }
        self.passed.clear();
        let mut n = 0;
        for job in &self.jobs {
            let sender = job.message.sender.id;
            if self.committing.contains_key(&sender) || self.passed.contains(&sender) {
                self.passed.insert(sender);
            } else {
                n += 1;
                if n == limit {
                    break;
                }
            }
        }
        n
    }

    /// Takes up to [`MAX_BATCH`] appends that may commit now, in order, and marks their
    /// senders as committing.
    fn take_batch(&mut self) -> Vec<Job> {
        let mut batch = Vec::with_capacity(self.jobs.len().min(MAX_BATCH));
        if self.committing.is_empty() {
            let n = self.jobs.len().min(MAX_BATCH);
            batch.extend(self.jobs.drain(..n));
        } else {
            self.passed.clear();
            let mut kept = VecDeque::with_capacity(self.jobs.len());
            for job in self.jobs.drain(..) {
                let sender = job.message.sender.id;
                if batch.len() == MAX_BATCH
                    || self.committing.contains_key(&sender)
                    || self.passed.contains(&sender)
                {
                    self.passed.insert(sender);
                    kept.push_back(job);
                } else {
                    batch.push(job);
                }
            }
            self.jobs = kept;
        }
        for job in &batch {
            *self.committing.entry(job.message.sender.id).or_default() += 1;
        }
        batch
    }

    fn committed(&mut self, replies: &Replies) {
        for (sender, _, _) in replies {
            if let Some(n) = self.committing.get_mut(sender) {
                *n -= 1;
                if *n == 0 {
                    self.committing.remove(sender);
                }
            }
        }
    }
}

async fn run<F>(commit: F, mut queue: mpsc::Receiver<Job>, pipeline: Pipeline)
where
    F: Fn(Vec<NewMessage>) -> BatchFuture,
{
    let depth = pipeline.depth.max(1);
    let until = pipeline.linger_until.max(1);
    let mut waiting =
        Waiting { jobs: VecDeque::new(), committing: HashMap::new(), passed: HashSet::new() };
    let mut commits = FuturesUnordered::<Commit>::new();
    let mut incoming = Vec::with_capacity(MAX_BATCH);
    let mut open = true;
    let mut last_commit = None::<Instant>;
    let mut linger_until = None::<Instant>;
    // Whether the appends waiting have gathered behind a commit (they need no timer).
    let mut gathered = false;
    loop {
        while commits.len() < depth {
            let ready = waiting.ready(until);
            if ready == 0 {
                break;
            }
            let now = Instant::now();
            let start = if ready >= until || !open {
                true
            } else if !commits.is_empty() {
                // The commit under way is the timer: gather until it ends.
                gathered = true;
                false
            } else if gathered {
                true
            } else if let Some(deadline) = linger_until {
                deadline <= now
            } else if pipeline.linger.is_zero() || last_commit.is_none_or(|t| now - t >= BUSY) {
                true
            } else {
                linger_until = Some(now + pipeline.linger);
                false
            };
            if !start {
                break;
            }
            linger_until = None;
            gathered = false;
            commits.push(start_batch(&commit, waiting.take_batch()));
        }
        if !open && waiting.jobs.is_empty() && commits.is_empty() {
            return;
        }
        let room = open && waiting.jobs.len() < QUEUE;
        let linger = async {
            match linger_until {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            Some((replies, committed)) = commits.next(), if !commits.is_empty() => {
                waiting.committed(&replies);
                answer(replies, committed);
                last_commit = Some(Instant::now());
            }
            n = queue.recv_many(&mut incoming, MAX_BATCH), if room => {
                if n == 0 {
                    open = false;
                }
                waiting.jobs.extend(incoming.drain(..));
            }
            () = linger => {}
        }
    }
}

/// Starts committing `jobs`; the future answers with their replies and the outcome.
fn start_batch<F>(commit: &F, jobs: Vec<Job>) -> Commit
where
    F: Fn(Vec<NewMessage>) -> BatchFuture,
{
    let size = jobs.len();
    METRICS.queued.add(-(size as i64));
    let span = commit_span(&jobs);
    let mut replies = Vec::with_capacity(size);
    let mut batch = Vec::with_capacity(size);
    for job in jobs {
        replies.push((job.message.sender.id, job.reply, job.queued_at));
        batch.push(job.message);
    }
    let committing = tracing::Instrument::instrument(commit(batch), span);
    Box::pin(async move {
        let started = Instant::now();
        let committed = committing.await;
        METRICS.commit.observe_duration(started.elapsed());
        METRICS.batch_size.observe(size as u64);
        (replies, committed)
    })
}

/// Answers every append of a finished batch: its outcome, or the batch's error.
fn answer(replies: Replies, committed: Result<Vec<Result<Appended>>>) {
    let now = Instant::now();
    let size = replies.len();
    match committed {
        Ok(outcomes) => {
            METRICS.appended.add(size as u64);
            for ((_, reply, queued_at), outcome) in replies.into_iter().zip(outcomes) {
                METRICS.append.observe_duration(now - queued_at);
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            METRICS.failed_batches.inc();
            tracing::warn!(error = %e, size, "append batch failed");
            for (_, reply, _) in replies {
                let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
            }
        }
    }
}

/// The span of one batch's commit (the SQL): a child of the first traced append in it,
/// linked to the others (a batch belongs to many traces). Disabled when traces are off.
fn commit_span(jobs: &[Job]) -> Span {
    let mut traced = jobs.iter().filter(|j| !j.span.is_disabled());
    let Some(first) = traced.next() else { return Span::none() };
    let span = tracing::debug_span!(
        parent: &first.span,
        "db.append_batch",
        otel.kind = "client",
        batch_size = jobs.len(),
    );
    for other in traced.take(MAX_LINKS) {
        span.follows_from(&other.span);
    }
    span
}
