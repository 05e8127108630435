//! Live deliveries that overtake each other. Under load, the messages of one conversation
//! reach a session by different paths (the replies of two `AppendMany` calls in flight,
//! this gateway's own fan-out and a router's), so seq 11 may arrive a few milliseconds
//! before seq 10. Reading the "gap" from storage at once would cost a history query per
//! overtaking, which grows with the load that causes it. Instead the session's writer
//! holds a message that arrives ahead of a gap for up to [`WAIT`]: if the missing seqs
//! arrive live meanwhile, everything goes out in order without storage; if not (a router
//! or Redis outage dropped them), the writer fills the gap from storage as before.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::time::Instant;

/// Longest a message waits for the seqs before it to arrive live.
pub(crate) const WAIT: Duration = Duration::from_millis(25);
/// Most messages held per conversation; one more fills the gap from storage at once.
pub(crate) const MAX_PER_CONVERSATION: usize = 256;

/// A message frame as the writer sends it; or, `ack`, the `ack` that takes the place of
/// the session's own message (`auth.echo` false), which is written even after a backfill
/// has sent its seq.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Held {
    pub frame: Utf8Bytes,
    pub published_us: i64,
    pub ack: bool,
}

/// The messages a session holds back, per conversation, by seq.
#[derive(Debug, Default)]
pub(crate) struct Reorder {
    held: HashMap<i64, BTreeMap<i64, Held>>,
    /// When the oldest held message stops waiting (none held: `None`).
    deadline: Option<Instant>,
}

impl Reorder {
    /// Holds `seq` of `conversation` until the seqs before it arrive. False when the
    /// conversation already holds [`MAX_PER_CONVERSATION`]: fill it from storage now
    /// (the message is held anyway and comes out with the rest).
    pub fn hold(&mut self, conversation: i64, seq: i64, message: Held) -> bool {
        let held = self.held.entry(conversation).or_default();
        held.insert(seq, message);
        self.deadline.get_or_insert_with(|| Instant::now() + WAIT);
        held.len() <= MAX_PER_CONVERSATION
    }

    /// The held messages of `conversation` that follow `last` without a gap, in order
    /// (and drops any at or below `last`, sent meanwhile by a backfill, but acks).
    pub fn ready(&mut self, conversation: i64, mut last: i64) -> Vec<(i64, Held)> {
        let mut out = Vec::new();
        let Some(held) = self.held.get_mut(&conversation) else { return out };
        while let Some(entry) = held.first_entry() {
            let seq = *entry.key();
            if seq > last + 1 {
                break;
            }
            let message = entry.remove();
            if seq == last + 1 {
                out.push((seq, message));
                last = seq;
            } else if message.ack {
                out.push((seq, message));
            }
        }
        if held.is_empty() {
            self.held.remove(&conversation);
            self.settle();
        }
        out
    }

    /// Everything `conversation` holds, in seq order, for the writer to send after
    /// filling the gaps before each from storage.
    pub fn take(&mut self, conversation: i64) -> BTreeMap<i64, Held> {
        let held = self.held.remove(&conversation).unwrap_or_default();
        self.settle();
        held
    }

    /// The conversations holding messages.
    pub fn conversations(&self) -> Vec<i64> {
        self.held.keys().copied().collect()
    }

    /// When the writer should stop waiting and fill every gap from storage.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Nothing held, nothing to wait for.
    fn settle(&mut self) {
        if self.held.is_empty() {
            self.deadline = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(n: i64) -> Held {
        Held { frame: Utf8Bytes::from(format!("m{n}")), published_us: n, ack: false }
    }

    fn seqs(ready: &[(i64, Held)]) -> Vec<i64> {
        ready.iter().map(|(seq, _)| *seq).collect()
    }

    #[test]
    fn overtaken_messages_come_out_in_order_once_the_gap_fills() {
        let mut r = Reorder::default();
        assert_eq!(r.deadline(), None);
        let start = Instant::now();
        assert!(r.hold(7, 12, held(12)));
        assert!(r.hold(7, 11, held(11)));
        let deadline = r.deadline().unwrap();
        assert!(deadline >= start + WAIT && deadline <= Instant::now() + WAIT);
        // Seq 10 has not come: nothing follows 9 yet.
        assert!(r.ready(7, 9).is_empty());
        // Seq 10 arrived live and was sent: 11 and 12 follow it, in order.
        let out = r.ready(7, 10);
        assert_eq!(seqs(&out), [11, 12]);
        assert_eq!(out[0].1, held(11));
        assert_eq!(r.deadline(), None, "nothing held, nothing to wait for");
        assert!(r.conversations().is_empty());
    }

    #[test]
    fn a_backfill_that_sent_held_seqs_drops_them_and_stops_at_the_next_gap() {
        let mut r = Reorder::default();
        r.hold(1, 5, held(5));
        r.hold(1, 6, held(6));
        r.hold(1, 9, held(9));
        r.hold(2, 3, held(3));
        // A backfill sent up to 6: 5 and 6 are dropped, 9 still waits for 7 and 8.
        assert!(r.ready(1, 6).is_empty());
        let mut waiting = r.conversations();
        waiting.sort();
        assert_eq!(waiting, [1, 2]);
        assert!(r.deadline().is_some());
        assert_eq!(r.take(1).into_keys().collect::<Vec<_>>(), [9]);
        assert!(r.deadline().is_some(), "conversation 2 still waits");
        assert_eq!(seqs(&r.ready(2, 2)), [3]);
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn an_ack_held_in_its_message_s_place_comes_out_even_after_a_backfill() {
        let mut r = Reorder::default();
        r.hold(1, 5, Held { ack: true, ..held(5) });
        r.hold(1, 6, held(6));
        r.hold(1, 8, held(8));
        // A backfill sent up to 6 (the message of the ack among them): the ack still
        // goes out, the message 6 does not, and 8 waits for 7.
        let out = r.ready(1, 6);
        assert_eq!(seqs(&out), [5]);
        assert!(out[0].1.ack);
        assert_eq!(r.take(1).into_keys().collect::<Vec<_>>(), [8]);
    }

    #[test]
    fn the_deadline_is_the_oldest_held_message_s() {
        let mut r = Reorder::default();
        r.hold(1, 5, held(5));
        let first = r.deadline();
        std::thread::sleep(Duration::from_millis(5));
        r.hold(2, 8, held(8));
        assert_eq!(r.deadline(), first);
    }

    #[test]
    fn a_conversation_holding_too_many_asks_for_storage_at_once() {
        let mut r = Reorder::default();
        for seq in 0..MAX_PER_CONVERSATION as i64 {
            assert!(r.hold(1, 100 + seq, held(seq)));
        }
        assert!(!r.hold(1, 1000, held(1000)));
        assert_eq!(r.take(1).len(), MAX_PER_CONVERSATION + 1);
    }
}
