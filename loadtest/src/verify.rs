//! What receivers check. Every message the tool sends carries, in its body, the sender, a
//! per-sender sequence number and the send time; every receiver tracks, per conversation,
//! the server's `seq` to count lost, duplicated and out-of-order messages.

use std::collections::BTreeSet;

/// Marks bodies written by this tool; other messages (system ones, people's) are only
/// seq-checked.
const MAGIC: &str = "sblt";

/// `sblt|SENDER|N|SENT_UNIX_MICROS|filler`
pub fn body(sender: &str, n: u64, sent_us: u64, filler: usize) -> String {
    let mut body = format!("{MAGIC}|{sender}|{n}|{sent_us}|");
    body.extend(std::iter::repeat_n('x', filler));
    body
}

#[derive(Debug, PartialEq, Eq)]
pub struct Stamp<'a> {
    pub sender: &'a str,
    pub n: u64,
    pub sent_us: u64,
}

pub fn parse(body: &str) -> Option<Stamp<'_>> {
    let mut parts = body.splitn(5, '|');
    if parts.next()? != MAGIC {
        return None;
    }
    let sender = parts.next()?;
    let n = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    Some(Stamp { sender, n, sent_us })
}

/// One receiver's view of one conversation.
#[derive(Debug, Clone, Default)]
pub struct Track {
    /// Highest seq received (or the starting point: the conversation's last seq when the
    /// run began).
    pub last: i64,
    /// Seqs skipped over and not (yet) received. The server fills gaps before sending a
    /// later message, so this stays empty on a correct server.
    missing: BTreeSet<i64>,
}

/// What one received seq means.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    InOrder,
    /// Arrived after a gap of this many seqs (provisionally lost).
    AfterGap(u64),
    /// Filled an earlier gap: arrived out of order.
    OutOfOrder,
    Duplicate,
}

/// Most gap entries kept per conversation; beyond it gaps are only counted.
const MAX_MISSING: usize = 100_000;

impl Track {
    pub fn new(last: i64) -> Self {
        Self { last, missing: BTreeSet::new() }
    }

    pub fn see(&mut self, seq: i64) -> Seen {
        if seq == self.last + 1 {
            self.last = seq;
            Seen::InOrder
        } else if seq > self.last {
            let gap = (seq - self.last - 1) as u64;
            for s in self.last + 1..seq {
                if self.missing.len() >= MAX_MISSING {
                    break;
                }
                self.missing.insert(s);
            }
            self.last = seq;
            Seen::AfterGap(gap)
        } else if self.missing.remove(&seq) {
            Seen::OutOfOrder
        } else {
            Seen::Duplicate
        }
    }

    /// Seqs never received, given the conversation's final last seq.
    pub fn lost(&self, final_seq: i64) -> u64 {
        self.missing.len() as u64 + (final_seq - self.last).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip() {
        let b = body("lt-3", 42, 1_700_000_000_000_123, 5);
        assert_eq!(b, "sblt|lt-3|42|1700000000000123|xxxxx");
        assert_eq!(
            parse(&b),
            Some(Stamp { sender: "lt-3", n: 42, sent_us: 1_700_000_000_000_123 })
        );
        assert_eq!(parse("lt-3 created the group"), None);
    }

    #[test]
    fn gaps_repeats_and_reordering_are_told_apart() {
        let mut t = Track::new(10);
        assert_eq!(t.see(11), Seen::InOrder);
        assert_eq!(t.see(14), Seen::AfterGap(2));
        assert_eq!(t.see(12), Seen::OutOfOrder);
        assert_eq!(t.see(12), Seen::Duplicate);
        assert_eq!(t.see(14), Seen::Duplicate);
        assert_eq!(t.lost(16), 1 + 2, "13 missing, 15 and 16 never came");
    }
}
