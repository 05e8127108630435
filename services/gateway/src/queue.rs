//! A session's outbound queue: what the hub and the session's reader hand to its writer.
//!
//! Bounded, single consumer (the writer), and small while idle: an empty queue holds no
//! buffer at all, and a buffer grown by a burst is given back once drained. (A tokio mpsc
//! channel allocates a 32-slot block up front, about 2 KiB per idle connection.) Bounded
//! twice: by items and by the bytes of the frames queued, so a few large messages cannot
//! grow it past the byte cap any more than many small ones past the item cap. When a
//! push from the hub finds the queue full, the session is kicked: its client is not
//! reading, and it will reconnect and sync by seq rather than grow this gateway's memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::hub::Outbound;

/// A buffer at most this many slots is kept when the queue empties.
const KEEP: usize = 4;

/// The queue's sending side: cheap to clone, shared by the hub and the session's reader.
#[derive(Clone)]
pub struct Queue(Arc<Shared>);

struct Shared {
    /// std Mutex: held only to push or pop, never across an await.
    state: Mutex<State>,
    capacity: usize,
    /// Most bytes of frames queued (one item is always let in, whatever its size).
    byte_capacity: usize,
    /// Wakes the writer: an item was pushed, or the queue closed.
    pushed: Notify,
    /// Wakes the reader waiting in [`Queue::send`]: room was made, or the writer left.
    popped: Notify,
    /// Wakes the writer, wherever it waits, to close a session that fell behind.
    kicked: Notify,
}

#[derive(Default)]
struct State {
    items: VecDeque<Outbound>,
    /// Bytes of the frames in `items`.
    bytes: usize,
    /// No more items will be pushed (the session ended), or none will be taken (the
    /// writer is gone).
    closed: bool,
}

/// The queue is closed: the writer has stopped.
#[derive(Debug)]
pub struct Closed;

impl Queue {
    pub fn new(capacity: usize, byte_capacity: usize) -> Self {
        Self(Arc::new(Shared {
            state: Mutex::default(),
            capacity: capacity.max(1),
            byte_capacity,
            pushed: Notify::new(),
            popped: Notify::new(),
            kicked: Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `state` has room for an item of `size` bytes.
    fn fits(&self, state: &State, size: usize) -> bool {
        state.items.len() < self.0.capacity
            && (state.items.is_empty() || state.bytes + size <= self.0.byte_capacity)
    }

    /// Queues `item` without waiting. A full queue kicks the session instead (and drops
    /// the item: the client will sync it); a closed one drops it.
    pub fn push(&self, item: Outbound) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let size = item.size();
        if !self.fits(&state, size) {
            drop(state);
            self.0.kicked.notify_one();
            return;
        }
        state.bytes += size;
        state.items.push_back(item);
        drop(state);
        self.0.pushed.notify_one();
    }

    /// Queues `item`, waiting for room (so a client that sends but does not read is slowed
    /// down, not buffered). Fails once the writer has stopped or the queue was closed.
    pub async fn send(&self, item: Outbound) -> Result<(), Closed> {
        let size = item.size();
        let mut item = Some(item);
        loop {
            {
                let mut state = self.lock();
                if state.closed {
                    return Err(Closed);
                }
                if self.fits(&state, size) {
                    state.bytes += size;
                    state.items.extend(item.take());
                    drop(state);
                    self.0.pushed.notify_one();
                    return Ok(());
                }
            }
            self.0.popped.notified().await;
        }
    }

    /// Ends the queue: the writer takes what is queued, then hears that nothing more comes.
    pub fn close(&self) {
        self.lock().closed = true;
        self.0.pushed.notify_one();
    }

    /// The receiving side, for the one writer.
    pub fn receiver(&self) -> Receiver {
        Receiver(self.clone())
    }
}

/// The queue's one consumer. Dropping it closes the queue, so senders learn that the
/// writer is gone.
pub struct Receiver(Queue);

impl Receiver {
    /// The next item, or None once the queue is closed and empty.
    pub async fn recv(&self) -> Option<Outbound> {
        let shared = &self.0.0;
        loop {
            {
                let mut state = self.0.lock();
                if let Some(item) = state.items.pop_front() {
                    state.bytes -= item.size();
                    if state.items.is_empty() && state.items.capacity() > KEEP {
                        state.items.shrink_to(KEEP);
                    }
                    drop(state);
                    shared.popped.notify_one();
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            // notify_one keeps a permit when nobody waits, so a push between the check
            // above and this await is not missed.
            shared.pushed.notified().await;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().items.is_empty()
    }

    /// Resolves when a push found the queue full: the session must close.
    pub async fn kicked(&self) {
        self.0.0.kicked.notified().await;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.closed = true;
        state.items = VecDeque::new();
        state.bytes = 0;
        drop(state);
        self.0.0.popped.notify_one();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn frame(n: u8) -> Outbound {
        Outbound::Frame(n.to_string().into())
    }

    fn text(item: Option<Outbound>) -> String {
        match item {
            Some(Outbound::Frame(f)) => f.as_str().to_owned(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn delivers_in_order_then_ends_when_closed() {
        let queue = Queue::new(8, 1 << 20);
        let rx = queue.receiver();
        queue.push(frame(1));
        queue.send(frame(2)).await.unwrap();
        queue.close();
        queue.push(frame(3)); // after close: dropped
        assert_eq!(text(rx.recv().await), "1");
        assert_eq!(text(rx.recv().await), "2");
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_full_queue_kicks_instead_of_growing() {
        let queue = Queue::new(2, 1 << 20);
        let rx = queue.receiver();
        queue.push(frame(1));
        queue.push(frame(2));
        queue.push(frame(3));
        tokio::time::timeout(std::time::Duration::from_secs(1), rx.kicked()).await.unwrap();
        assert_eq!(text(rx.recv().await), "1");
        assert_eq!(text(rx.recv().await), "2");
        assert!(rx.is_empty());
    }

    #[tokio::test]
    async fn too_many_bytes_kick_too() {
        let queue = Queue::new(100, 5);
        let rx = queue.receiver();
        queue.push(Outbound::Frame("abc".into()));
        queue.push(Outbound::Frame("de".into()));
        queue.push(Outbound::Frame("f".into()));
        tokio::time::timeout(std::time::Duration::from_secs(1), rx.kicked()).await.unwrap();
        assert_eq!(text(rx.recv().await), "abc");
        assert_eq!(text(rx.recv().await), "de");
        assert!(rx.is_empty());
        // Drained, it takes what fits again; one item goes in whatever its size.
        queue.push(Outbound::Frame("ghijklm".into()));
        assert_eq!(text(rx.recv().await), "ghijklm");
    }

    #[tokio::test]
    async fn send_waits_for_room_and_fails_once_the_writer_is_gone() {
        let queue = Queue::new(1, 1 << 20);
        let rx = queue.receiver();
        queue.send(frame(1)).await.unwrap();
        let sender = queue.clone();
        let blocked = tokio::spawn(async move { sender.send(frame(2)).await });
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished());
        assert_eq!(text(rx.recv().await), "1");
        blocked.await.unwrap().unwrap();
        assert_eq!(text(rx.recv().await), "2");

        queue.send(frame(3)).await.unwrap();
        let sender = queue.clone();
        let blocked = tokio::spawn(async move { sender.send(frame(4)).await });
        tokio::task::yield_now().await;
        drop(rx);
        assert!(blocked.await.unwrap().is_err());
        assert!(queue.send(frame(5)).await.is_err());
    }

    #[tokio::test]
    async fn a_drained_queue_gives_its_buffer_back() {
        let queue = Queue::new(1000, 1 << 20);
        let rx = queue.receiver();
        for n in 0..200 {
            queue.push(frame(n as u8));
        }
        while !rx.is_empty() {
            rx.recv().await;
        }
        assert!(queue.lock().items.capacity() <= KEEP);
    }
}
