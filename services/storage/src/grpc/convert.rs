//! Conversions between the storage records and their protobuf messages, and between
//! [`StoreError`] and gRPC statuses.

use prost::Message as _;
use switchboard_protocol::rest::{
    AuditEntry, ExportConversation, ExportEdit, ExportReaction, ExportRecord, ImportReport,
    LegalHold, RetentionPolicy,
};
use switchboard_protocol::{
    Attachment, Broadcast, Conversation, ConversationKind, Message, MessageKind, PresenceStatus,
    Reaction,
};
use tonic::{Code, Status};

use super::pb;
use super::pb::append_outcome::Outcome;
use crate::{
    Appended, AuditQuery, DirectoryEntry, ExportQuery, HistoryPage, NewAttachment, NewAuditEntry,
    NewBroadcast, NewMessage, NewUser, SearchPage, SearchQuery, SearchSort, SearchTerm, StoreError,
    StoredAttachment, User, Webhook,
};

pub fn user_to_pb(user: &User) -> pb::User {
    pb::User {
        id: user.id,
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        org: user.org.clone(),
        admin: user.admin,
        status: user.status.as_str().to_owned(),
        status_text: user.status_text.clone(),
        department: user.department.clone(),
        title: user.title.clone(),
        bot: user.bot,
        broadcast_scope: user.broadcast_scope.clone(),
    }
}

pub fn user_from_pb(user: pb::User) -> User {
    User {
        id: user.id,
        status: PresenceStatus::parse(&user.status).unwrap_or(PresenceStatus::Available),
        username: user.username,
        display_name: user.display_name,
        org: user.org,
        admin: user.admin,
        status_text: user.status_text,
        department: user.department,
        title: user.title,
        bot: user.bot,
        broadcast_scope: user.broadcast_scope,
    }
}

/// A required message field; proto3 makes every message field optional on the wire.
pub fn required<T>(field: Option<T>, name: &str) -> Result<T, Status> {
    field.ok_or_else(|| Status::invalid_argument(format!("{name} is required")))
}

pub fn message_to_pb(message: Message) -> pb::Message {
    pb::Message {
        conversation_id: message.conversation_id,
        seq: message.seq,
        sender: message.sender,
        kind: message.kind.as_str().to_owned(),
        body: message.body,
        client_msg_id: message.client_msg_id,
        ts: message.ts,
        author: message.author,
        ref_seq: message.ref_seq,
        edited_at: message.edited_at,
        deleted: message.deleted,
        thread_seq: message.thread_seq,
        reply_count: message.reply_count,
        reactions: message
            .reactions
            .into_iter()
            .map(|r| pb::Reaction { emoji: r.emoji, count: r.count, me: r.me })
            .collect(),
        attachments: message.attachments.into_iter().map(attachment_to_pb).collect(),
    }
}

fn attachment_to_pb(a: Attachment) -> pb::Attachment {
    pb::Attachment {
        id: a.id,
        name: a.name,
        content_type: a.content_type,
        size: a.size,
        sha256: a.sha256,
    }
}

fn attachment_from_pb(a: pb::Attachment) -> Attachment {
    Attachment {
        id: a.id,
        name: a.name,
        content_type: a.content_type,
        size: a.size,
        sha256: a.sha256,
    }
}

pub fn new_attachment_to_pb(a: NewAttachment) -> pb::NewAttachment {
    pb::NewAttachment {
        name: a.name,
        content_type: a.content_type,
        size: a.size,
        sha256: a.sha256,
        storage_key: a.storage_key,
    }
}

pub fn new_attachment_from_pb(a: pb::NewAttachment) -> NewAttachment {
    NewAttachment {
        name: a.name,
        content_type: a.content_type,
        size: a.size,
        sha256: a.sha256,
        storage_key: a.storage_key,
    }
}

pub fn stored_attachment_to_pb(a: StoredAttachment) -> pb::StoredAttachment {
    pb::StoredAttachment {
        id: a.id,
        conversation_id: a.conversation_id,
        seq: a.seq,
        uploader: a.uploader,
        name: a.name,
        content_type: a.content_type,
        size: a.size,
        sha256: a.sha256,
        created_at: a.created_at,
        storage_key: a.storage_key,
    }
}

pub fn stored_attachment_from_pb(a: pb::StoredAttachment) -> StoredAttachment {
    StoredAttachment {
        id: a.id,
        conversation_id: a.conversation_id,
        seq: a.seq,
        uploader: a.uploader,
        name: a.name,
        content_type: a.content_type,
        size: a.size,
        sha256: a.sha256,
        created_at: a.created_at,
        storage_key: a.storage_key,
    }
}

pub fn message_from_pb(message: pb::Message) -> Message {
    Message {
        conversation_id: message.conversation_id,
        seq: message.seq,
        sender: message.sender,
        kind: MessageKind::parse(&message.kind).unwrap_or(MessageKind::Text),
        body: message.body,
        client_msg_id: message.client_msg_id,
        ts: message.ts,
        author: message.author,
        ref_seq: message.ref_seq,
        edited_at: message.edited_at,
        deleted: message.deleted,
        thread_seq: message.thread_seq,
        reply_count: message.reply_count,
        reactions: message
            .reactions
            .into_iter()
            .map(|r| Reaction { emoji: r.emoji, count: r.count, me: r.me })
            .collect(),
        attachments: message.attachments.into_iter().map(attachment_from_pb).collect(),
    }
}

pub fn conversation_to_pb(conversation: Conversation) -> pb::Conversation {
    pb::Conversation {
        id: conversation.id,
        kind: conversation.kind.as_str().to_owned(),
        name: conversation.name,
        members: conversation.members,
        last_seq: conversation.last_seq,
        read_seq: conversation.read_seq,
        owner: conversation.owner,
    }
}

pub fn conversation_from_pb(conversation: pb::Conversation) -> Conversation {
    Conversation {
        id: conversation.id,
        kind: ConversationKind::parse(&conversation.kind).unwrap_or(ConversationKind::Group),
        name: conversation.name,
        members: conversation.members,
        last_seq: conversation.last_seq,
        read_seq: conversation.read_seq,
        owner: conversation.owner,
    }
}

pub fn new_user_to_pb(user: NewUser) -> pb::NewUser {
    pb::NewUser {
        username: user.username,
        display_name: user.display_name,
        org: user.org,
        admin: user.admin,
        password_hash: user.password_hash,
        department: user.department,
        title: user.title,
        bot: user.bot,
    }
}

pub fn new_user_from_pb(user: pb::NewUser) -> NewUser {
    NewUser {
        username: user.username,
        display_name: user.display_name,
        org: user.org,
        admin: user.admin,
        password_hash: user.password_hash,
        department: user.department,
        title: user.title,
        bot: user.bot,
    }
}

pub fn new_message_to_pb(message: NewMessage) -> pb::NewMessage {
    pb::NewMessage {
        conversation_id: message.conversation_id,
        sender: Some(user_to_pb(&message.sender)),
        client_msg_id: message.client_msg_id,
        kind: message.kind.as_str().to_owned(),
        body: message.body,
        author: message.author,
        traceparent: String::new(),
    }
}

pub fn new_message_from_pb(message: pb::NewMessage) -> Result<NewMessage, Status> {
    Ok(NewMessage {
        conversation_id: message.conversation_id,
        sender: user_from_pb(required(message.sender, "sender")?),
        client_msg_id: message.client_msg_id,
        kind: MessageKind::parse(&message.kind)
            .ok_or_else(|| Status::invalid_argument(format!("unknown kind {:?}", message.kind)))?,
        body: message.body,
        author: message.author,
    })
}

pub fn appended_to_pb(appended: Appended) -> pb::Appended {
    pb::Appended {
        message: Some(message_to_pb(appended.message)),
        duplicate: appended.duplicate,
        members: appended.members,
    }
}

pub fn appended_from_pb(appended: pb::Appended) -> Result<Appended, StoreError> {
    let message = appended
        .message
        .ok_or_else(|| StoreError::Unavailable("storage service sent no message".into()))?;
    Ok(Appended {
        message: message_from_pb(message),
        duplicate: appended.duplicate,
        members: appended.members,
    })
}

/// The results of an `AppendMany` call that sent `sent` messages, one per message in
/// order. An answer with a different number of outcomes fails every message (which
/// outcome belongs to which message is then unknown), and so does an empty outcome.
pub fn outcomes_from_pb(
    outcomes: Vec<pb::AppendOutcome>,
    sent: usize,
) -> Vec<Result<Appended, StoreError>> {
    if outcomes.len() != sent {
        let e = format!("storage service answered {} of {sent} appends", outcomes.len());
        return vec![Err(StoreError::Unavailable(e)); sent];
    }
    outcomes
        .into_iter()
        .map(|outcome| match outcome.outcome {
            Some(Outcome::Appended(appended)) => appended_from_pb(appended),
            Some(Outcome::Failure(failure)) => Err(failure_to_error(failure, "append refused")),
            None => Err(StoreError::Unavailable("storage service sent an empty outcome".into())),
        })
        .collect()
}

pub fn page_to_pb(page: HistoryPage) -> pb::HistoryPage {
    pb::HistoryPage {
        messages: page.messages.into_iter().map(message_to_pb).collect(),
        has_more: page.has_more,
    }
}

pub fn page_from_pb(page: pb::HistoryPage) -> HistoryPage {
    HistoryPage {
        messages: page.messages.into_iter().map(message_from_pb).collect(),
        has_more: page.has_more,
    }
}

pub fn search_to_pb(viewer: &User, query: &SearchQuery) -> pb::SearchRequest {
    pb::SearchRequest {
        viewer: Some(user_to_pb(viewer)),
        terms: query
            .terms
            .iter()
            .map(|term| match term {
                SearchTerm::Word(w) => {
                    pb::SearchTerm { kind: "word".into(), words: vec![w.clone()] }
                }
                SearchTerm::Prefix(p) => {
                    pb::SearchTerm { kind: "prefix".into(), words: vec![p.clone()] }
                }
                SearchTerm::Phrase(words) => {
                    pb::SearchTerm { kind: "phrase".into(), words: words.clone() }
                }
            })
            .collect(),
        from: query.from,
        conversations: query.conversations.clone().map(|ids| pb::ConversationFilter { ids }),
        after: query.after,
        before: query.before,
        sort: match query.sort {
            SearchSort::Relevance => "relevance",
            SearchSort::Recent => "recent",
        }
        .into(),
        offset: query.offset,
        limit: query.limit,
    }
}

pub fn search_from_pb(request: pb::SearchRequest) -> Result<(User, SearchQuery), Status> {
    let viewer = user_from_pb(required(request.viewer, "viewer")?);
    let terms = request
        .terms
        .into_iter()
        .map(|term| {
            let mut words = term.words;
            match (term.kind.as_str(), words.len()) {
                ("word", 1) => Ok(SearchTerm::Word(words.remove(0))),
                ("prefix", 1) => Ok(SearchTerm::Prefix(words.remove(0))),
                ("phrase", 1..) => Ok(SearchTerm::Phrase(words)),
                (kind, n) => {
                    Err(Status::invalid_argument(format!("bad search term: {kind} of {n} words")))
                }
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sort = match request.sort.as_str() {
        "relevance" | "" => SearchSort::Relevance,
        "recent" => SearchSort::Recent,
        other => return Err(Status::invalid_argument(format!("unknown sort {other:?}"))),
    };
    let query = SearchQuery {
        terms,
        from: request.from,
        conversations: request.conversations.map(|c| c.ids),
        after: request.after,
        before: request.before,
        sort,
        offset: request.offset,
        limit: request.limit,
    };
    Ok((viewer, query))
}

pub fn search_page_to_pb(page: SearchPage) -> pb::SearchReply {
    pb::SearchReply {
        messages: page.messages.into_iter().map(message_to_pb).collect(),
        has_more: page.has_more,
    }
}

pub fn search_page_from_pb(page: pb::SearchReply) -> SearchPage {
    SearchPage {
        messages: page.messages.into_iter().map(message_from_pb).collect(),
        has_more: page.has_more,
    }
}

/// A [`StoreError`] as a status whose details say exactly which error it was.
pub fn error_to_status(error: StoreError) -> Status {
    let code = match &error {
        StoreError::NotMember { .. } | StoreError::Forbidden(_) | StoreError::NotAuthor { .. } => {
            Code::PermissionDenied
        }
        StoreError::ConversationNotFound(_)
        | StoreError::UserNotFound(_)
        | StoreError::NotFound(_) => Code::NotFound,
        StoreError::UserExists(_) => Code::AlreadyExists,
        StoreError::Invalid(_) => Code::InvalidArgument,
        StoreError::Unavailable(_) => Code::Unavailable,
    };
    let failure = error_to_failure(&error);
    Status::with_details(code, error.to_string(), failure.encode_to_vec().into())
}

/// The typed form of `error` that travels in a status's details or in a batch's outcome.
pub fn error_to_failure(error: &StoreError) -> pb::StoreFailure {
    let (kind, conversation, user) = match error {
        StoreError::NotMember { conversation, user } => ("not_member", *conversation, user.clone()),
        StoreError::ConversationNotFound(id) => ("conversation_not_found", *id, String::new()),
        StoreError::UserNotFound(name) => ("user_not_found", 0, name.clone()),
        StoreError::UserExists(name) => ("user_exists", 0, name.clone()),
        StoreError::Invalid(_) => ("invalid", 0, String::new()),
        StoreError::NotFound(_) => ("not_found", 0, String::new()),
        StoreError::Forbidden(_) => ("forbidden", 0, String::new()),
        StoreError::NotAuthor { conversation, .. } => ("not_author", *conversation, String::new()),
        StoreError::Unavailable(_) => ("unavailable", 0, String::new()),
    };
    let message = match error {
        StoreError::Invalid(m) | StoreError::Unavailable(m) | StoreError::NotFound(m) => m.clone(),
        StoreError::Forbidden(what) => (*what).to_owned(),
        StoreError::NotAuthor { seq, .. } => seq.to_string(),
        _ => String::new(),
    };
    pb::StoreFailure { kind: kind.to_owned(), conversation, user, message }
}

/// Rebuilds the [`StoreError`] a status carries. A status without details (the service
/// unreachable, a deadline, a proxy's answer) means storage is unavailable.
pub fn status_to_error(status: Status) -> StoreError {
    let error = match pb::StoreFailure::decode(status.details()) {
        Ok(failure) => failure_to_error(failure, status.message()),
        Err(_) => StoreError::Unavailable(format!("storage service: {}", status.message())),
    };
    if matches!(error, StoreError::Unavailable(_)) {
        crate::metrics::CLIENT.unavailable.inc();
    }
    error
}

/// The [`StoreError`] a [`pb::StoreFailure`] describes; `context` words an unknown kind.
pub fn failure_to_error(failure: pb::StoreFailure, context: &str) -> StoreError {
    match failure.kind.as_str() {
        "not_member" => {
            StoreError::NotMember { conversation: failure.conversation, user: failure.user }
        }
        "conversation_not_found" => StoreError::ConversationNotFound(failure.conversation),
        "user_not_found" => StoreError::UserNotFound(failure.user),
        "user_exists" => StoreError::UserExists(failure.user),
        "invalid" => StoreError::Invalid(failure.message),
        "not_found" => StoreError::NotFound(failure.message),
        "forbidden" => StoreError::Forbidden(forbidden_action(&failure.message)),
        "not_author" => StoreError::NotAuthor {
            conversation: failure.conversation,
            seq: failure.message.parse().unwrap_or(0),
        },
        "unavailable" if !failure.message.is_empty() => StoreError::Unavailable(failure.message),
        _ => StoreError::Unavailable(format!("storage service: {context}")),
    }
}

/// `StoreError::Forbidden` carries a static description of the refused action; map the
/// ones the stores use back to it.
fn forbidden_action(message: &str) -> &'static str {
    match message {
        "remove other members" => "remove other members",
        "create webhooks for this conversation" => "create webhooks for this conversation",
        "revoke this webhook" => "revoke this webhook",
        "acknowledge a broadcast not sent to you" => "acknowledge a broadcast not sent to you",
        _ => "do that",
    }
}

pub fn entry_to_pb(e: DirectoryEntry) -> pb::DirectoryEntry {
    pb::DirectoryEntry {
        username: e.username,
        display_name: e.display_name,
        org: e.org,
        department: e.department,
        title: e.title,
        broadcast_scope: e.broadcast_scope,
    }
}

pub fn entry_from_pb(e: pb::DirectoryEntry) -> DirectoryEntry {
    DirectoryEntry {
        username: e.username,
        display_name: e.display_name,
        org: e.org,
        department: e.department,
        title: e.title,
        broadcast_scope: e.broadcast_scope,
    }
}

pub fn report_to_pb(r: ImportReport) -> pb::ImportReport {
    pb::ImportReport {
        created: r.created,
        updated: r.updated,
        unchanged: r.unchanged,
        dry_run: r.dry_run,
    }
}

pub fn report_from_pb(r: pb::ImportReport) -> ImportReport {
    ImportReport {
        created: r.created,
        updated: r.updated,
        unchanged: r.unchanged,
        dry_run: r.dry_run,
    }
}

pub fn webhook_to_pb(w: Webhook) -> pb::Webhook {
    pb::Webhook {
        id: w.id,
        conversation_id: w.conversation_id,
        name: w.name,
        secret_hash: w.secret_hash,
        creator: Some(user_to_pb(&w.creator)),
    }
}

pub fn webhook_from_pb(w: pb::Webhook) -> Result<Webhook, StoreError> {
    let creator = w.creator.ok_or_else(|| {
        StoreError::Unavailable("storage service sent a webhook without creator".into())
    })?;
    Ok(Webhook {
        id: w.id,
        conversation_id: w.conversation_id,
        name: w.name,
        secret_hash: w.secret_hash,
        creator: user_from_pb(creator),
    })
}

pub fn broadcast_to_pb(b: Broadcast) -> pb::Broadcast {
    pb::Broadcast {
        id: b.id,
        sender: b.sender,
        author: b.author,
        org: b.org,
        body: b.body,
        ack_required: b.ack_required,
        priority: b.priority,
        ts: b.ts,
    }
}

pub fn broadcast_from_pb(b: pb::Broadcast) -> Broadcast {
    Broadcast {
        id: b.id,
        sender: b.sender,
        author: b.author,
        org: b.org,
        body: b.body,
        ack_required: b.ack_required,
        priority: b.priority,
        ts: b.ts,
    }
}

pub fn new_broadcast_to_pb(b: NewBroadcast) -> pb::NewBroadcast {
    pb::NewBroadcast {
        sender: Some(user_to_pb(&b.sender)),
        org: b.org,
        body: b.body,
        ack_required: b.ack_required,
        priority: b.priority,
    }
}

pub fn new_broadcast_from_pb(b: pb::NewBroadcast) -> Result<NewBroadcast, Status> {
    Ok(NewBroadcast {
        sender: user_from_pb(required(b.sender, "sender")?),
        org: b.org,
        body: b.body,
        ack_required: b.ack_required,
        priority: b.priority,
    })
}

pub fn policy_to_pb(p: RetentionPolicy) -> pb::RetentionPolicy {
    pb::RetentionPolicy { conversation_id: p.conversation_id, keep_days: p.keep_days }
}

pub fn policy_from_pb(p: pb::RetentionPolicy) -> RetentionPolicy {
    RetentionPolicy { conversation_id: p.conversation_id, keep_days: p.keep_days }
}

pub fn hold_to_pb(h: LegalHold) -> pb::LegalHold {
    pb::LegalHold {
        id: h.id,
        user: h.user,
        conversation_id: h.conversation_id,
        reason: h.reason,
        created_by: h.created_by,
        created_at: h.created_at,
    }
}

pub fn hold_from_pb(h: pb::LegalHold) -> LegalHold {
    LegalHold {
        id: h.id,
        user: h.user,
        conversation_id: h.conversation_id,
        reason: h.reason,
        created_by: h.created_by,
        created_at: h.created_at,
    }
}

pub fn new_audit_to_pb(e: &NewAuditEntry) -> pb::AuditEntry {
    pb::AuditEntry {
        id: 0,
        ts: e.ts,
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        ip: e.ip.clone(),
        detail: e.detail.clone(),
    }
}

pub fn new_audit_from_pb(e: pb::AuditEntry) -> NewAuditEntry {
    NewAuditEntry {
        ts: e.ts,
        actor: e.actor,
        action: e.action,
        target: e.target,
        ip: e.ip,
        detail: e.detail,
    }
}

pub fn audit_to_pb(e: AuditEntry) -> pb::AuditEntry {
    pb::AuditEntry {
        id: e.id,
        ts: e.ts,
        actor: e.actor,
        action: e.action,
        target: e.target,
        ip: e.ip,
        detail: e.detail,
    }
}

pub fn audit_from_pb(e: pb::AuditEntry) -> AuditEntry {
    AuditEntry {
        id: e.id,
        ts: e.ts,
        actor: e.actor,
        action: e.action,
        target: e.target,
        ip: e.ip,
        detail: e.detail,
    }
}

pub fn audit_query_to_pb(q: &AuditQuery) -> pb::AuditQuery {
    pb::AuditQuery {
        actor: q.actor.clone(),
        action: q.action.clone(),
        since: q.since,
        until: q.until,
        before: q.before,
        limit: q.limit,
    }
}

pub fn audit_query_from_pb(q: pb::AuditQuery) -> AuditQuery {
    AuditQuery {
        actor: q.actor,
        action: q.action,
        since: q.since,
        until: q.until,
        before: q.before,
        limit: q.limit,
    }
}

pub fn export_query_to_pb(q: &ExportQuery) -> pb::ExportQuery {
    pb::ExportQuery {
        from: q.from,
        to: q.to,
        conversations: q.conversations.clone(),
        senders: q.senders.clone(),
        after_conversation: q.after.map(|(c, _)| c),
        after_seq: q.after.map(|(_, s)| s),
        limit: q.limit,
    }
}

pub fn export_query_from_pb(q: pb::ExportQuery) -> ExportQuery {
    ExportQuery {
        from: q.from,
        to: q.to,
        conversations: q.conversations,
        senders: q.senders,
        after: q.after_conversation.zip(q.after_seq),
        limit: q.limit,
    }
}

pub fn export_record_to_pb(r: ExportRecord) -> pb::ExportRecord {
    pb::ExportRecord {
        conversation_id: r.conversation.id,
        conversation_kind: r.conversation.kind.as_str().to_owned(),
        conversation_name: r.conversation.name,
        conversation_members: r.conversation.members,
        message: Some(message_to_pb(r.message)),
        sender_name: r.sender_name,
        original_body: r.original_body,
        edits: r
            .edits
            .into_iter()
            .map(|e| pb::ExportEdit { seq: e.seq, edited_at: e.edited_at, by: e.by, body: e.body })
            .collect(),
        deleted_at: r.deleted_at,
        deleted_by: r.deleted_by,
        reactions: r
            .reactions
            .into_iter()
            .map(|r| pb::ExportReaction { emoji: r.emoji, users: r.users })
            .collect(),
    }
}

pub fn export_record_from_pb(r: pb::ExportRecord) -> Result<ExportRecord, StoreError> {
    let message = r
        .message
        .ok_or_else(|| StoreError::Unavailable("an export record without its message".into()))?;
    Ok(ExportRecord {
        conversation: ExportConversation {
            id: r.conversation_id,
            kind: ConversationKind::parse(&r.conversation_kind).unwrap_or(ConversationKind::Group),
            name: r.conversation_name,
            members: r.conversation_members,
        },
        message: message_from_pb(message),
        sender_name: r.sender_name,
        original_body: r.original_body,
        edits: r
            .edits
            .into_iter()
            .map(|e| ExportEdit { seq: e.seq, edited_at: e.edited_at, by: e.by, body: e.body })
            .collect(),
        deleted_at: r.deleted_at,
        deleted_by: r.deleted_by,
        reactions: r
            .reactions
            .into_iter()
            .map(|r| ExportReaction { emoji: r.emoji, users: r.users })
            .collect(),
    })
}
