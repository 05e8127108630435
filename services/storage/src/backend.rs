//! What the two SQL backends share besides the SQL itself: the `queries` module that
//! compiles `src/sql/` for a driver, and the [`crate::Store`] impl, whose every method
//! calls the same-named query with the pool that suits it. So the backends differ only in
//! their pools.

/// `sql_store!(Type, read = field, write = field, append = field)` implements `Store` for
/// `Type`, reading through pool `self.read`, writing through `self.write`, and appending
/// through the `Appenders` in `self.append`; a search first awaits the type's own
/// `search_ready` (the embedded store indexes what appends left for it). Expand it next
/// to the `queries` module.
macro_rules! sql_store {
    ($store:ident, read = $read:ident, write = $write:ident, append = $append:ident) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn create_user(&self, user: NewUser) -> Result<User> {
                queries::create_user(&self.$write, user).await
            }

            async fn user_count(&self) -> Result<i64> {
                queries::user_count(&self.$read).await
            }

            async fn credentials(&self, username: &str) -> Result<Option<(User, String)>> {
                queries::credentials(&self.$read, username).await
            }

            async fn user_by_name(&self, username: &str) -> Result<User> {
                queries::user_by_name(&self.$read, username).await
            }

            async fn sync_directory_user(&self, user: $crate::DirectoryUser) -> Result<User> {
                queries::sync_directory_user(&self.$write, user).await
            }

            async fn set_status(
                &self,
                user_id: i64,
                status: PresenceStatus,
                text: &str,
            ) -> Result<()> {
                queries::set_status(&self.$write, user_id, status, text).await
            }

            async fn contacts(&self, user_id: i64) -> Result<Vec<User>> {
                queries::contacts(&self.$read, user_id).await
            }

            async fn search_users(&self, query: &str, limit: u32) -> Result<Vec<User>> {
                queries::search_users(&self.$read, query, limit).await
            }

            async fn insert_token(&self, hash: &[u8], user_id: i64, expires_at: i64) -> Result<()> {
                queries::insert_token(&self.$write, hash, user_id, expires_at).await
            }

            async fn user_by_token(&self, hash: &[u8]) -> Result<Option<User>> {
                queries::user_by_token(&self.$read, hash).await
            }

            async fn login_lock(&self, user_id: i64) -> Result<$crate::LoginLock> {
                // From the writer: a lock set a moment ago must be seen.
                queries::login_lock(&self.$write, user_id).await
            }

            async fn login_failed(&self, user_id: i64) -> Result<i64> {
                queries::login_failed(&self.$write, user_id).await
            }

            async fn lock_login(&self, user_id: i64, until: i64) -> Result<()> {
                queries::lock_login(&self.$write, user_id, until).await
            }

            async fn login_succeeded(&self, user_id: i64) -> Result<()> {
                queries::login_succeeded(&self.$write, user_id).await
            }

            async fn revoke_token(&self, hash: &[u8]) -> Result<()> {
                queries::revoke_token(&self.$write, hash).await
            }

            async fn open_direct(&self, a: &User, b: &User) -> Result<(Conversation, bool)> {
                queries::open_direct(&self.$write, a, b).await
            }

            async fn create_group(
                &self,
                owner: &User,
                name: &str,
                members: &[User],
            ) -> Result<(Conversation, Message)> {
                queries::create_group(&self.$write, owner, name, members).await
            }

            async fn add_members(
                &self,
                actor: &User,
                conversation: i64,
                users: &[User],
            ) -> Result<(Conversation, Message)> {
                queries::add_members(&self.$write, actor, conversation, users).await
            }

            async fn remove_member(
                &self,
                actor: &User,
                conversation: i64,
                user: &User,
            ) -> Result<(Conversation, Message)> {
                queries::remove_member(&self.$write, actor, conversation, user).await
            }

            async fn conversation(&self, conversation: i64, viewer: &User) -> Result<Conversation> {
                queries::load(&self.$read, conversation, viewer).await
            }

            async fn conversations_of(&self, user_id: i64) -> Result<Vec<Conversation>> {
                queries::list(&self.$read, user_id).await
            }

            async fn conversation_seqs(&self, user_id: i64) -> Result<Vec<(i64, i64)>> {
                queries::conversation_seqs(&self.$read, user_id).await
            }

            async fn member_ids(&self, conversation: i64) -> Result<Vec<i64>> {
                queries::member_ids(&self.$read, conversation).await
            }

            async fn last_messages(&self, user_id: i64) -> Result<Vec<Message>> {
                queries::last_messages(&self.$read, user_id).await
            }

            async fn append(&self, message: NewMessage) -> Result<Appended> {
                self.$append.append(message).await
            }

            async fn history(
                &self,
                conversation: i64,
                viewer: &User,
                after: Option<i64>,
                before: Option<i64>,
                limit: u32,
            ) -> Result<HistoryPage> {
                queries::history(&self.$read, conversation, viewer, after, before, limit).await
            }

            async fn reply(&self, message: NewMessage, thread_seq: i64) -> Result<Appended> {
                queries::reply(&self.$write, &message, thread_seq).await
            }

            async fn thread(
                &self,
                conversation: i64,
                viewer: &User,
                seq: i64,
                after: Option<i64>,
                limit: u32,
            ) -> Result<HistoryPage> {
                queries::thread(&self.$read, conversation, viewer, seq, after, limit).await
            }

            async fn change_message(
                &self,
                editor: &User,
                conversation: i64,
                seq: i64,
                body: Option<&str>,
                client_msg_id: Option<&str>,
            ) -> Result<Appended> {
                queries::change_message(
                    &self.$write,
                    editor,
                    conversation,
                    seq,
                    body,
                    client_msg_id,
                )
                .await
            }

            async fn react(
                &self,
                user: &User,
                conversation: i64,
                seq: i64,
                emoji: &str,
                add: bool,
            ) -> Result<Option<$crate::Appended>> {
                queries::react(&self.$write, user, conversation, seq, emoji, add).await
            }

            async fn set_retention(
                &self,
                conversation: Option<i64>,
                keep_days: Option<i64>,
            ) -> Result<()> {
                queries::set_retention(&self.$write, conversation, keep_days).await
            }

            async fn clear_retention(&self, conversation: Option<i64>) -> Result<()> {
                queries::clear_retention(&self.$write, conversation).await
            }

            async fn retention_policies(
                &self,
            ) -> Result<Vec<switchboard_protocol::rest::RetentionPolicy>> {
                queries::retention_policies(&self.$read).await
            }

            async fn add_hold(
                &self,
                user: Option<&User>,
                conversation: Option<i64>,
                reason: &str,
                creator: &User,
            ) -> Result<switchboard_protocol::rest::LegalHold> {
                queries::add_hold(&self.$write, user, conversation, reason, creator).await
            }

            async fn remove_hold(&self, id: i64) -> Result<()> {
                queries::remove_hold(&self.$write, id).await
            }

            async fn legal_holds(&self) -> Result<Vec<switchboard_protocol::rest::LegalHold>> {
                queries::legal_holds(&self.$read).await
            }

            async fn retention_targets(&self, now: i64) -> Result<Vec<(i64, i64)>> {
                queries::retention_targets(&self.$read, now).await
            }

            async fn retention_delete(
                &self,
                conversation: i64,
                cutoff: i64,
                limit: u32,
                budget: std::time::Duration,
            ) -> Result<$crate::RetentionBatch> {
                queries::retention_delete(&self.$write, conversation, cutoff, limit, budget).await
            }

            async fn attach(
                &self,
                message: NewMessage,
                file: $crate::NewAttachment,
            ) -> Result<Appended> {
                queries::attach(&self.$write, &message, &file).await
            }

            async fn attachment(&self, id: i64, viewer: &User) -> Result<$crate::StoredAttachment> {
                queries::attachment(&self.$read, id, viewer).await
            }

            async fn attachment_trash(&self, limit: u32) -> Result<Vec<String>> {
                queries::attachment_trash(&self.$read, limit).await
            }

            async fn forget_attachment_trash(&self, keys: &[String]) -> Result<()> {
                queries::forget_attachment_trash(&self.$write, keys).await
            }

            async fn known_attachment_keys(&self, keys: &[String]) -> Result<Vec<String>> {
                queries::known_attachment_keys(&self.$read, keys).await
            }

            async fn search(
                &self,
                viewer: &User,
                query: &$crate::SearchQuery,
            ) -> Result<$crate::SearchPage> {
                self.search_ready().await?;
                queries::search(&self.$read, viewer, query).await
            }

            async fn mark_read(&self, conversation: i64, viewer: &User, seq: i64) -> Result<i64> {
                queries::mark_read(&self.$write, conversation, viewer, seq).await
            }

            async fn read_cursors(
                &self,
                conversation: i64,
                viewer: &User,
            ) -> Result<Vec<(String, i64)>> {
                queries::read_cursors(&self.$read, conversation, viewer).await
            }

            async fn import_directory(
                &self,
                entries: Vec<$crate::DirectoryEntry>,
                password_hash: String,
                dry_run: bool,
            ) -> Result<switchboard_protocol::rest::ImportReport> {
                queries::import_directory(&self.$write, entries, password_hash, dry_run).await
            }

            async fn create_webhook(
                &self,
                conversation: i64,
                creator: &User,
                name: &str,
                secret_hash: &[u8],
            ) -> Result<$crate::Webhook> {
                queries::create_webhook(&self.$write, conversation, creator, name, secret_hash)
                    .await
            }

            async fn webhook(&self, id: i64) -> Result<Option<$crate::Webhook>> {
                queries::webhook(&self.$read, id).await
            }

            async fn revoke_webhook(&self, id: i64, actor: &User) -> Result<()> {
                queries::revoke_webhook(&self.$write, id, actor).await
            }

            async fn create_broadcast(
                &self,
                new: $crate::NewBroadcast,
            ) -> Result<switchboard_protocol::Broadcast> {
                queries::create_broadcast(&self.$write, new).await
            }

            async fn pending_broadcasts(
                &self,
                user: &User,
                limit: u32,
            ) -> Result<Vec<switchboard_protocol::Broadcast>> {
                queries::pending_broadcasts(&self.$read, user, limit).await
            }

            async fn broadcasts_seen(&self, seen: &[(i64, i64)]) -> Result<()> {
                queries::broadcasts_seen(&self.$write, seen).await
            }

            async fn ack_broadcast(&self, id: i64, user: &User) -> Result<()> {
                queries::ack_broadcast(&self.$write, id, user).await
            }

            async fn broadcast_status(
                &self,
                id: i64,
            ) -> Result<(switchboard_protocol::Broadcast, Vec<(String, Option<i64>)>)> {
                queries::broadcast_status(&self.$read, id).await
            }

            async fn update_user(
                &self,
                username: &str,
                admin: Option<bool>,
                disabled: Option<bool>,
            ) -> Result<(User, bool)> {
                queries::update_user(&self.$write, username, admin, disabled).await
            }

            async fn record_audit(&self, entries: &[$crate::NewAuditEntry]) -> Result<()> {
                queries::record_audit(&self.$write, entries).await
            }

            async fn audit_log(
                &self,
                query: &$crate::AuditQuery,
            ) -> Result<Vec<switchboard_protocol::rest::AuditEntry>> {
                queries::audit_log(&self.$read, query).await
            }

            async fn export(&self, query: &$crate::ExportQuery) -> Result<$crate::ExportPage> {
                queries::export(&self.$read, query).await
            }

            async fn export_count(&self, query: &$crate::ExportQuery) -> Result<i64> {
                queries::export_count(&self.$read, query).await
            }
        }
    };
}

pub(crate) use sql_store;

/// `sql_queries!(Connection, Pool, Row, "extra.rs"..)` declares the backend's `queries`
/// module: the shared SQL of `src/sql/` (users, conversations, and the named extra files)
/// compiled against that driver's types.
macro_rules! sql_queries {
    ($conn:ty, $pool:ty, $row:ty $(, $extra:literal)*) => {
        mod queries {
            use std::collections::BTreeSet;

            use sqlx::Row;
            use switchboard_protocol::{
                Conversation, ConversationKind, Message, MessageKind, PresenceStatus,
            };

            use $crate::{
                DirectoryUser, HistoryPage, MAX_PAGE, NewUser, Result, StoreError, User, now_ms,
            };

            type Conn = $conn;
            type Pool = $pool;
            type DbRow = $row;

            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/users.rs"));
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/conversations.rs"));
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/org.rs"));
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/search.rs"));
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/edits.rs"));
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/threads.rs"));
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/lockout.rs"));
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/reactions.rs"));
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/retention.rs"));
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/audit.rs"));
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/export.rs"));
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/attachments.rs"));
            $(include!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql/", $extra));)*
        }
    };
}

pub(crate) use sql_queries;
