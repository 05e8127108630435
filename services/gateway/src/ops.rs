//! The operations clients perform, shared by the WebSocket and REST paths so both apply
//! the same checks (size, rate, membership) and the same fan-out.

use std::sync::Arc;

use switchboard_presence::{PresenceError, UserRef};
use switchboard_protocol::{
    Conversation, ErrorCode, Message, MessageKind, Presence, PresenceStatus, ServerFrame,
};
use switchboard_router::pb::Addressed;
use switchboard_storage::{Appended, HistoryPage, NewMessage, NewUser, User};
use switchboard_telemetry::trace;

use tracing::Instrument as _;

use crate::auth::TokenHash;
use crate::hub::Outbound;
use crate::metrics::METRICS;
use crate::{ApiError, Gateway, auth};

/// Longest `client_msg_id` accepted.
const MAX_CLIENT_MSG_ID: usize = 128;
/// Longest presence status text, in characters.
const MAX_STATUS_TEXT: usize = 200;
/// Most people one directory search returns when the caller does not say.
const DIRECTORY_PAGE: u32 = 20;
/// Most users named in one group creation or member addition.
const MAX_USERS_PER_REQUEST: usize = 1000;

fn user_ref(user: &User) -> UserRef<'_> {
    UserRef { id: user.id, username: &user.username }
}

fn unavailable(e: PresenceError) -> ApiError {
    tracing::warn!(error = %e, "presence unavailable");
    ApiError::new(ErrorCode::Unavailable, "presence is unavailable; retry")
}

/// The session a send came from, when it signed in with `echo: false`: it gets the
/// send's `ack` (answering its request `id`) in the place of the message.
pub(crate) struct Own {
    pub session: u64,
    pub id: Option<String>,
}

/// Where a send goes: a conversation, or a user (their direct conversation).
pub enum Target {
    Conversation(i64),
    User(String),
}

impl Target {
    pub fn from_fields(conversation_id: Option<i64>, to: Option<String>) -> Result<Self, ApiError> {
        match (conversation_id, to) {
            (Some(id), None) => Ok(Self::Conversation(id)),
            (None, Some(user)) => Ok(Self::User(user)),
            _ => Err(ApiError::invalid("give exactly one of conversation_id or to")),
        }
    }
}

impl Gateway {
    /// Validates, stores (durably, with the next seq) and fans out a text message.
    pub async fn send(
        &self,
        sender: &User,
        target: Target,
        client_msg_id: String,
        body: String,
    ) -> Result<Appended, ApiError> {
        self.send_kind(sender, target, client_msg_id, body, MessageKind::Text, None).await
    }

    /// [`Gateway::send`] for any kind a client may post: `text`, or `broadcast` from an
    /// admin account (tools and bots; clients show it as a notice, not as chat).
    ///
    /// A send is where a message's trace starts (a root span, whatever the connection's):
    /// storage, the router and the receiving gateways continue it.
    pub async fn send_kind(
        &self,
        sender: &User,
        target: Target,
        client_msg_id: String,
        body: String,
        kind: MessageKind,
        thread_seq: Option<i64>,
    ) -> Result<Appended, ApiError> {
        let sent = self.send_own(sender, target, client_msg_id, body, kind, thread_seq, None);
        Ok(sent.await?.0)
    }

    /// [`Gateway::send_kind`] from a session signed in with `echo: false` (`own`): that
    /// session gets the `ack` in the place of the message. True when it did (the caller
    /// answers with the `ack` itself otherwise: a duplicate, or nothing fanned out).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send_own(
        &self,
        sender: &User,
        target: Target,
        client_msg_id: String,
        body: String,
        kind: MessageKind,
        thread_seq: Option<i64>,
        own: Option<&Own>,
    ) -> Result<(Appended, bool), ApiError> {
        let span = trace::root(
            || tracing::debug_span!(parent: None, "message.send", otel.kind = "server", user = sender.id),
        );
        let started = std::time::Instant::now();
        let result = self.send_checked(sender, target, client_msg_id, body, kind, thread_seq, own);
        let result = result.instrument(span).await;
        METRICS.send.since(started);
        match &result {
            Ok((a, _)) if a.duplicate => METRICS.duplicates.inc(),
            Ok(_) => METRICS.sent.inc(),
            Err(_) => {}
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_checked(
        &self,
        sender: &User,
        target: Target,
        client_msg_id: String,
        body: String,
        kind: MessageKind,
        thread_seq: Option<i64>,
        own: Option<&Own>,
    ) -> Result<(Appended, bool), ApiError> {
        match kind {
            MessageKind::Text => {}
            MessageKind::Broadcast if sender.admin => {}
            MessageKind::Broadcast => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "only admin accounts may post broadcasts",
                ));
            }
            MessageKind::System => {
                return Err(ApiError::invalid("system messages are written by the server"));
            }
            MessageKind::Edit | MessageKind::Delete | MessageKind::React | MessageKind::Unreact => {
                return Err(ApiError::invalid(
                    "edit, delete and react to a message with edit, delete, react and unreact",
                ));
            }
        }
        self.check_body(&body)?;
        if client_msg_id.is_empty() || client_msg_id.len() > MAX_CLIENT_MSG_ID {
            return Err(ApiError::invalid(format!(
                "client_msg_id must have 1 to {MAX_CLIENT_MSG_ID} bytes"
            )));
        }
        self.inner.rate.check(sender.id).map_err(ApiError::rate_limited)?;
        let conversation_id = match (target, thread_seq) {
            (Target::Conversation(id), _) => id,
            (Target::User(_), Some(_)) => {
                return Err(ApiError::invalid("a thread reply needs conversation_id, not to"));
            }
            (Target::User(name), None) => self.open_direct(sender, &name).await?.id,
        };
        let message = NewMessage {
            conversation_id,
            sender: sender.clone(),
            client_msg_id: Some(client_msg_id),
            kind,
            body,
            // A bot's messages are marked with its name, so nobody takes them for a
            // person's.
            author: sender.bot.then(|| sender.display_name.clone()),
        };
        let appended = match thread_seq {
            None => self.store().append(message).await?,
            // A reply checks its root in the transaction that stores it, so it does not
            // ride the batched append path; it is fanned out and acknowledged the same way.
            Some(root) => self.store().reply(message, root).await?,
        };
        let mut acked = false;
        if !appended.duplicate {
            // Storage read the members in the commit's transaction; an older storage
            // service sends none, and they are looked up here instead.
            let members = Some(appended.members.as_slice()).filter(|m| !m.is_empty());
            let instead = own.map(|own| {
                let ack = crate::session::ack(own.id.clone(), &appended).to_json().into();
                let m = &appended.message;
                (
                    own.session,
                    Outbound::Ack { conversation_id: m.conversation_id, seq: m.seq, frame: ack },
                )
            });
            acked = self.publish_instead(&appended.message, members, None, instead).await;
        }
        Ok((appended, acked))
    }

    /// Edits (`body` Some) or deletes one of `editor`'s messages: stores the entry
    /// recording it (with its own seq) and fans it out like a message, so every session
    /// applies it live and a backfill by seq brings it too.
    pub async fn change_message(
        &self,
        editor: &User,
        conversation: i64,
        seq: i64,
        body: Option<String>,
        client_msg_id: String,
    ) -> Result<Appended, ApiError> {
        if let Some(body) = &body {
            self.check_body(body)?;
        }
        if client_msg_id.is_empty() || client_msg_id.len() > MAX_CLIENT_MSG_ID {
            return Err(ApiError::invalid(format!(
                "client_msg_id must have 1 to {MAX_CLIENT_MSG_ID} bytes"
            )));
        }
        // Edits count against the sender's rate like sends: each is a stored message.
        self.inner.rate.check(editor.id).map_err(ApiError::rate_limited)?;
        let appended = self
            .store()
            .change_message(editor, conversation, seq, body.as_deref(), Some(&client_msg_id))
            .await?;
        if !appended.duplicate {
            let members = Some(appended.members.as_slice()).filter(|m| !m.is_empty());
            self.publish(&appended.message, members, None).await;
        }
        Ok(appended)
    }

    /// A message or broadcast body: not empty, not over the configured size.
    pub(crate) fn check_body(&self, body: &str) -> Result<(), ApiError> {
        let max = self.config().max_body_bytes;
        if body.len() > max {
            return Err(ApiError::new(
                ErrorCode::MessageTooLarge,
                format!("the body has {} bytes; the limit is {max}", body.len()),
            ));
        }
        if body.trim().is_empty() {
            return Err(ApiError::invalid("the body is empty"));
        }
        Ok(())
    }

    /// Pushes a committed message to every member's sessions (and to `extra` users, such
    /// as someone just removed, who should see the message recording it). `members`, when
    /// known, saves looking them up.
    pub(crate) async fn publish(
        &self,
        message: &Message,
        members: Option<&[i64]>,
        extra: Option<i64>,
    ) {
        self.publish_instead(message, members, extra, None).await;
    }

    /// [`Gateway::publish`], with one session here getting another item in its place
    /// (see [`Hub::deliver_instead`]); true when it did.
    async fn publish_instead(
        &self,
        message: &Message,
        members: Option<&[i64]>,
        extra: Option<i64>,
        instead: Option<(u64, Outbound)>,
    ) -> bool {
        let members = match members {
            Some(members) => Ok(Arc::from(members)),
            None => self.members(message.conversation_id).await,
        };
        let members = match members {
            Ok(members) => members,
            Err(e) => {
                // Live delivery is the fast path; sessions backfill by seq when it fails.
                tracing::warn!(error = %e, conversation = message.conversation_id, "fan-out skipped");
                return false;
            }
        };
        let item = Outbound::Message {
            conversation_id: message.conversation_id,
            seq: message.seq,
            frame: ServerFrame::Message { message: message.clone() }.to_json().into(),
            published_us: crate::metrics::now_us(),
        };
        match extra {
            Some(extra) => {
                let mut users = members.to_vec();
                users.push(extra);
                self.deliver_instead(&users, None, item, instead)
            }
            None => self.deliver_instead(&members, None, item, instead),
        }
    }

    /// Pushes `item` to the sessions of `users` (but `skip_user`'s): here directly, on
    /// other gateways through a router.
    pub(crate) fn deliver(&self, users: &[i64], skip_user: Option<i64>, item: Outbound) {
        self.deliver_instead(users, skip_user, item, None);
    }

    /// [`Gateway::deliver`], with one session here getting another item in its place
    /// (see [`Hub::deliver_instead`]); true when it did.
    fn deliver_instead(
        &self,
        users: &[i64],
        skip_user: Option<i64>,
        item: Outbound,
        instead: Option<(u64, Outbound)>,
    ) -> bool {
        if let Some(router) = &self.inner.router
            && let Some(routed) = item.to_routed(users, skip_user)
            && !router.route(routed)
        {
            tracing::debug!("no router linked; remote delivery dropped");
        }
        self.inner.hub.deliver_instead(users, skip_user, item, instead)
    }

    /// Ends `user`'s live sessions, here and on every other gateway: those signed in with
    /// `token` (a sign-out), or all of them (`None`: the account was disabled). Each gets
    /// an `unauthenticated` error saying `why`, then a close (1008).
    pub(crate) fn end_sessions(&self, user: i64, token: Option<TokenHash>, why: &str) {
        let frame = ServerFrame::error(None, ErrorCode::Unauthenticated, why).to_json();
        if let Some(router) = &self.inner.router {
            let routed = Addressed {
                users: vec![user],
                frame: frame.clone(),
                close: true,
                token_hash: token.map(|t| t.to_vec()).unwrap_or_default(),
                ..Addressed::default()
            };
            if !router.route(routed) {
                tracing::warn!(user, "no router linked; sessions on other gateways stay open");
            }
        }
        let end = crate::session::signed_out(frame.into());
        let ended = self.inner.hub.end_sessions(user, token.as_ref(), &end);
        tracing::debug!(user, ended, "sessions ended here");
    }

    /// Members of a conversation, for fan-out. Cached by the embedded server, which sees
    /// every membership change; read from storage in a cluster, where another gateway may
    /// have changed them (a stale list could leak messages to a removed member).
    async fn members(&self, conversation: i64) -> Result<Arc<[i64]>, ApiError> {
        if self.inner.router.is_some() {
            return Ok(self.store().member_ids(conversation).await?.into());
        }
        if let Some(members) = self.inner.hub.cached_members(conversation) {
            return Ok(members);
        }
        let members: Arc<[i64]> = self.store().member_ids(conversation).await?.into();
        self.inner.hub.cache_members(conversation, members.clone());
        Ok(members)
    }

    /// Pushes a conversation's new shape to its members (no `read_seq`: it is per member).
    fn announce(&self, conversation: &Conversation, users: &[i64]) {
        let mut pushed = conversation.clone();
        pushed.read_seq = None;
        let frame = ServerFrame::Conversation { id: None, conversation: pushed };
        self.deliver(users, None, Outbound::frame(&frame));
    }

    pub async fn open_direct(&self, user: &User, other: &str) -> Result<Conversation, ApiError> {
        let other = self.store().user_by_name(other).await?;
        let (conversation, created) = self.store().open_direct(user, &other).await?;
        if created {
            let users: &[i64] = if user.id == other.id { &[user.id] } else { &[user.id, other.id] };
            self.announce(&conversation, users);
        }
        Ok(conversation)
    }

    async fn resolve(&self, names: &[String]) -> Result<Vec<User>, ApiError> {
        if names.len() > MAX_USERS_PER_REQUEST {
            return Err(ApiError::invalid(format!(
                "at most {MAX_USERS_PER_REQUEST} users per request"
            )));
        }
        let mut users = Vec::with_capacity(names.len());
        for name in names {
            users.push(self.store().user_by_name(name).await?);
        }
        Ok(users)
    }

    pub async fn create_group(
        &self,
        owner: &User,
        name: &str,
        members: &[String],
    ) -> Result<Conversation, ApiError> {
        let users = self.resolve(members).await?;
        let mut ids: std::collections::HashSet<i64> = users.iter().map(|u| u.id).collect();
        ids.insert(owner.id);
        self.check_group_size(ids.len())?;
        let (conversation, message) = self.store().create_group(owner, name, &users).await?;
        self.changed_membership(&conversation, &message, None).await;
        Ok(conversation)
    }

    pub async fn add_members(
        &self,
        actor: &User,
        conversation: i64,
        names: &[String],
    ) -> Result<Conversation, ApiError> {
        let users = self.resolve(names).await?;
        if self.config().max_group_members > 0 {
            // Checked before the change: two adds racing past the cap together overshoot
            // it by at most one request's worth.
            // Only for members: anyone else is refused by storage without learning a size.
            let mut ids: std::collections::HashSet<i64> =
                self.store().member_ids(conversation).await?.into_iter().collect();
            if ids.contains(&actor.id) {
                ids.extend(users.iter().map(|u| u.id));
                self.check_group_size(ids.len())?;
            }
        }
        let (conversation, message) = self.store().add_members(actor, conversation, &users).await?;
        self.changed_membership(&conversation, &message, None).await;
        Ok(conversation)
    }

    /// `group_too_large` when a group of `members` would exceed the configured maximum.
    fn check_group_size(&self, members: usize) -> Result<(), ApiError> {
        let max = self.config().max_group_members;
        if max > 0 && members > max {
            return Err(ApiError::new(
                ErrorCode::GroupTooLarge,
                format!("a group may have at most {max} members; this one would have {members}"),
            ));
        }
        Ok(())
    }

    pub async fn remove_member(
        &self,
        actor: &User,
        conversation: i64,
        name: &str,
    ) -> Result<Conversation, ApiError> {
        let user = self.store().user_by_name(name).await?;
        let (conversation, message) =
            self.store().remove_member(actor, conversation, &user).await?;
        self.changed_membership(&conversation, &message, Some(user.id)).await;
        Ok(conversation)
    }

    async fn changed_membership(
        &self,
        conversation: &Conversation,
        message: &Message,
        removed: Option<i64>,
    ) {
        self.inner.hub.forget_members(conversation.id);
        let members = self.members(conversation.id).await.ok();
        if let Some(members) = &members {
            let mut users = members.to_vec();
            users.extend(removed);
            self.announce(conversation, &users);
        }
        self.publish(message, members.as_deref(), removed).await;
    }

    pub async fn history(
        &self,
        viewer: &User,
        conversation: i64,
        after: Option<i64>,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ApiError> {
        let limit = limit.unwrap_or(100);
        Ok(self.store().history(conversation, viewer, after, before, limit).await?)
    }

    /// Thread `seq` of `conversation` as `viewer` reads it: the root, then up to `limit`
    /// (default 100) replies after `after`.
    pub async fn thread(
        &self,
        viewer: &User,
        conversation: i64,
        seq: i64,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<(Message, HistoryPage), ApiError> {
        let limit = limit.unwrap_or(100);
        let mut page = self.store().thread(conversation, viewer, seq, after, limit).await?;
        if page.messages.is_empty() {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no thread {conversation}:{seq}"),
            ));
        }
        let root = page.messages.remove(0);
        Ok((root, page))
    }

    pub async fn mark_read(
        &self,
        viewer: &User,
        conversation: i64,
        seq: i64,
    ) -> Result<i64, ApiError> {
        let read_seq = self.store().mark_read(conversation, viewer, seq).await?;
        let members = self.members(conversation).await?;
        let frame = ServerFrame::Read {
            conversation_id: conversation,
            user: viewer.username.clone(),
            seq: read_seq,
        };
        self.deliver(&members, None, Outbound::frame(&frame));
        Ok(read_seq)
    }

    pub async fn typing(&self, user: &User, conversation: i64) -> Result<(), ApiError> {
        let members = self.members(conversation).await?;
        if members.is_empty() {
            return Err(ApiError::from(switchboard_storage::StoreError::ConversationNotFound(
                conversation,
            )));
        }
        if !members.contains(&user.id) {
            return Err(ApiError::from(switchboard_storage::StoreError::NotMember {
                conversation,
                user: user.username.clone(),
            }));
        }
        let frame =
            ServerFrame::Typing { conversation_id: conversation, user: user.username.clone() };
        self.deliver(&members, Some(user.id), Outbound::frame(&frame));
        Ok(())
    }

    pub async fn set_presence(
        &self,
        user: &User,
        status: PresenceStatus,
        text: &str,
    ) -> Result<(), ApiError> {
        if text.chars().count() > MAX_STATUS_TEXT {
            return Err(ApiError::invalid(format!(
                "status text is limited to {MAX_STATUS_TEXT} characters"
            )));
        }
        self.store().set_status(user.id, status, text).await?;
        self.inner.presence.set_status(user_ref(user), status, text).await.map_err(unavailable)?;
        Ok(())
    }

    /// Presence of everyone who shares a conversation with `user`.
    pub async fn contacts_presence(&self, user: &User) -> Result<Vec<Presence>, ApiError> {
        let contacts = self.store().contacts(user.id).await?;
        self.presence_of(&contacts).await
    }

    /// What others see of each of `users` now.
    pub async fn presence_of(&self, users: &[User]) -> Result<Vec<Presence>, ApiError> {
        let refs: Vec<UserRef<'_>> = users.iter().map(user_ref).collect();
        self.inner.presence.lookup(&refs).await.map_err(unavailable)
    }

    /// A session of `user` started here. Presence is best effort: when it cannot be
    /// recorded the session still works, and others see the user offline.
    pub async fn connected(&self, user: &User) {
        let result = self.inner.presence.connected(user_ref(user), user.status, &user.status_text);
        if let Err(e) = result.await {
            tracing::warn!(error = %e, user = %user.username, "presence not recorded");
        }
    }

    pub async fn disconnected(&self, user: &User) {
        if let Err(e) = self.inner.presence.disconnected(user_ref(user)).await {
            tracing::warn!(error = %e, user = %user.username, "presence not recorded");
        }
    }

    /// Creates an account; `actor` must be an admin (None: a local admin command).
    pub async fn create_user(
        &self,
        actor: Option<&User>,
        username: &str,
        password: String,
        display_name: &str,
        org: &str,
        admin: bool,
    ) -> Result<User, ApiError> {
        if actor.is_some_and(|a| !a.admin) {
            return Err(ApiError::new(ErrorCode::Forbidden, "only admins may create users"));
        }
        auth::validate_username(username)?;
        auth::validate_password(&password)?;
        let password_hash = auth::hash_password(password).await?;
        let display_name = if display_name.is_empty() { username } else { display_name };
        Ok(self
            .store()
            .create_user(NewUser {
                username: username.to_owned(),
                display_name: display_name.to_owned(),
                org: org.to_owned(),
                admin,
                password_hash,
                department: String::new(),
                title: String::new(),
                bot: false,
            })
            .await?)
    }

    /// The directory: users matching `query` (username, display name, org path,
    /// department or title), by display name.
    pub async fn search_users(
        &self,
        query: &str,
        limit: Option<u32>,
    ) -> Result<Vec<switchboard_protocol::UserInfo>, ApiError> {
        let limit = limit.unwrap_or(DIRECTORY_PAGE).clamp(1, switchboard_storage::MAX_PAGE);
        let users = self.store().search_users(query.trim(), limit).await?;
        Ok(users.iter().map(User::info).collect())
    }

    /// Password sign-in, throttled per account (see `lockout`); no per-IP limit.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(String, i64, User), ApiError> {
        self.login_from(None, username, password).await
    }

    /// Password sign-in from client address `ip` (when known: then the per-IP limit of
    /// failed sign-ins applies too).
    pub async fn login_from(
        &self,
        ip: Option<std::net::IpAddr>,
        username: &str,
        password: &str,
    ) -> Result<(String, i64, User), ApiError> {
        let ttl = self.config().token_ttl.as_millis() as i64;
        let (store, guard) = (self.store().as_ref(), &self.inner.login);
        auth::login(store, guard, self.config().ldap.as_ref(), ip, username, password, ttl).await
    }

    /// Takes one message from client address `ip`'s budget (`Config::rate_per_ip`).
    /// The sender's message rate: an upload is a stored message too.
    pub(crate) fn check_user_rate(&self, user: &User) -> Result<(), ApiError> {
        self.inner.rate.check(user.id).map_err(ApiError::rate_limited)
    }

    pub(crate) fn check_ip_rate(&self, ip: Option<std::net::IpAddr>) -> Result<(), ApiError> {
        match ip {
            Some(ip) => self.inner.rate_ip.check(ip).map_err(ApiError::rate_limited),
            None => Ok(()),
        }
    }

    /// Why a sign-in as `username` was refused, for the audit log only (the client is
    /// told nothing more than "wrong username or password"). Costs one or two reads.
    pub(crate) async fn why_login_failed(&self, username: &str) -> String {
        match self.store().credentials(username).await {
            Ok(Some(_)) => "wrong password".to_owned(),
            Ok(None) => match self.store().user_by_name(username).await {
                Ok(_) => "account disabled".to_owned(),
                Err(_) => "unknown user".to_owned(),
            },
            Err(e) => format!("storage error: {e}"),
        }
    }
}
