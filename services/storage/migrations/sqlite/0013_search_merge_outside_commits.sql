-- Issue 7: FTS5 no longer merges its index segments inside the transactions that write
-- them. With 'automerge' at its default (4), a commit that adds a segment also does up
-- to hundreds of pages of merge work, so an append or a retention delete now and then
-- held SQLite's writer for 50 to 150 ms (docs/benchmarks.md, "Retention under load").
-- The store's merger task (storage/src/sqlite/mod.rs) does that work instead, a few
-- pages per transaction between the others. 'crisismerge' (16 segments on one level)
-- stays FTS5's own safety net should the merger fall behind.
INSERT INTO message_search (message_search, rank) VALUES ('automerge', 0);
