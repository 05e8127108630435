-- append_batch (0012) joined a batch's rows to one another with nested loops: its plan is
-- generic (made once per connection), so the planner sees every batch as about ten rows
-- and loops, once per message, over the other messages' rows and over the members of every
-- conversation in the batch (re-aggregated per message). That is quadratic in the batch:
-- 512 messages to 500 conversations took 107 ms, against 26 ms with hash joins (pgbench on
-- one connection; docs/benchmarks.md, "append_batch was quadratic"). Batches grow with a
-- backlog, so the cost per message grew just when the database had most to catch up on.
--
-- With nested loops disabled, the joins between the batch's own rows are hashed. The
-- per-row lookups into tables (the LATERAL retry lookup, the correlated membership and
-- conversation checks) have no other plan and stay index lookups, each pruned to its
-- conversation's partition. Disabling a plan type works by a large cost penalty, which
-- would make PostgreSQL JIT-compile the statement on every call (a second or more), so
-- JIT is off for this function.
ALTER FUNCTION append_batch(BIGINT[], BIGINT[], TEXT[], TEXT[], TEXT[], BIGINT, TEXT[])
    SET enable_nestloop = off;
ALTER FUNCTION append_batch(BIGINT[], BIGINT[], TEXT[], TEXT[], TEXT[], BIGINT, TEXT[])
    SET jit = off;
