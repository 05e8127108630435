#!/usr/bin/env bash
# What message search costs the append path (docs/benchmarks.md, "Message search"):
# PostgreSQL's append_batch (one call per group commit) timed with pgbench on two fresh
# databases, one with the schema before search (migrations 0001-0003) and one with it
# (0001-0003 and 0005: the stored tsvector and its GIN index), ROUNDS times interleaved.
# One client, batches of BATCH messages of 10 words into 50 conversations.
#
#   scripts/bench-append.sh                  # ROUNDS=3 DURATION=20 BATCH=8
#   BATCH=64 scripts/bench-append.sh
#
# Talks to the local PostgreSQL only; drops its databases when done.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
ensure_postgres

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20}
BATCH=${BATCH:-8}
PG="postgres://postgres@127.0.0.1:5432"
export PGOPTIONS="-c client_min_messages=warning"
PGBENCH=$(ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
migrations=services/storage/migrations/postgres
work=$(mktemp -d)
trap 'rm -rf "$work"; for db in sbbench_before sbbench_search; do psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done' EXIT

setup() { # database, migration files...
    local db=$1
    shift
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    for file in "$@"; do psql -q -v ON_ERROR_STOP=1 "$PG/$db" -f "$file"; done
    psql -q -v ON_ERROR_STOP=1 "$PG/$db" <<'SQL'
INSERT INTO users (username, password_hash, created_at)
    SELECT 'u' || i, '!', 0 FROM generate_series(1, 100) i;
INSERT INTO conversations (kind, name, created_at) SELECT 'group', 'g' || i, 0 FROM generate_series(1, 50) i;
INSERT INTO members (conversation_id, user_id, joined_at)
    SELECT c.id, u.id, 0 FROM conversations c JOIN users u ON u.id % 50 = c.id % 50 OR u.id <= 2;
SQL
}

setup sbbench_before $migrations/0001_*.sql $migrations/0002_*.sql $migrations/0003_*.sql
setup sbbench_search $migrations/0001_*.sql $migrations/0002_*.sql $migrations/0003_*.sql $migrations/0005_*.sql

# One append_batch call of BATCH messages; sender 1 or 2 (members of every conversation).
{
    echo '\set c random(1, 50)'
    echo '\set s random(1, 2)'
    printf 'SELECT count(*) FROM append_batch(array_fill(:c::bigint, ARRAY[%d]), array_fill(:s::bigint, ARRAY[%d]), array_fill('"'text'"'::text, ARRAY[%d]), array_fill('"'the budget review for the customer meeting moved to friday at noon'"'::text, ARRAY[%d]), array_fill(NULL::text, ARRAY[%d]), (extract(epoch from now()) * 1000)::bigint, array_fill(NULL::text, ARRAY[%d]));\n' \
        "$BATCH" "$BATCH" "$BATCH" "$BATCH" "$BATCH" "$BATCH"
} > "$work/append.sql"

for round in $(seq "$ROUNDS"); do
    for db in sbbench_before sbbench_search; do
        tps=$("$PGBENCH" -n -c 1 -T "$DURATION" -f "$work/append.sql" "$PG/$db" 2>/dev/null \
            | awk '/^tps/ { print $3 }')
        rows=$(psql -qtA "$PG/$db" -c "SELECT count(*) FROM messages")
        printf 'round %s %-15s %8.0f batches/s  %8.0f messages/s  %6.3f ms per batch  (%s rows)\n' \
            "$round" "$db" "$tps" "$(echo "$tps * $BATCH" | bc)" "$(echo "1000 / $tps" | bc -l)" "$rows"
    done
done
