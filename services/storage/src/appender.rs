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
//! when the last commit ended moments ago (load is steady), a small batch waits up to
//! [`LINGER`] for more before it commits; at light load nothing waits.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

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
/// Longest a batch waits for company (tokio's timer resolution is one millisecond).
const LINGER: Duration = Duration::from_millis(1);
/// A batch this big commits at once.
const LINGER_UNTIL: usize = 8;
/// A first append arriving this soon after the last commit ended means steady load.
const BUSY: Duration = Duration::from_millis(2);

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
    /// Starts `count` appender tasks, each committing its batches with `commit`. They
    /// stop when `Appenders` is dropped and their queues are drained.
    pub fn spawn<F>(count: usize, commit: F) -> Self
    where
        F: Fn(Vec<NewMessage>) -> BatchFuture + Clone + Send + Sync + 'static,
    {
        let queues = (0..count.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(commit.clone(), rx));
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

async fn run<F>(commit: F, mut queue: mpsc::Receiver<Job>)
where
    F: Fn(Vec<NewMessage>) -> BatchFuture,
{
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut last_commit = None::<Instant>;
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        if jobs.len() < LINGER_UNTIL && last_commit.is_some_and(|t| t.elapsed() < BUSY) {
            let deadline = Instant::now() + LINGER;
            while jobs.len() < LINGER_UNTIL {
                let room = MAX_BATCH - jobs.len();
                let more = queue.recv_many(&mut jobs, room);
                match tokio::time::timeout_at(deadline, more).await {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
        let size = jobs.len();
        METRICS.queued.add(-(size as i64));
        let span = commit_span(&jobs);
        let mut replies = Vec::with_capacity(size);
        let mut batch = Vec::with_capacity(size);
        for job in jobs.drain(..) {
            batch.push(job.message);
            replies.push((job.reply, job.queued_at));
        }
        let started = Instant::now();
        let committed = tracing::Instrument::instrument(commit(batch), span).await;
        let now = Instant::now();
        METRICS.commit.observe_duration(now - started);
        METRICS.batch_size.observe(size as u64);
        match committed {
            Ok(outcomes) => {
                METRICS.appended.add(size as u64);
                for ((reply, queued_at), outcome) in replies.into_iter().zip(outcomes) {
                    METRICS.append.observe_duration(now - queued_at);
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                METRICS.failed_batches.inc();
                tracing::warn!(error = %e, size, "append batch failed");
                for (reply, _) in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
        last_commit = Some(now);
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
