//! Writes that held the database long are logged, with where their time went, so that
//! what makes appends wait can be told from a server's log (docs/operations.md, "Slow
//! writes"). A write is timed in three phases: waiting for a connection (on SQLite, for
//! the single writer), its statements, and its `COMMIT` (on SQLite in WAL mode, the
//! `fsync`). On SQLite the writer's share of each checkpoint is timed too, as a write
//! of kind `checkpoint`.

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
        let Some(p) = self.phases(Instant::now()) else { return };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::warn!(
            kind = self.kind,
            rows,
            total_ms = ms(p.total),
            wait_ms = ms(p.wait),
            statements_ms = ms(p.statements),
            commit_ms = ms(p.commit),
            "slow write"
        );
    }

    /// Where the time went up to `now`, when the write was slow. A phase never marked
    /// takes no time: without `began` everything before the statements counts as
    /// statements, without `committing` the commit is counted with them.
    fn phases(&self, now: Instant) -> Option<Phases> {
        let total = now - self.started;
        if total < SLOW_WRITE {
            return None;
        }
        let began = self.began.unwrap_or(self.started);
        let committing = self.committing.unwrap_or(now);
        Some(Phases {
            total,
            wait: began - self.started,
            statements: committing - began,
            commit: now - committing,
        })
    }
}

/// A slow write's time, by phase (see the module docs).
#[derive(Debug, PartialEq)]
struct Phases {
    total: Duration,
    wait: Duration,
    statements: Duration,
    commit: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_slow_write_is_split_into_wait_statements_and_commit() {
        let t0 = Instant::now();
        let timer = WriteTimer {
            kind: "append batch",
            started: t0,
            began: Some(t0 + ms(40)),
            committing: Some(t0 + ms(45)),
        };
        let phases = timer.phases(t0 + ms(60)).expect("60 ms is slow");
        assert_eq!(
            phases,
            Phases { total: ms(60), wait: ms(40), statements: ms(5), commit: ms(15) }
        );
        // Under the threshold nothing is reported.
        assert_eq!(timer.phases(t0 + ms(49)), None);
    }

    #[test]
    fn a_single_statement_write_counts_everything_as_statements() {
        let t0 = Instant::now();
        let timer = WriteTimer { kind: "append batch", started: t0, began: None, committing: None };
        let phases = timer.phases(t0 + ms(70)).expect("70 ms is slow");
        assert_eq!(
            phases,
            Phases { total: ms(70), wait: ms(0), statements: ms(70), commit: ms(0) }
        );
    }
}
