-- `messages` checked two foreign keys (conversation_id -> conversations, sender_id ->
-- users) per inserted row: two trigger queries each, one of them locking the sender's row
-- (FOR KEY SHARE, a write to the users table per batch and sender). That was 12% of
-- `append_batch`'s CPU (perf of a 64-message batch) and 10-14% of its execution time
-- (docs/benchmarks.md, "The append path without foreign keys"), for checks the writers
-- make anyway:
--
-- - `append_batch` locks each conversation's row FOR UPDATE before it inserts, answers
--   "conversation not found" for a conversation without one, and inserts only messages
--   whose sender is a member (`members` references `users`) or system messages, whose
--   sender the storage service has read from `users` itself.
-- - `insert_message` (edits, reactions, thread replies, attachments, the system messages
--   of membership changes) bumps the conversation's `last_seq` first and fails without a
--   row; its sender is a `users` row read before.
-- - Neither users nor conversations are ever deleted: accounts are disabled, and
--   retention deletes messages, never their conversation.
--
-- `reactions` keeps its foreign key to `messages`; SQLite (one local writer, where the
-- check is a B-tree probe) keeps both of its own.
ALTER TABLE messages
    DROP CONSTRAINT messages_conversation_id_fkey,
    DROP CONSTRAINT messages_sender_id_fkey;
