//! [`RemoteStore`]: the [`Store`] of a gateway in cluster mode, calling the storage
//! service over one multiplexed HTTP/2 channel.
//!
//! Appends are batched: a task takes every append waiting and sends them in one
//! `AppendMany` call, with at most [`APPENDS_IN_FLIGHT`] calls outstanding. At light load
//! each append goes alone at once; under load, appends gather while calls are in flight,
//! so the per-call cost (HTTP/2 stream, headers, a task on each side) is paid per batch.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_protocol::rest::{AuditEntry, ImportReport, LegalHold, RetentionPolicy};
use switchboard_protocol::{Broadcast, Conversation, Message, PresenceStatus};
use switchboard_telemetry::grpc::{ClientLayer, TracedClient};
use switchboard_telemetry::trace;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tower_layer::Layer as _;
use tracing::Instrument as _;

use super::convert::*;
use super::pb;
use super::pb::storage_client;
use crate::metrics::CLIENT as METRICS;
use crate::{
    Appended, AuditQuery, DirectoryEntry, DirectoryUser, ExportPage, ExportQuery, HistoryPage,
    LoginLock, NewAttachment, NewAuditEntry, NewBroadcast, NewMessage, NewUser, Result,
    RetentionBatch, SearchPage, SearchQuery, Store, StoreError, StoredAttachment, User, Webhook,
};

/// How long one storage call may take before it fails as `Unavailable` (retryable).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `AppendMany` calls outstanding at once. Two: one being answered while the next
/// gathers; more only makes each call smaller.
const APPENDS_IN_FLIGHT: usize = 2;
/// Most appends in one `AppendMany` call (the service's limit).
const MAX_APPEND_BATCH: usize = super::server::MAX_APPEND_MANY;
/// Appends waiting for a call; senders wait (backpressure) when it is full.
const APPEND_QUEUE: usize = 8192;

/// The generated client over a channel whose calls carry trace context.
/// Largest export page accepted from the storage service.
const EXPORT_REPLY_LIMIT: usize = 256 * 1024 * 1024;

type StorageClient = storage_client::StorageClient<TracedClient<Channel>>;

/// An append waiting for a call: the message, its span's `traceparent`, the reply.
type AppendJob = (NewMessage, String, oneshot::Sender<Result<Appended>>);

#[derive(Clone)]
pub struct RemoteStore {
    client: StorageClient,
    appends: mpsc::Sender<AppendJob>,
}

impl RemoteStore {
    /// A client for the storage service at `url` (`http://host:port`). Connects lazily
    /// and reconnects by itself, so a storage restart shows as `Unavailable` errors
    /// meanwhile, never as a dead gateway. Must be called inside a tokio runtime: it
    /// starts the append batcher, which stops when every clone is dropped.
    pub fn connect_lazy(url: &str) -> Result<Self> {
        Self::connect_lazy_tls(url, None)
    }

    /// [`RemoteStore::connect_lazy`]; an `https://` URL is reached over TLS with `tls`
    /// (which trusts the cluster's CA).
    pub fn connect_lazy_tls(url: &str, tls: Option<ClientTlsConfig>) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| {
            StoreError::Invalid(format!("bad storage URL {url:?}: {e}"))
        };
        let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| bad(&e))?;
        if let Some(tls) = tls.filter(|_| url.starts_with("https://")) {
            endpoint = endpoint.tls_config(tls).map_err(|e| bad(&e))?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(3))
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let client = StorageClient::new(ClientLayer.layer(endpoint.connect_lazy()));
        let (appends, queue) = mpsc::channel(APPEND_QUEUE);
        tokio::spawn(batch_appends(client.clone(), queue));
        Ok(Self { client, appends })
    }

    fn client(&self) -> StorageClient {
        self.client.clone()
    }
}

fn membership(reply: pb::MembershipReply) -> Result<(Conversation, Message)> {
    let missing = || StoreError::Unavailable("storage service sent an incomplete reply".into());
    Ok((
        conversation_from_pb(reply.conversation.ok_or_else(missing)?),
        message_from_pb(reply.message.ok_or_else(missing)?),
    ))
}

#[async_trait]
impl Store for RemoteStore {
    async fn create_user(&self, user: NewUser) -> Result<User> {
        let reply =
            self.client().create_user(new_user_to_pb(user)).await.map_err(status_to_error)?;
        Ok(user_from_pb(reply.into_inner()))
    }

    async fn user_count(&self) -> Result<i64> {
        let reply = self.client().user_count(pb::Empty {}).await.map_err(status_to_error)?;
        Ok(reply.into_inner().count)
    }

    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>> {
        let request = pb::Username { username: username.to_owned() };
        let reply = self.client().credentials(request).await.map_err(status_to_error)?.into_inner();
        Ok(reply.user.map(|u| (user_from_pb(u), reply.password_hash)))
    }

    async fn user_by_name(&self, username: &str) -> Result<User> {
        let request = pb::Username { username: username.to_owned() };
        let reply = self.client().user_by_name(request).await.map_err(status_to_error)?;
        Ok(user_from_pb(reply.into_inner()))
    }

    async fn sync_directory_user(&self, user: DirectoryUser) -> Result<User> {
        let request = pb::DirectoryUser {
            username: user.username,
            display_name: user.display_name,
            org: user.org,
            admin: user.admin,
            password_hash: user.password_hash,
        };
        let reply = self.client().sync_directory_user(request).await.map_err(status_to_error)?;
        Ok(user_from_pb(reply.into_inner()))
    }

    async fn set_status(&self, user_id: i64, status: PresenceStatus, text: &str) -> Result<()> {
        let request = pb::SetStatusRequest {
            user_id,
            status: status.as_str().to_owned(),
            text: text.to_owned(),
        };
        self.client().set_status(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn contacts(&self, user_id: i64) -> Result<Vec<User>> {
        let reply =
            self.client().contacts(pb::UserId { id: user_id }).await.map_err(status_to_error)?;
        Ok(reply.into_inner().users.into_iter().map(user_from_pb).collect())
    }

    async fn search_users(&self, query: &str, limit: u32) -> Result<Vec<User>> {
        let request = pb::SearchUsersRequest { query: query.to_owned(), limit };
        let reply = self.client().search_users(request).await.map_err(status_to_error)?;
        Ok(reply.into_inner().users.into_iter().map(user_from_pb).collect())
    }

    async fn login_lock(&self, user_id: i64) -> Result<LoginLock> {
        let request = pb::UserId { id: user_id };
        let reply = self.client().login_lock(request).await.map_err(status_to_error)?.into_inner();
        Ok(LoginLock { failures: reply.failures, locked_until: reply.locked_until })
    }

    async fn login_failed(&self, user_id: i64) -> Result<i64> {
        let request = pb::UserId { id: user_id };
        let reply = self.client().login_failed(request).await.map_err(status_to_error)?;
        Ok(reply.into_inner().count)
    }

    async fn lock_login(&self, user_id: i64, until: i64) -> Result<()> {
        let request = pb::LockLoginRequest { user_id, until };
        self.client().lock_login(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn login_succeeded(&self, user_id: i64) -> Result<()> {
        let request = pb::UserId { id: user_id };
        self.client().login_succeeded(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn insert_token(&self, hash: &[u8], user_id: i64, expires_at: i64) -> Result<()> {
        let request = pb::InsertTokenRequest { hash: hash.to_vec(), user_id, expires_at };
        self.client().insert_token(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn user_by_token(&self, hash: &[u8]) -> Result<Option<User>> {
        let request = pb::TokenHash { hash: hash.to_vec() };
        let reply = self.client().user_by_token(request).await.map_err(status_to_error)?;
        Ok(reply.into_inner().user.map(user_from_pb))
    }

    async fn revoke_token(&self, hash: &[u8]) -> Result<()> {
        let request = pb::TokenHash { hash: hash.to_vec() };
        self.client().revoke_token(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn open_direct(&self, a: &User, b: &User) -> Result<(Conversation, bool)> {
        let request = pb::OpenDirectRequest { a: Some(user_to_pb(a)), b: Some(user_to_pb(b)) };
        let reply = self.client().open_direct(request).await.map_err(status_to_error)?.into_inner();
        let conversation = reply.conversation.ok_or_else(|| {
            StoreError::Unavailable("storage service sent no conversation".into())
        })?;
        Ok((conversation_from_pb(conversation), reply.created))
    }

    async fn create_group(
        &self,
        owner: &User,
        name: &str,
        members: &[User],
    ) -> Result<(Conversation, Message)> {
        let request = pb::CreateGroupRequest {
            owner: Some(user_to_pb(owner)),
            name: name.to_owned(),
            members: members.iter().map(user_to_pb).collect(),
        };
        membership(self.client().create_group(request).await.map_err(status_to_error)?.into_inner())
    }

    async fn add_members(
        &self,
        actor: &User,
        conversation: i64,
        users: &[User],
    ) -> Result<(Conversation, Message)> {
        let request = pb::AddMembersRequest {
            actor: Some(user_to_pb(actor)),
            conversation_id: conversation,
            users: users.iter().map(user_to_pb).collect(),
        };
        membership(self.client().add_members(request).await.map_err(status_to_error)?.into_inner())
    }

    async fn remove_member(
        &self,
        actor: &User,
        conversation: i64,
        user: &User,
    ) -> Result<(Conversation, Message)> {
        let request = pb::RemoveMemberRequest {
            actor: Some(user_to_pb(actor)),
            conversation_id: conversation,
            user: Some(user_to_pb(user)),
        };
        membership(
            self.client().remove_member(request).await.map_err(status_to_error)?.into_inner(),
        )
    }

    async fn conversation(&self, conversation: i64, viewer: &User) -> Result<Conversation> {
        let request = pb::ConversationRequest {
            conversation_id: conversation,
            viewer: Some(user_to_pb(viewer)),
        };
        let reply = self.client().get_conversation(request).await.map_err(status_to_error)?;
        Ok(conversation_from_pb(reply.into_inner()))
    }

    async fn conversations_of(&self, user_id: i64) -> Result<Vec<Conversation>> {
        let reply = self
            .client()
            .conversations_of(pb::UserId { id: user_id })
            .await
            .map_err(status_to_error)?;
        Ok(reply.into_inner().conversations.into_iter().map(conversation_from_pb).collect())
    }

    async fn conversation_seqs(&self, user_id: i64) -> Result<Vec<(i64, i64)>> {
        let reply = self
            .client()
            .conversation_seqs(pb::UserId { id: user_id })
            .await
            .map_err(status_to_error)?;
        Ok(reply.into_inner().seqs.into_iter().map(|s| (s.conversation_id, s.last_seq)).collect())
    }

    async fn member_ids(&self, conversation: i64) -> Result<Vec<i64>> {
        let request = pb::ConversationId { id: conversation };
        Ok(self.client().member_ids(request).await.map_err(status_to_error)?.into_inner().ids)
    }

    async fn last_messages(&self, user_id: i64) -> Result<Vec<Message>> {
        let request = pb::UserId { id: user_id };
        let reply = self.client().last_messages(request).await.map_err(status_to_error)?;
        Ok(reply.into_inner().messages.into_iter().map(message_from_pb).collect())
    }

    async fn append(&self, message: NewMessage) -> Result<Appended> {
        let started = std::time::Instant::now();
        let span = trace::child(|| {
            tracing::debug_span!(
                "storage.append",
                otel.kind = "client",
                conversation = message.conversation_id,
            )
        });
        let traceparent = trace::traceparent(&span);
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the append batcher has stopped".into());
        let appended = async {
            self.appends.send((message, traceparent, reply)).await.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        }
        .instrument(span)
        .await;
        METRICS.append.since(started);
        appended
    }

    async fn history(
        &self,
        conversation: i64,
        viewer: &User,
        after: Option<i64>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage> {
        let request = pb::HistoryRequest {
            conversation_id: conversation,
            viewer: Some(user_to_pb(viewer)),
            after,
            before,
            limit,
        };
        Ok(page_from_pb(
            self.client().history(request).await.map_err(status_to_error)?.into_inner(),
        ))
    }

    async fn reply(&self, message: NewMessage, thread_seq: i64) -> Result<Appended> {
        let request = pb::ReplyRequest { message: Some(new_message_to_pb(message)), thread_seq };
        let reply = self.client().reply(request).await.map_err(status_to_error)?;
        appended_from_pb(reply.into_inner())
    }

    async fn thread(
        &self,
        conversation: i64,
        viewer: &User,
        seq: i64,
        after: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage> {
        let request = pb::ThreadRequest {
            conversation_id: conversation,
            viewer: Some(user_to_pb(viewer)),
            seq,
            after,
            limit,
        };
        Ok(page_from_pb(self.client().thread(request).await.map_err(status_to_error)?.into_inner()))
    }

    async fn change_message(
        &self,
        editor: &User,
        conversation: i64,
        seq: i64,
        body: Option<&str>,
        client_msg_id: Option<&str>,
    ) -> Result<Appended> {
        let request = pb::ChangeMessageRequest {
            editor: Some(user_to_pb(editor)),
            conversation_id: conversation,
            seq,
            body: body.map(str::to_owned),
            client_msg_id: client_msg_id.map(str::to_owned),
        };
        let reply = self.client().change_message(request).await.map_err(status_to_error)?;
        appended_from_pb(reply.into_inner())
    }

    async fn react(
        &self,
        user: &User,
        conversation: i64,
        seq: i64,
        emoji: &str,
        add: bool,
    ) -> Result<Option<Appended>> {
        let request = pb::ReactRequest {
            user: Some(user_to_pb(user)),
            conversation_id: conversation,
            seq,
            emoji: emoji.to_owned(),
            add,
        };
        let reply = self.client().react(request).await.map_err(status_to_error)?;
        reply.into_inner().appended.map(appended_from_pb).transpose()
    }

    async fn attach(&self, message: NewMessage, file: NewAttachment) -> Result<Appended> {
        let request = pb::AttachRequest {
            message: Some(new_message_to_pb(message)),
            file: Some(new_attachment_to_pb(file)),
        };
        let reply = self.client().attach(request).await.map_err(status_to_error)?;
        appended_from_pb(reply.into_inner())
    }

    async fn attachment(&self, id: i64, viewer: &User) -> Result<StoredAttachment> {
        let request = pb::AttachmentRequest { id, viewer: Some(user_to_pb(viewer)) };
        let reply = self.client().get_attachment(request).await.map_err(status_to_error)?;
        Ok(stored_attachment_from_pb(reply.into_inner()))
    }

    async fn attachment_trash(&self, limit: u32) -> Result<Vec<String>> {
        let request = pb::AttachmentTrashRequest { limit };
        let reply = self.client().attachment_trash(request).await.map_err(status_to_error)?;
        Ok(reply.into_inner().keys)
    }

    async fn forget_attachment_trash(&self, keys: &[String]) -> Result<()> {
        let request = pb::StorageKeys { keys: keys.to_vec() };
        self.client().forget_attachment_trash(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn known_attachment_keys(&self, keys: &[String]) -> Result<Vec<String>> {
        let request = pb::StorageKeys { keys: keys.to_vec() };
        let reply = self.client().known_attachment_keys(request).await.map_err(status_to_error)?;
        Ok(reply.into_inner().keys)
    }

    async fn set_retention(&self, conversation: Option<i64>, keep_days: Option<i64>) -> Result<()> {
        let request = pb::RetentionPolicy { conversation_id: conversation, keep_days };
        self.client().set_retention(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn clear_retention(&self, conversation: Option<i64>) -> Result<()> {
        let request = pb::RetentionScope { conversation_id: conversation };
        self.client().clear_retention(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn retention_policies(&self) -> Result<Vec<RetentionPolicy>> {
        let reply =
            self.client().retention_policies(pb::Empty {}).await.map_err(status_to_error)?;
        Ok(reply.into_inner().policies.into_iter().map(policy_from_pb).collect())
    }

    async fn add_hold(
        &self,
        user: Option<&User>,
        conversation: Option<i64>,
        reason: &str,
        creator: &User,
    ) -> Result<LegalHold> {
        let request = pb::AddHoldRequest {
            user: user.map(user_to_pb),
            conversation_id: conversation,
            reason: reason.to_owned(),
            creator: Some(user_to_pb(creator)),
        };
        let reply = self.client().add_hold(request).await.map_err(status_to_error)?;
        Ok(hold_from_pb(reply.into_inner()))
    }

    async fn remove_hold(&self, id: i64) -> Result<()> {
        self.client().remove_hold(pb::HoldId { id }).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn legal_holds(&self) -> Result<Vec<LegalHold>> {
        let reply = self.client().legal_holds(pb::Empty {}).await.map_err(status_to_error)?;
        Ok(reply.into_inner().holds.into_iter().map(hold_from_pb).collect())
    }

    async fn retention_targets(&self, now: i64) -> Result<Vec<(i64, i64)>> {
        let request = pb::RetentionTargetsRequest { now };
        let reply = self.client().retention_targets(request).await.map_err(status_to_error)?;
        Ok(reply.into_inner().targets.into_iter().map(|t| (t.conversation_id, t.cutoff)).collect())
    }

    async fn retention_delete(
        &self,
        conversation: i64,
        cutoff: i64,
        limit: u32,
        budget: Duration,
    ) -> Result<RetentionBatch> {
        let budget_us = u64::try_from(budget.as_micros()).unwrap_or(u64::MAX);
        let request =
            pb::RetentionDeleteRequest { conversation_id: conversation, cutoff, limit, budget_us };
        let reply = self.client().retention_delete(request).await.map_err(status_to_error)?;
        let reply = reply.into_inner();
        Ok(RetentionBatch { deleted: u64::try_from(reply.deleted).unwrap_or(0), done: reply.done })
    }

    async fn search(&self, viewer: &User, query: &SearchQuery) -> Result<SearchPage> {
        let request = search_to_pb(viewer, query);
        let reply = self.client().search(request).await.map_err(status_to_error)?;
        Ok(search_page_from_pb(reply.into_inner()))
    }

    async fn mark_read(&self, conversation: i64, viewer: &User, seq: i64) -> Result<i64> {
        let request = pb::MarkReadRequest {
            conversation_id: conversation,
            viewer: Some(user_to_pb(viewer)),
            seq,
        };
        Ok(self.client().mark_read(request).await.map_err(status_to_error)?.into_inner().seq)
    }

    async fn read_cursors(&self, conversation: i64, viewer: &User) -> Result<Vec<(String, i64)>> {
        let request = pb::ConversationRequest {
            conversation_id: conversation,
            viewer: Some(user_to_pb(viewer)),
        };
        let reply = self.client().read_cursors(request).await.map_err(status_to_error)?;
        Ok(reply.into_inner().cursors.into_iter().map(|c| (c.username, c.seq)).collect())
    }

    async fn import_directory(
        &self,
        entries: Vec<DirectoryEntry>,
        password_hash: String,
        dry_run: bool,
    ) -> Result<ImportReport> {
        let request = pb::ImportDirectoryRequest {
            entries: entries.into_iter().map(entry_to_pb).collect(),
            password_hash,
            dry_run,
        };
        let reply = self.client().import_directory(request).await.map_err(status_to_error)?;
        Ok(report_from_pb(reply.into_inner()))
    }

    async fn create_webhook(
        &self,
        conversation: i64,
        creator: &User,
        name: &str,
        secret_hash: &[u8],
    ) -> Result<Webhook> {
        let request = pb::CreateWebhookRequest {
            conversation_id: conversation,
            creator: Some(user_to_pb(creator)),
            name: name.to_owned(),
            secret_hash: secret_hash.to_vec(),
        };
        let reply = self.client().create_webhook(request).await.map_err(status_to_error)?;
        webhook_from_pb(reply.into_inner())
    }

    async fn webhook(&self, id: i64) -> Result<Option<Webhook>> {
        let reply =
            self.client().get_webhook(pb::WebhookId { id }).await.map_err(status_to_error)?;
        reply.into_inner().webhook.map(webhook_from_pb).transpose()
    }

    async fn revoke_webhook(&self, id: i64, actor: &User) -> Result<()> {
        let request = pb::RevokeWebhookRequest { id, actor: Some(user_to_pb(actor)) };
        self.client().revoke_webhook(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn create_broadcast(&self, new: NewBroadcast) -> Result<Broadcast> {
        let reply = self
            .client()
            .create_broadcast(new_broadcast_to_pb(new))
            .await
            .map_err(status_to_error)?;
        Ok(broadcast_from_pb(reply.into_inner()))
    }

    async fn pending_broadcasts(&self, user: &User, limit: u32) -> Result<Vec<Broadcast>> {
        let request = pb::PendingBroadcastsRequest { user: Some(user_to_pb(user)), limit };
        let reply = self.client().pending_broadcasts(request).await.map_err(status_to_error)?;
        Ok(reply.into_inner().broadcasts.into_iter().map(broadcast_from_pb).collect())
    }

    async fn broadcasts_seen(&self, seen: &[(i64, i64)]) -> Result<()> {
        let seen =
            seen.iter().map(|&(user_id, upto)| pb::BroadcastCursor { user_id, upto }).collect();
        let request = pb::BroadcastsSeenRequest { seen };
        self.client().broadcasts_seen(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn ack_broadcast(&self, id: i64, user: &User) -> Result<()> {
        let request = pb::AckBroadcastRequest { id, user: Some(user_to_pb(user)) };
        self.client().ack_broadcast(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn broadcast_status(&self, id: i64) -> Result<(Broadcast, Vec<(String, Option<i64>)>)> {
        let reply = self
            .client()
            .broadcast_status(pb::BroadcastId { id })
            .await
            .map_err(status_to_error)?
            .into_inner();
        let broadcast = reply
            .broadcast
            .ok_or_else(|| StoreError::Unavailable("storage service sent no broadcast".into()))?;
        let recipients = reply.recipients.into_iter().map(|r| (r.username, r.acked_at)).collect();
        Ok((broadcast_from_pb(broadcast), recipients))
    }

    async fn update_user(
        &self,
        username: &str,
        admin: Option<bool>,
        disabled: Option<bool>,
    ) -> Result<(User, bool)> {
        let request = pb::UpdateUserRequest { username: username.to_owned(), admin, disabled };
        let reply = self.client().update_user(request).await.map_err(status_to_error)?.into_inner();
        let user = reply
            .user
            .ok_or_else(|| StoreError::Unavailable("storage service sent no user".into()))?;
        Ok((user_from_pb(user), reply.disabled))
    }

    async fn record_audit(&self, entries: &[NewAuditEntry]) -> Result<()> {
        let request = pb::AuditEntries { entries: entries.iter().map(new_audit_to_pb).collect() };
        self.client().record_audit(request).await.map_err(status_to_error)?;
        Ok(())
    }

    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let reply = self
            .client()
            .audit_log(audit_query_to_pb(query))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(reply.entries.into_iter().map(audit_from_pb).collect())
    }

    async fn export(&self, query: &ExportQuery) -> Result<ExportPage> {
        // A page may hold up to MAX_PAGE records of the largest bodies, with their edits:
        // more than tonic's default 4 MiB.
        let reply = self
            .client()
            .max_decoding_message_size(EXPORT_REPLY_LIMIT)
            .export(export_query_to_pb(query))
            .await
            .map_err(status_to_error)?
            .into_inner();
        let records =
            reply.records.into_iter().map(export_record_from_pb).collect::<Result<Vec<_>>>()?;
        Ok(ExportPage { records, has_more: reply.has_more })
    }

    async fn export_count(&self, query: &ExportQuery) -> Result<i64> {
        let reply = self
            .client()
            .export_count(export_query_to_pb(query))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(reply.count)
    }
}

/// Sends waiting appends in `AppendMany` calls until every [`RemoteStore`] is dropped.
async fn batch_appends(client: StorageClient, mut queue: mpsc::Receiver<AppendJob>) {
    let in_flight = Arc::new(Semaphore::new(APPENDS_IN_FLIGHT));
    let mut jobs = Vec::new();
    loop {
        // A call slot first, then whatever is waiting by then: while all slots are busy,
        // appends gather into the next batch.
        let Ok(slot) = Arc::clone(&in_flight).acquire_owned().await else { return };
        if queue.recv_many(&mut jobs, MAX_APPEND_BATCH).await == 0 {
            return;
        }
        METRICS.batch_size.observe(jobs.len() as u64);
        let mut messages = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for (message, traceparent, reply) in jobs.drain(..) {
            messages.push(pb::NewMessage { traceparent, ..new_message_to_pb(message) });
            replies.push(reply);
        }
        let mut client = client.clone();
        tokio::spawn(async move {
            let request = pb::NewMessages { messages };
            match client.append_many(request).await {
                Ok(reply) => {
                    let results = outcomes_from_pb(reply.into_inner().outcomes, replies.len());
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
                Err(status) => {
                    let e = status_to_error(status);
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}
