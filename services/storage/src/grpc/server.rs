//! The storage service: each RPC calls the same-named [`Store`] method.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use switchboard_telemetry::grpc::ServerLayer;
use switchboard_telemetry::trace;
use tokio::net::TcpListener;
use tonic::transport::ServerTlsConfig;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::convert::*;
use super::pb;
use super::pb::append_outcome::Outcome;
use super::pb::storage_server::{Storage, StorageServer};
use crate::{Store, StoreError};

pub struct StorageService {
    store: Arc<dyn Store>,
}

impl StorageService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

/// Most messages in one `AppendMany` call.
pub const MAX_APPEND_MANY: usize = 1024;

/// How long in-flight calls may take to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `store` on `listener` (with the standard gRPC health service) until `shutdown`
/// resolves. Then it reports NOT_SERVING, stops accepting, lets in-flight calls finish (up to [`DRAIN`]:
/// clients hold their HTTP/2 connections open, so it does not wait for them to leave),
/// and returns.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_tls(listener, store, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (clients then use `https://` URLs).
pub async fn serve_tls(
    listener: TcpListener,
    store: Arc<dyn Store>,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<StorageServer<StorageService>>().await;
    let (draining, drained) = tokio::sync::oneshot::channel::<()>();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let reporter = health.clone();
    let server = builder
        // HTTP/1.1 too, for Prometheus scraping `/metrics` on this port.
        .accept_http1(true)
        .layer(ServerLayer::new(crate::metrics::render_service))
        .add_service(health_service)
        .add_service(StorageServer::new(StorageService::new(store)))
        // Nagle off: a reply's frames go out at once, not after the peer's delayed ACK.
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            // Probes see it at once; clients' new calls go to other replicas.
            reporter.set_not_serving::<StorageServer<StorageService>>().await;
            crate::metrics::DRAINING.set(1);
            tracing::info!("draining: finishing in-flight calls");
            let _ = draining.send(());
        });
    tokio::select! {
        result = server => result,
        _ = async {
            let _ = drained.await;
            tokio::time::sleep(DRAIN).await;
        } => {
            tracing::warn!("drain timed out; closing remaining connections");
            Ok(())
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T, U>(result: Result<T, StoreError>, convert: impl FnOnce(T) -> U) -> Reply<U> {
    result.map(|value| Response::new(convert(value))).map_err(error_to_status)
}

fn user(field: Option<pb::User>, name: &str) -> Result<crate::User, Status> {
    required(field, name).map(user_from_pb)
}

fn membership(
    (conversation, message): (switchboard_protocol::Conversation, switchboard_protocol::Message),
) -> pb::MembershipReply {
    pb::MembershipReply {
        conversation: Some(conversation_to_pb(conversation)),
        message: Some(message_to_pb(message)),
    }
}

#[tonic::async_trait]
impl Storage for StorageService {
    async fn create_user(&self, request: Request<pb::NewUser>) -> Reply<pb::User> {
        let new = new_user_from_pb(request.into_inner());
        reply(self.store.create_user(new).await, |u| user_to_pb(&u))
    }

    async fn user_count(&self, _: Request<pb::Empty>) -> Reply<pb::Count> {
        reply(self.store.user_count().await, |count| pb::Count { count })
    }

    async fn credentials(&self, request: Request<pb::Username>) -> Reply<pb::CredentialsReply> {
        let name = request.into_inner().username;
        reply(self.store.credentials(&name).await, |found| match found {
            Some((user, password_hash)) => {
                pb::CredentialsReply { user: Some(user_to_pb(&user)), password_hash }
            }
            None => pb::CredentialsReply { user: None, password_hash: String::new() },
        })
    }

    async fn user_by_name(&self, request: Request<pb::Username>) -> Reply<pb::User> {
        let name = request.into_inner().username;
        reply(self.store.user_by_name(&name).await, |u| user_to_pb(&u))
    }

    async fn sync_directory_user(&self, request: Request<pb::DirectoryUser>) -> Reply<pb::User> {
        let r = request.into_inner();
        let user = crate::DirectoryUser {
            username: r.username,
            display_name: r.display_name,
            org: r.org,
            admin: r.admin,
            password_hash: r.password_hash,
        };
        reply(self.store.sync_directory_user(user).await, |u| user_to_pb(&u))
    }

    async fn set_status(&self, request: Request<pb::SetStatusRequest>) -> Reply<pb::Empty> {
        let r = request.into_inner();
        let status = switchboard_protocol::PresenceStatus::parse(&r.status)
            .ok_or_else(|| Status::invalid_argument(format!("unknown status {:?}", r.status)))?;
        reply(self.store.set_status(r.user_id, status, &r.text).await, |()| pb::Empty {})
    }

    async fn contacts(&self, request: Request<pb::UserId>) -> Reply<pb::Users> {
        reply(self.store.contacts(request.into_inner().id).await, |users| pb::Users {
            users: users.iter().map(user_to_pb).collect(),
        })
    }

    async fn search_users(&self, request: Request<pb::SearchUsersRequest>) -> Reply<pb::Users> {
        let r = request.into_inner();
        reply(self.store.search_users(&r.query, r.limit).await, |users| pb::Users {
            users: users.iter().map(user_to_pb).collect(),
        })
    }

    async fn login_lock(&self, request: Request<pb::UserId>) -> Reply<pb::LoginLockReply> {
        reply(self.store.login_lock(request.into_inner().id).await, |lock| pb::LoginLockReply {
            failures: lock.failures,
            locked_until: lock.locked_until,
        })
    }

    async fn login_failed(&self, request: Request<pb::UserId>) -> Reply<pb::Count> {
        reply(self.store.login_failed(request.into_inner().id).await, |count| pb::Count { count })
    }

    async fn lock_login(&self, request: Request<pb::LockLoginRequest>) -> Reply<pb::Empty> {
        let r = request.into_inner();
        reply(self.store.lock_login(r.user_id, r.until).await, |()| pb::Empty {})
    }

    async fn login_succeeded(&self, request: Request<pb::UserId>) -> Reply<pb::Empty> {
        reply(self.store.login_succeeded(request.into_inner().id).await, |()| pb::Empty {})
    }

    async fn insert_token(&self, request: Request<pb::InsertTokenRequest>) -> Reply<pb::Empty> {
        let r = request.into_inner();
        reply(self.store.insert_token(&r.hash, r.user_id, r.expires_at).await, |()| pb::Empty {})
    }

    async fn user_by_token(&self, request: Request<pb::TokenHash>) -> Reply<pb::MaybeUser> {
        reply(self.store.user_by_token(&request.into_inner().hash).await, |u| pb::MaybeUser {
            user: u.as_ref().map(user_to_pb),
        })
    }

    async fn revoke_token(&self, request: Request<pb::TokenHash>) -> Reply<pb::Empty> {
        reply(self.store.revoke_token(&request.into_inner().hash).await, |()| pb::Empty {})
    }

    async fn open_direct(
        &self,
        request: Request<pb::OpenDirectRequest>,
    ) -> Reply<pb::OpenDirectReply> {
        let r = request.into_inner();
        let (a, b) = (user(r.a, "a")?, user(r.b, "b")?);
        reply(self.store.open_direct(&a, &b).await, |(conversation, created)| pb::OpenDirectReply {
            conversation: Some(conversation_to_pb(conversation)),
            created,
        })
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Reply<pb::MembershipReply> {
        let r = request.into_inner();
        let owner = user(r.owner, "owner")?;
        let members: Vec<_> = r.members.into_iter().map(user_from_pb).collect();
        reply(self.store.create_group(&owner, &r.name, &members).await, membership)
    }

    async fn add_members(
        &self,
        request: Request<pb::AddMembersRequest>,
    ) -> Reply<pb::MembershipReply> {
        let r = request.into_inner();
        let actor = user(r.actor, "actor")?;
        let users: Vec<_> = r.users.into_iter().map(user_from_pb).collect();
        reply(self.store.add_members(&actor, r.conversation_id, &users).await, membership)
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Reply<pb::MembershipReply> {
        let r = request.into_inner();
        let (actor, removed) = (user(r.actor, "actor")?, user(r.user, "user")?);
        reply(self.store.remove_member(&actor, r.conversation_id, &removed).await, membership)
    }

    async fn get_conversation(
        &self,
        request: Request<pb::ConversationRequest>,
    ) -> Reply<pb::Conversation> {
        let r = request.into_inner();
        let viewer = user(r.viewer, "viewer")?;
        reply(self.store.conversation(r.conversation_id, &viewer).await, conversation_to_pb)
    }

    async fn conversations_of(&self, request: Request<pb::UserId>) -> Reply<pb::Conversations> {
        reply(self.store.conversations_of(request.into_inner().id).await, |list| {
            pb::Conversations { conversations: list.into_iter().map(conversation_to_pb).collect() }
        })
    }

    async fn conversation_seqs(
        &self,
        request: Request<pb::UserId>,
    ) -> Reply<pb::ConversationSeqsReply> {
        reply(self.store.conversation_seqs(request.into_inner().id).await, |seqs| {
            pb::ConversationSeqsReply {
                seqs: seqs
                    .into_iter()
                    .map(|(conversation_id, last_seq)| pb::ConversationSeq {
                        conversation_id,
                        last_seq,
                    })
                    .collect(),
            }
        })
    }

    async fn member_ids(&self, request: Request<pb::ConversationId>) -> Reply<pb::UserIds> {
        reply(self.store.member_ids(request.into_inner().id).await, |ids| pb::UserIds { ids })
    }

    async fn last_messages(&self, request: Request<pb::UserId>) -> Reply<pb::Messages> {
        reply(self.store.last_messages(request.into_inner().id).await, |messages| pb::Messages {
            messages: messages.into_iter().map(message_to_pb).collect(),
        })
    }

    async fn append(&self, request: Request<pb::NewMessage>) -> Reply<pb::Appended> {
        let new = new_message_from_pb(request.into_inner())?;
        reply(self.store.append(new).await, appended_to_pb)
    }

    async fn append_many(&self, request: Request<pb::NewMessages>) -> Reply<pb::AppendOutcomes> {
        let messages = request.into_inner().messages;
        if messages.len() > MAX_APPEND_MANY {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_APPEND_MANY} messages per call"
            )));
        }
        let mut news = Vec::with_capacity(messages.len());
        for mut message in messages {
            let traceparent = std::mem::take(&mut message.traceparent);
            news.push((new_message_from_pb(message)?, traceparent));
        }
        // All at once: they join the appenders' queues together and commit in few groups.
        let results = join_all(news.into_iter().map(|(new, traceparent)| {
            // Each message continues its sender's trace (disabled when traces are off).
            let span = trace::continue_remote(&traceparent, || {
                tracing::debug_span!(
                    parent: None,
                    "storage.append",
                    otel.kind = "server",
                    conversation = new.conversation_id,
                )
            });
            self.store.append(new).instrument(span)
        }))
        .await;
        let outcomes = results
            .into_iter()
            .map(|result| pb::AppendOutcome {
                outcome: Some(match result {
                    Ok(appended) => Outcome::Appended(appended_to_pb(appended)),
                    Err(e) => Outcome::Failure(error_to_failure(&e)),
                }),
            })
            .collect();
        Ok(Response::new(pb::AppendOutcomes { outcomes }))
    }

    async fn history(&self, request: Request<pb::HistoryRequest>) -> Reply<pb::HistoryPage> {
        let r = request.into_inner();
        let viewer = user(r.viewer, "viewer")?;
        let page = self.store.history(r.conversation_id, &viewer, r.after, r.before, r.limit).await;
        reply(page, page_to_pb)
    }

    async fn reply(&self, request: Request<pb::ReplyRequest>) -> Reply<pb::Appended> {
        let r = request.into_inner();
        let message = r.message.ok_or_else(|| Status::invalid_argument("message is required"))?;
        let message = new_message_from_pb(message)?;
        reply(self.store.reply(message, r.thread_seq).await, appended_to_pb)
    }

    async fn thread(&self, request: Request<pb::ThreadRequest>) -> Reply<pb::HistoryPage> {
        let r = request.into_inner();
        let viewer = user(r.viewer, "viewer")?;
        let page = self.store.thread(r.conversation_id, &viewer, r.seq, r.after, r.limit).await;
        reply(page, page_to_pb)
    }

    async fn change_message(
        &self,
        request: Request<pb::ChangeMessageRequest>,
    ) -> Reply<pb::Appended> {
        let r = request.into_inner();
        let editor = user(r.editor, "editor")?;
        let changed = self
            .store
            .change_message(
                &editor,
                r.conversation_id,
                r.seq,
                r.body.as_deref(),
                r.client_msg_id.as_deref(),
            )
            .await;
        reply(changed, appended_to_pb)
    }

    async fn react(&self, request: Request<pb::ReactRequest>) -> Reply<pb::MaybeAppended> {
        let r = request.into_inner();
        let who = user(r.user, "user")?;
        let changed = self.store.react(&who, r.conversation_id, r.seq, &r.emoji, r.add).await;
        reply(changed, |a| pb::MaybeAppended { appended: a.map(appended_to_pb) })
    }

    async fn set_retention(&self, request: Request<pb::RetentionPolicy>) -> Reply<pb::Empty> {
        let p = policy_from_pb(request.into_inner());
        reply(self.store.set_retention(p.conversation_id, p.keep_days).await, |()| pb::Empty {})
    }

    async fn clear_retention(&self, request: Request<pb::RetentionScope>) -> Reply<pb::Empty> {
        let scope = request.into_inner().conversation_id;
        reply(self.store.clear_retention(scope).await, |()| pb::Empty {})
    }

    async fn retention_policies(
        &self,
        _request: Request<pb::Empty>,
    ) -> Reply<pb::RetentionPolicyList> {
        reply(self.store.retention_policies().await, |list| pb::RetentionPolicyList {
            policies: list.into_iter().map(policy_to_pb).collect(),
        })
    }

    async fn add_hold(&self, request: Request<pb::AddHoldRequest>) -> Reply<pb::LegalHold> {
        let r = request.into_inner();
        let held = r.user.map(user_from_pb);
        let creator = user(r.creator, "creator")?;
        let added =
            self.store.add_hold(held.as_ref(), r.conversation_id, &r.reason, &creator).await;
        reply(added, hold_to_pb)
    }

    async fn remove_hold(&self, request: Request<pb::HoldId>) -> Reply<pb::Empty> {
        reply(self.store.remove_hold(request.into_inner().id).await, |()| pb::Empty {})
    }

    async fn legal_holds(&self, _request: Request<pb::Empty>) -> Reply<pb::LegalHoldList> {
        reply(self.store.legal_holds().await, |list| pb::LegalHoldList {
            holds: list.into_iter().map(hold_to_pb).collect(),
        })
    }

    async fn retention_targets(
        &self,
        request: Request<pb::RetentionTargetsRequest>,
    ) -> Reply<pb::RetentionTargetList> {
        let targets = self.store.retention_targets(request.into_inner().now).await;
        reply(targets, |list| pb::RetentionTargetList {
            targets: list
                .into_iter()
                .map(|(conversation_id, cutoff)| pb::RetentionTarget { conversation_id, cutoff })
                .collect(),
        })
    }

    async fn retention_delete(
        &self,
        request: Request<pb::RetentionDeleteRequest>,
    ) -> Reply<pb::RetentionBatch> {
        let r = request.into_inner();
        let budget = std::time::Duration::from_micros(r.budget_us);
        let batch = self.store.retention_delete(r.conversation_id, r.cutoff, r.limit, budget).await;
        reply(batch, |b| pb::RetentionBatch {
            deleted: i64::try_from(b.deleted).unwrap_or(i64::MAX),
            done: b.done,
        })
    }

    async fn attach(&self, request: Request<pb::AttachRequest>) -> Reply<pb::Appended> {
        let r = request.into_inner();
        let message = r.message.ok_or_else(|| Status::invalid_argument("message is required"))?;
        let file = r.file.ok_or_else(|| Status::invalid_argument("file is required"))?;
        let message = new_message_from_pb(message)?;
        let stored = self.store.attach(message, new_attachment_from_pb(file)).await;
        reply(stored, appended_to_pb)
    }

    async fn get_attachment(
        &self,
        request: Request<pb::AttachmentRequest>,
    ) -> Reply<pb::StoredAttachment> {
        let r = request.into_inner();
        let viewer = user(r.viewer, "viewer")?;
        reply(self.store.attachment(r.id, &viewer).await, stored_attachment_to_pb)
    }

    async fn attachment_trash(
        &self,
        request: Request<pb::AttachmentTrashRequest>,
    ) -> Reply<pb::StorageKeys> {
        let limit = request.into_inner().limit;
        reply(self.store.attachment_trash(limit).await, |keys| pb::StorageKeys { keys })
    }

    async fn forget_attachment_trash(&self, request: Request<pb::StorageKeys>) -> Reply<pb::Empty> {
        let keys = request.into_inner().keys;
        reply(self.store.forget_attachment_trash(&keys).await, |()| pb::Empty {})
    }

    async fn known_attachment_keys(
        &self,
        request: Request<pb::StorageKeys>,
    ) -> Reply<pb::StorageKeys> {
        let keys = request.into_inner().keys;
        reply(self.store.known_attachment_keys(&keys).await, |keys| pb::StorageKeys { keys })
    }

    async fn search(&self, request: Request<pb::SearchRequest>) -> Reply<pb::SearchReply> {
        let (viewer, query) = search_from_pb(request.into_inner())?;
        reply(self.store.search(&viewer, &query).await, search_page_to_pb)
    }

    async fn mark_read(&self, request: Request<pb::MarkReadRequest>) -> Reply<pb::Seq> {
        let r = request.into_inner();
        let viewer = user(r.viewer, "viewer")?;
        reply(self.store.mark_read(r.conversation_id, &viewer, r.seq).await, |seq| pb::Seq { seq })
    }

    async fn read_cursors(
        &self,
        request: Request<pb::ConversationRequest>,
    ) -> Reply<pb::ReadCursorsReply> {
        let r = request.into_inner();
        let viewer = user(r.viewer, "viewer")?;
        reply(self.store.read_cursors(r.conversation_id, &viewer).await, |cursors| {
            pb::ReadCursorsReply {
                cursors: cursors
                    .into_iter()
                    .map(|(username, seq)| pb::ReadCursor { username, seq })
                    .collect(),
            }
        })
    }

    async fn import_directory(
        &self,
        request: Request<pb::ImportDirectoryRequest>,
    ) -> Reply<pb::ImportReport> {
        let r = request.into_inner();
        let entries = r.entries.into_iter().map(entry_from_pb).collect();
        reply(self.store.import_directory(entries, r.password_hash, r.dry_run).await, report_to_pb)
    }

    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Reply<pb::Webhook> {
        let r = request.into_inner();
        let creator = user(r.creator, "creator")?;
        let created =
            self.store.create_webhook(r.conversation_id, &creator, &r.name, &r.secret_hash).await;
        reply(created, webhook_to_pb)
    }

    async fn get_webhook(&self, request: Request<pb::WebhookId>) -> Reply<pb::MaybeWebhook> {
        reply(self.store.webhook(request.into_inner().id).await, |w| pb::MaybeWebhook {
            webhook: w.map(webhook_to_pb),
        })
    }

    async fn revoke_webhook(&self, request: Request<pb::RevokeWebhookRequest>) -> Reply<pb::Empty> {
        let r = request.into_inner();
        let actor = user(r.actor, "actor")?;
        reply(self.store.revoke_webhook(r.id, &actor).await, |()| pb::Empty {})
    }

    async fn create_broadcast(&self, request: Request<pb::NewBroadcast>) -> Reply<pb::Broadcast> {
        let new = new_broadcast_from_pb(request.into_inner())?;
        reply(self.store.create_broadcast(new).await, broadcast_to_pb)
    }

    async fn pending_broadcasts(
        &self,
        request: Request<pb::PendingBroadcastsRequest>,
    ) -> Reply<pb::Broadcasts> {
        let r = request.into_inner();
        let who = user(r.user, "user")?;
        reply(self.store.pending_broadcasts(&who, r.limit).await, |list| pb::Broadcasts {
            broadcasts: list.into_iter().map(broadcast_to_pb).collect(),
        })
    }

    async fn broadcasts_seen(
        &self,
        request: Request<pb::BroadcastsSeenRequest>,
    ) -> Reply<pb::Empty> {
        let seen: Vec<(i64, i64)> =
            request.into_inner().seen.into_iter().map(|c| (c.user_id, c.upto)).collect();
        reply(self.store.broadcasts_seen(&seen).await, |()| pb::Empty {})
    }

    async fn ack_broadcast(&self, request: Request<pb::AckBroadcastRequest>) -> Reply<pb::Empty> {
        let r = request.into_inner();
        let who = user(r.user, "user")?;
        reply(self.store.ack_broadcast(r.id, &who).await, |()| pb::Empty {})
    }

    async fn broadcast_status(
        &self,
        request: Request<pb::BroadcastId>,
    ) -> Reply<pb::BroadcastStatusReply> {
        reply(self.store.broadcast_status(request.into_inner().id).await, |(b, recipients)| {
            pb::BroadcastStatusReply {
                broadcast: Some(broadcast_to_pb(b)),
                recipients: recipients
                    .into_iter()
                    .map(|(username, acked_at)| pb::BroadcastRecipient { username, acked_at })
                    .collect(),
            }
        })
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Reply<pb::UpdateUserReply> {
        let r = request.into_inner();
        reply(self.store.update_user(&r.username, r.admin, r.disabled).await, |(u, disabled)| {
            pb::UpdateUserReply { user: Some(user_to_pb(&u)), disabled }
        })
    }

    async fn record_audit(&self, request: Request<pb::AuditEntries>) -> Reply<pb::Empty> {
        let entries: Vec<_> =
            request.into_inner().entries.into_iter().map(new_audit_from_pb).collect();
        reply(self.store.record_audit(&entries).await, |()| pb::Empty {})
    }

    async fn audit_log(&self, request: Request<pb::AuditQuery>) -> Reply<pb::AuditEntries> {
        let query = audit_query_from_pb(request.into_inner());
        reply(self.store.audit_log(&query).await, |entries| pb::AuditEntries {
            entries: entries.into_iter().map(audit_to_pb).collect(),
        })
    }

    async fn export(&self, request: Request<pb::ExportQuery>) -> Reply<pb::ExportPage> {
        let query = export_query_from_pb(request.into_inner());
        reply(self.store.export(&query).await, |page| pb::ExportPage {
            records: page.records.into_iter().map(export_record_to_pb).collect(),
            has_more: page.has_more,
        })
    }

    async fn export_count(&self, request: Request<pb::ExportQuery>) -> Reply<pb::Count> {
        let query = export_query_from_pb(request.into_inner());
        reply(self.store.export_count(&query).await, |count| pb::Count { count })
    }
}
