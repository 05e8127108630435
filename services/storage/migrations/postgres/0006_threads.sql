-- Threads. A reply is an ordinary message whose ref_seq (the column edit and delete
-- entries use for the message they change) names the thread's root in the same
-- conversation; its kind (text or broadcast) tells it from an edit or delete entry.
-- This index finds a root's replies (for reading a thread and counting its replies in
-- history). It is partial: plain messages, almost every append, do not touch it. It
-- holds what the count filters on, so counting reads the index alone (and SQLite picks
-- it over the primary key even without ANALYZE statistics).
CREATE INDEX messages_thread ON messages (conversation_id, ref_seq, kind, deleted_at)
    WHERE ref_seq IS NOT NULL;
