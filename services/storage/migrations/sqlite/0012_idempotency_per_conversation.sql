-- Issue 11: a retry is found by (conversation, sender, client_msg_id), as on PostgreSQL,
-- where the index must hold the partition key (migrations/postgres/0012). A key the same
-- sender used in another conversation no longer names an earlier message there.
-- (0010, 0011 are left to work developed alongside.)
DROP INDEX messages_idempotency;
CREATE UNIQUE INDEX messages_idempotency ON messages(conversation_id, sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
