//! The hub: who is connected to this gateway, and pushing to them.
//!
//! Holds every live session's outbound queue, who watches whose presence (presence itself
//! is the `PresenceTracker`'s; its changes arrive through [`Hub::presence_changed`]), and
//! a cache of conversation members for fan-out. One std Mutex guards it all: it is held
//! only to look up or update maps, never across an await, and deliveries are pushes into
//! sessions' bounded queues ([`crate::queue`]) made after the lock is released.
//!
//! In the embedded server this is the whole of "routing": every member's sessions are
//! here. Cluster mode puts a router between hubs of different gateways.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use switchboard_protocol::{Presence, ServerFrame};
use switchboard_router::pb::Addressed;
use switchboard_storage::User;

use switchboard_telemetry::trace;

use crate::auth::TokenHash;
use crate::queue::Queue;

/// What a session's writer task is asked to do.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A message frame; the writer keeps seq order and fills gaps from storage.
    /// `published_us`: when the origin gateway handed it out (Unix us; 0 = unknown), for
    /// the delivery-latency histogram.
    Message { conversation_id: i64, seq: i64, frame: Utf8Bytes, published_us: i64 },
    /// The `ack` of a send by a session signed in with `echo: false`, in the place of its
    /// message: the writer keeps it in seq order like the message, and writes it even when
    /// a backfill has already sent that seq.
    Ack { conversation_id: i64, seq: i64, frame: Utf8Bytes },
    /// Any other frame, written as is.
    Frame(Utf8Bytes),
    /// Send whatever storage holds past the last seq sent, in every conversation (live
    /// delivery may have missed it while a router or Redis was unreachable).
    CatchUp,
    /// Backfill after the client's last seen seqs, then send `synced`.
    Sync { id: Option<String>, since: BTreeMap<i64, i64> },
    /// Write this frame (if any), then close the connection with this WebSocket close code.
    Close { frame: Option<Utf8Bytes>, code: u16 },
    /// An org broadcast frame; the writer sends each broadcast id once.
    Broadcast { id: i64, frame: Utf8Bytes },
    /// Send the broadcasts for this user stored since their sessions last got one.
    PendingBroadcasts,
}

impl Outbound {
    pub fn frame(frame: &ServerFrame) -> Self {
        Self::Frame(frame.to_json().into())
    }

    /// Bytes of frame text this holds, as counted against a session's queue.
    pub fn size(&self) -> usize {
        match self {
            Self::Message { frame, .. }
            | Self::Ack { frame, .. }
            | Self::Frame(frame)
            | Self::Broadcast { frame, .. } => frame.as_str().len(),
            Self::Close { frame, .. } => frame.as_ref().map_or(0, |f| f.as_str().len()),
            Self::CatchUp | Self::Sync { .. } | Self::PendingBroadcasts => 0,
        }
    }

    /// A delivery that came from another gateway through a router.
    pub fn from_routed(addressed: Addressed) -> Self {
        if addressed.to_org {
            Self::Broadcast { id: addressed.seq, frame: addressed.frame.into() }
        } else if addressed.is_message {
            Self::Message {
                conversation_id: addressed.conversation_id,
                seq: addressed.seq,
                frame: addressed.frame.into(),
                published_us: addressed.published_us,
            }
        } else {
            Self::Frame(addressed.frame.into())
        }
    }

    /// This delivery for other gateways' sessions of `users`; None for what only makes
    /// sense on one connection (sync, close).
    pub fn to_routed(&self, users: &[i64], skip_user: Option<i64>) -> Option<Addressed> {
        let (is_message, conversation_id, seq, frame, published_us) = match self {
            Self::Message { conversation_id, seq, frame, published_us } => {
                (true, *conversation_id, *seq, frame, *published_us)
            }
            Self::Frame(frame) => (false, 0, 0, frame, 0),
            Self::Ack { .. }
            | Self::Sync { .. }
            | Self::CatchUp
            | Self::Close { .. }
            | Self::Broadcast { .. }
            | Self::PendingBroadcasts => return None,
        };
        Some(Addressed {
            users: users.to_vec(),
            skip_user,
            is_message,
            conversation_id,
            seq,
            frame: frame.as_str().to_owned(),
            published_us,
            // A message's trace goes on through the router (the send's span is current).
            traceparent: if is_message { trace::current_traceparent() } else { String::new() },
            ..Addressed::default()
        })
    }

    /// An org broadcast for every gateway: each delivers it to its own sessions under
    /// `org` (the router sends it to all of them, without looking anyone up).
    pub fn routed_broadcast(id: i64, org: &str, frame: &Utf8Bytes) -> Addressed {
        Addressed {
            users: Vec::new(),
            skip_user: None,
            is_message: false,
            conversation_id: 0,
            seq: id,
            frame: frame.as_str().to_owned(),
            to_org: true,
            org: org.to_owned(),
            ..Addressed::default()
        }
    }
}

struct Session {
    /// The user as they signed in (their org-unit path then decides org broadcasts).
    user: Arc<User>,
    /// SHA-256 of the token the session signed in with (a sign-out ends its sessions).
    token: TokenHash,
    queue: Queue,
    /// usernames this session watches
    watching: HashSet<String>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<u64, Session>,
    by_user: HashMap<i64, Vec<u64>>,
    /// watched username -> their user id and the sessions watching them
    watchers: HashMap<String, (i64, HashSet<u64>)>,
    /// conversation id -> member user ids; dropped whenever membership changes
    members: HashMap<i64, Arc<[i64]>>,
}

pub struct Hub {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Capacity of each session's outbound queue, in items.
    queue: usize,
    /// Capacity of each session's outbound queue, in bytes of frames.
    queue_bytes: usize,
    /// Session writers still running. A session leaves the hub before its writer has
    /// flushed its last frames (the close), so the drain waits for this too.
    writers: Arc<AtomicUsize>,
}

/// Counts a running writer while it lives (dropped when the writer ends or is aborted).
pub struct WriterGuard(Arc<AtomicUsize>);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Queued deliveries collected under the lock, sent after it is released.
type Pushes = Vec<Queue>;

/// A session that cannot keep up is kicked by its full queue; it will reconnect and sync
/// by seq.
fn push_all(targets: Pushes, item: &Outbound) {
    for queue in targets {
        queue.push(item.clone());
    }
}

impl Hub {
    pub fn new(queue: usize, queue_bytes: usize) -> Self {
        Self {
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            queue,
            queue_bytes,
            writers: Arc::default(),
        }
    }

    /// Counts a session writer until the guard is dropped.
    pub fn writer_started(&self) -> WriterGuard {
        self.writers.fetch_add(1, Ordering::AcqRel);
        WriterGuard(self.writers.clone())
    }

    /// Session writers still running (see [`Hub::writer_started`]).
    pub fn writers(&self) -> usize {
        self.writers.load(Ordering::Acquire)
    }

    /// An outbound queue for a new session.
    pub fn new_queue(&self) -> Queue {
        Queue::new(self.queue, self.queue_bytes)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds session `id` of `user`, fed through `queue`; false (and nothing added) when
    /// the user already has `max` sessions here (0: no limit).
    pub fn register(
        &self,
        id: u64,
        user: Arc<User>,
        token: TokenHash,
        queue: Queue,
        max: usize,
    ) -> bool {
        let user_id = user.id;
        let mut state = self.lock();
        let held = state.by_user.get(&user_id).map_or(0, Vec::len);
        if max > 0 && held >= max {
            return false;
        }
        let session = Session { user, token, queue, watching: HashSet::new() };
        state.sessions.insert(id, session);
        state.by_user.entry(user_id).or_default().push(id);
        true
    }

    /// Removes a session and its watches.
    pub fn unregister(&self, id: u64) {
        let mut state = self.lock();
        let Some(session) = state.sessions.remove(&id) else {
            return;
        };
        for watched in &session.watching {
            if let Some((_, set)) = state.watchers.get_mut(watched) {
                set.remove(&id);
                if set.is_empty() {
                    state.watchers.remove(watched);
                }
            }
        }
        if let Some(ids) = state.by_user.get_mut(&session.user.id) {
            ids.retain(|s| *s != id);
            if ids.is_empty() {
                state.by_user.remove(&session.user.id);
            }
        }
    }

    /// Pushes `item` to every session of every user in `users`, except `skip_user`'s.
    pub fn deliver(&self, users: &[i64], skip_user: Option<i64>, item: Outbound) {
        self.deliver_instead(users, skip_user, item, None);
    }

    /// [`Hub::deliver`], but the session `instead.0`, if it is here and among the
    /// targets, gets `instead.1` in place of `item` (a sender's `ack` in place of its
    /// echo). True when it did.
    pub fn deliver_instead(
        &self,
        users: &[i64],
        skip_user: Option<i64>,
        item: Outbound,
        instead: Option<(u64, Outbound)>,
    ) -> bool {
        let skip_session = instead.as_ref().map(|(id, _)| *id);
        let mut own = None;
        let targets: Pushes = {
            let state = self.lock();
            users
                .iter()
                .filter(|u| Some(**u) != skip_user)
                .filter_map(|u| state.by_user.get(u))
                .flatten()
                .filter(|id| {
                    let skip = Some(**id) == skip_session;
                    if skip {
                        own = state.sessions.get(id).map(|s| s.queue.clone());
                    }
                    !skip
                })
                .filter_map(|id| state.sessions.get(id))
                .map(|s| s.queue.clone())
                .collect()
        };
        push_all(targets, &item);
        match (own, instead) {
            (Some(queue), Some((_, item))) => {
                queue.push(item);
                true
            }
            _ => false,
        }
    }

    /// Pushes `end` (a close) to `user`'s sessions here: those signed in with `token`
    /// when given, else all of them. Returns how many.
    pub fn end_sessions(&self, user: i64, token: Option<&TokenHash>, end: &Outbound) -> usize {
        let targets: Pushes = {
            let state = self.lock();
            state
                .by_user
                .get(&user)
                .into_iter()
                .flatten()
                .filter_map(|id| state.sessions.get(id))
                .filter(|s| token.is_none_or(|t| *t == s.token))
                .map(|s| s.queue.clone())
                .collect()
        };
        let count = targets.len();
        push_all(targets, end);
        count
    }

    /// Pushes `item` to every session here whose user is under the org-unit path `org`
    /// (everyone for the empty path): an org broadcast's local fan-out. One pass over the
    /// sessions; no per-user lookup anywhere.
    pub fn deliver_org(&self, org: &str, item: Outbound) -> usize {
        let targets: Pushes = {
            let state = self.lock();
            state
                .sessions
                .values()
                .filter(|s| switchboard_protocol::org_under(&s.user.org, org))
                .map(|s| s.queue.clone())
                .collect()
        };
        let count = targets.len();
        push_all(targets, &item);
        count
    }

    /// Pushes a presence change to the sessions watching that user.
    pub fn presence_changed(&self, presence: Presence) {
        let targets: Pushes = {
            let state = self.lock();
            let Some((_, watchers)) = state.watchers.get(&presence.user) else {
                return;
            };
            watchers
                .iter()
                .filter_map(|id| state.sessions.get(id))
                .map(|s| s.queue.clone())
                .collect()
        };
        push_all(targets, &Outbound::frame(&ServerFrame::Presence { presence }));
    }

    /// Subscribes `session` to presence changes of `users`; false if over `max`.
    pub fn watch(&self, session: u64, users: &[User], max: usize) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.sessions.get_mut(&session) else {
            return false;
        };
        let new: Vec<&User> =
            users.iter().filter(|u| !entry.watching.contains(&u.username)).collect();
        if entry.watching.len() + new.len() > max {
            return false;
        }
        entry.watching.extend(new.iter().map(|u| u.username.clone()));
        for user in new {
            let watchers = state.watchers.entry(user.username.clone());
            watchers.or_insert_with(|| (user.id, HashSet::new())).1.insert(session);
        }
        true
    }

    /// Every watched user, as (id, username).
    pub fn watched(&self) -> Vec<(i64, String)> {
        self.lock().watchers.iter().map(|(name, (id, _))| (*id, name.clone())).collect()
    }

    /// Has every session check storage for messages live delivery missed.
    pub fn catch_up_all(&self) {
        let targets: Pushes = {
            let state = self.lock();
            state.sessions.values().map(|s| s.queue.clone()).collect()
        };
        push_all(targets, &Outbound::CatchUp);
    }

    pub fn unwatch(&self, session: u64, users: &[String]) {
        let mut state = self.lock();
        if let Some(entry) = state.sessions.get_mut(&session) {
            for user in users {
                entry.watching.remove(user);
            }
        }
        for user in users {
            if let Some((_, set)) = state.watchers.get_mut(user) {
                set.remove(&session);
                if set.is_empty() {
                    state.watchers.remove(user);
                }
            }
        }
    }

    pub fn cached_members(&self, conversation: i64) -> Option<Arc<[i64]>> {
        self.lock().members.get(&conversation).cloned()
    }

    pub fn cache_members(&self, conversation: i64, members: Arc<[i64]>) {
        let mut state = self.lock();
        if state.members.len() >= 100_000 {
            state.members.clear();
        }
        state.members.insert(conversation, members);
    }

    pub fn forget_members(&self, conversation: i64) {
        self.lock().members.remove(&conversation);
    }
}
