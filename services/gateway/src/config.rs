//! Gateway configuration: limits and timeouts. Parsed once by the binary (clap) and passed
//! down by value; nothing here reads the environment.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Largest message body in bytes (UTF-8). A bigger send gets `message_too_large`,
    /// stores nothing, and the connection stays open.
    pub max_body_bytes: usize,
    /// Largest WebSocket frame/message in bytes. A bigger frame gets `frame_too_large`
    /// and the connection is closed (1009): the rest of that frame cannot be skipped safely.
    pub max_frame_bytes: usize,
    /// Messages a user may send per second, sustained, over all their sessions; 0 turns
    /// rate limiting off. Over it, sends get `rate_limited` with `retry_after_ms`.
    pub rate_per_user: f64,
    /// How many messages a user may send in a burst above `rate_per_user`.
    pub rate_burst: f64,
    /// Deliveries queued per session. A session whose queue is full is closed with
    /// `slow_consumer` (it reconnects and syncs), so one stalled client cannot grow memory.
    pub session_queue: usize,
    /// How long a new connection may take to send its `auth` frame.
    pub auth_timeout: Duration,
    /// Lifetime of tokens issued by sign-in.
    pub token_ttl: Duration,
    /// Most users one session may watch.
    pub max_watch: usize,
    /// When the gateway drains, each session is told to reconnect after a random delay
    /// between 0 and this (`retry_after_ms` of `shutting_down`), so its clients arrive at
    /// the other gateways spread out instead of all at once.
    pub reconnect_spread: Duration,

    // Sign-in throttling (see `lockout`): per account in storage, per IP in memory.
    /// Failed sign-ins in a row after which each failure locks the account for a delay
    /// that doubles from `login_backoff_base` (a locked sign-in gets `rate_limited`).
    pub login_backoff_after: u32,
    /// The first backoff delay.
    pub login_backoff_base: Duration,
    /// Failed sign-ins in a row that lock the account for `login_lockout`.
    pub login_lockout_after: u32,
    /// How long a locked-out account refuses password sign-in (the right password too).
    pub login_lockout: Duration,
    /// Failed sign-ins one client IP may make in a burst (per gateway); then every sign-in
    /// from it gets `rate_limited` until the bucket refills. 0 with the rate turns it off.
    pub login_ip_failures_burst: f64,
    /// Failed sign-ins per minute one client IP gets back, sustained; 0 turns it off.
    pub login_ip_failures_per_minute: f64,

    /// Where the per-IP limits find the client's address: None for the TCP peer; behind
    /// a reverse proxy, the header it sets (`X-Forwarded-For`: its last entry, the one the
    /// nearest proxy added; any other header: its whole value). Without it, every client
    /// behind the proxy would share the proxy's address and its limits.
    pub client_ip_header: Option<String>,

    // Limits.
    /// WebSocket sessions one user may hold on this gateway; one more is refused with
    /// `too_many_connections` (close 1008). 0: unlimited.
    pub max_connections_per_user: usize,
    /// Messages per second one client IP may send, sustained, over all its sessions and
    /// REST (on top of `rate_per_user`); 0 turns it off. Over it: `rate_limited`.
    pub rate_per_ip: f64,
    /// How many messages one IP may send in a burst above `rate_per_ip`.
    pub rate_ip_burst: f64,
    /// Most members a group may have, owner included; creating or adding beyond it gets
    /// `group_too_large` and changes nothing. 0: unlimited.
    pub max_group_members: usize,
    /// Bytes of frames queued per session. A session whose queue would grow past it is
    /// closed with `slow_consumer` (it reconnects and syncs): a client that never reads
    /// costs the gateway at most this much, however large the messages sent to it.
    pub session_queue_bytes: usize,
    /// WebSocket sign-ins that may be checking their token and starting their session
    /// (storage calls) at once; more wait in a queue (see `admission.rs`). 0: unlimited.
    pub sign_ins_in_flight: usize,
    /// Sign-ins that may wait for their turn; one more, or one waiting longer than 10 s,
    /// is refused with `unavailable` and a `retry_after_ms` (close 1013).
    pub sign_in_queue: usize,

    // Browsers.
    /// Origins (`scheme://host[:port]`) besides the gateway's own whose pages may open
    /// WebSockets here, and which get CORS headers on `/api/v1`. Upgrades from any other
    /// Origin are refused with 403; clients sending no Origin (not browsers) are allowed.
    pub allowed_origins: Vec<String>,
    /// Directory sign-in (LDAP) beside local accounts; None: local accounts only.
    pub ldap: Option<crate::ldap::LdapConfig>,

    // Attachments.
    /// Where attachments' bytes are kept (a directory, or an S3 bucket shared by every
    /// gateway of a cluster); None: uploads are refused with `forbidden`.
    pub attachments: Option<switchboard_storage::attachments::Blobs>,
    /// Largest attachment in bytes. A bigger upload gets `attachment_too_large` as soon
    /// as its declared length, or the byte past the limit, arrives; nothing is kept.
    pub max_attachment_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_body_bytes: switchboard_protocol::DEFAULT_MAX_BODY_BYTES,
            max_frame_bytes: 256 * 1024,
            rate_per_user: 50.0,
            rate_burst: 100.0,
            session_queue: 1024,
            auth_timeout: Duration::from_secs(10),
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            max_watch: 2000,
            reconnect_spread: Duration::from_secs(5),
            login_backoff_after: 3,
            login_backoff_base: Duration::from_secs(1),
            login_lockout_after: 10,
            login_lockout: Duration::from_secs(15 * 60),
            login_ip_failures_burst: 30.0,
            login_ip_failures_per_minute: 10.0,
            client_ip_header: None,
            max_connections_per_user: 10,
            rate_per_ip: 200.0,
            rate_ip_burst: 400.0,
            max_group_members: 1000,
            session_queue_bytes: 8 * 1024 * 1024,
            sign_ins_in_flight: 32,
            sign_in_queue: 1000,
            allowed_origins: Vec::new(),
            ldap: None,
            attachments: None,
            max_attachment_bytes: switchboard_protocol::DEFAULT_MAX_ATTACHMENT_BYTES,
        }
    }
}
