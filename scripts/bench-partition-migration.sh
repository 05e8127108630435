#!/usr/bin/env bash
# Times PostgreSQL migration 0012 (messages rebuilt as 16 hash partitions) over a
# generated history: 1,000 conversations of 1,000 messages (1,000,000 rows, about 850 MB
# with their indexes), in a scratch database `sb_bench_partitions` dropped after.
#   scripts/bench-partition-migration.sh [RUNS]        (default 3; prints each time)
# Connects with psql to 127.0.0.1:5432 as postgres (override with PGHOST, PGUSER, ...).
# Figures: docs/benchmarks.md, "Partitioned history: the upgrade's rebuild".
set -euo pipefail
cd "$(dirname "$0")/.."
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
migrations=services/storage/migrations/postgres
db=sb_bench_partitions
psql_db() { psql -d "$db" -v ON_ERROR_STOP=1 -q "$@"; }
for run in $(seq 1 "${1:-3}"); do
    psql -d postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    for f in "$migrations"/00*.sql; do
        case "$f" in *0012_*|*001[3-9]_*|*00[2-9]?_*) continue ;; esac
        psql_db -1 -f "$f"
    done
    psql_db -c "
        INSERT INTO users (username, password_hash, created_at)
            SELECT 'u' || i, 'x', 0 FROM generate_series(1, 100) i;
        INSERT INTO conversations (kind, created_at, last_seq)
            SELECT 'group', 0, 1000 FROM generate_series(1, 1000);
        INSERT INTO messages (conversation_id, seq, sender_id, kind, body, client_msg_id, ts)
            SELECT c.id, s, (SELECT min(id) FROM users) + s % 100, 'text',
                   'Lunch at 12 on Floor 3? message ' || s || ' of ' || c.id,
                   'k' || c.id || '-' || s, s
            FROM conversations c, generate_series(1, 1000) s;"
    psql_db -c "VACUUM ANALYZE messages"
    start=$(date +%s%N)
    psql_db -1 -f "$migrations/0012_partitioned_messages.sql"
    end=$(date +%s%N)
    echo "run $run: migration 0012 over 1,000,000 messages took $(( (end - start) / 1000000 )) ms"
done
psql -d postgres -qc "DROP DATABASE IF EXISTS $db"
