//! Writes that held the database long are logged, with where their time went, so that
//! what makes appends wait can be told from a server's log (docs/operations.md, "Slow
//! writes"). A write is timed in three phases: waiting for a connection (on SQLite, for
//! the single writer), its statements, and its `COMMIT` (on SQLite in WAL mode, the
//! `fsync` and, every thousand pages of log, a checkpoint).

use std::time::{Duration, Instant};

/// A write that took this long in all is logged.
pub(crate) const SLOW_WRITE: Duration = Duration::from_millis(50);

/// Times one write; see the module docs.
pub(crate) struct WriteTimer {
    kind: &'static str,
    started: Instant,
    began: Option<Instant>,
    committing: Option<Instant>,
}

impl WriteTimer {
    /// Call before asking for the connection.
    pub(crate) fn start(kind: &'static str) -> Self {
        Self { kind, started: Instant::now(), began: None, committing: None }
    }

    /// Call once the transaction has begun.
    pub(crate) fn began(&mut self) {
        self.began = Some(Instant::now());
    }

    /// Call just before `COMMIT`.
    pub(crate) fn committing(&mut self) {
        self.committing = Some(Instant::now());
    }

    /// Call after `COMMIT`; logs the write when it was slow. `rows`: what it wrote.
    pub(crate) fn done(self, rows: usize) {
        let now = Instant::now();
        let took = now - self.started;
        if took < SLOW_WRITE {
            return;
        }
        let began = self.began.unwrap_or(self.started);
        let committing = self.committing.unwrap_or(now);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::warn!(
            kind = self.kind,
            rows,
            total_ms = ms(took),
            wait_ms = ms(began - self.started),
            statements_ms = ms(committing - began),
            commit_ms = ms(now - committing),
            "slow write"
        );
    }
}
