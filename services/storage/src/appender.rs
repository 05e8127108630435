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

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

use crate::{Appended, NewMessage, Result, StoreError};

/// Most messages committed in one transaction.
const MAX_BATCH: usize = 512;
/// Appends waiting per appender; senders wait (backpressure) when it is full.
const QUEUE: usize = 8192;

/// The outcome of committing one batch: per message, in the batch's order.
pub(crate) type BatchFuture = Pin<Box<dyn Future<Output = Result<Vec<Result<Appended>>>> + Send>>;

struct Job {
    message: NewMessage,
    reply: oneshot::Sender<Result<Appended>>,
}

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
        queue.send(Job { message, reply }).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn run<F>(commit: F, mut queue: mpsc::Receiver<Job>)
where
    F: Fn(Vec<NewMessage>) -> BatchFuture,
{
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (batch, replies): (Vec<_>, Vec<_>) =
            jobs.drain(..).map(|j| (j.message, j.reply)).unzip();
        let size = batch.len();
        match commit(batch).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size, "append batch failed");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
    }
}
