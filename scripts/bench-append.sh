#!/usr/bin/env bash
# What message search costs the append path (docs/benchmarks.md, "Message search"):
# PostgreSQL's append_batch (one call per group commit) timed with pgbench on two fresh
# databases, one with the schema before search (migrations 0001-0003) and one with it
# (0001-0003 and 0005: the stored tsvector and its GIN index), ROUNDS times interleaved.
# One client, batches of BATCH messages of 10 words into CONVERSATIONS (50) conversations.
#
# COMPARE=joins compares the whole schema with append_batch's joins hashed (migration
# 0016) against the same schema with them left to nested loops (0016 undone), each
# message of a batch in one of 500 conversations at random, as in the cluster benchmark's
# 500 pairs (the quadratic cost of the nested loops shows with batches of a hundred or
# more, spread over many conversations: BATCH=188).
#
# COMPARE=dictionary instead compares the whole schema with 0013's word-dictionary
# triggers (migrations up to 0014) against the schema without them (up to 0015: the
# harvester fills the dictionary off the append path; not running here), each message
# ending in a word of its own (as the load tool's bodies do: each one adds a word).
#
# COMPARE=variant compares the whole schema against the same schema changed by the SQL
# file VARIANT (a candidate migration), batches as for joins, every message with a key of
# its own (as clients send them: the retry lookup runs for each).
#
#   scripts/bench-append.sh                  # ROUNDS=3 DURATION=20 BATCH=8
#   BATCH=64 scripts/bench-append.sh
#   COMPARE=dictionary BATCH=16 scripts/bench-append.sh
#   COMPARE=joins BATCH=188 scripts/bench-append.sh
#   COMPARE=variant VARIANT=/tmp/candidate.sql BATCH=16 scripts/bench-append.sh
#
# Talks to the local PostgreSQL only; drops its databases when done.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
ensure_postgres
. scripts/bench-lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20}
BATCH=${BATCH:-8}
COMPARE=${COMPARE:-search}
CONVERSATIONS=${CONVERSATIONS:-50}
case $COMPARE in joins | variant) CONVERSATIONS=500 ;; esac
PG="postgres://postgres@127.0.0.1:5432"
export PGOPTIONS="-c client_min_messages=warning"
PGBENCH=$(ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
migrations=services/storage/migrations/postgres
work=$(mktemp -d)
before=sbbench_before
after=sbbench_search
if [ "$COMPARE" = dictionary ]; then
    before=sbbench_triggers
    after=sbbench_harvest
elif [ "$COMPARE" = joins ]; then
    before=sbbench_nested
    after=sbbench_hashed
elif [ "$COMPARE" = variant ]; then
    [ -f "${VARIANT:-}" ] || { echo "COMPARE=variant needs VARIANT=file.sql" >&2; exit 2; }
    before=sbbench_main
    after=sbbench_variant
fi
trap 'rm -rf "$work"; for db in $before $after; do psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done' EXIT

setup() { # database, migration files...
    local db=$1
    shift
    bench_append_database "$PG/$db" "$CONVERSATIONS" "$@"
}

body="array_fill('the budget review for the customer meeting moved to friday at noon'::text, ARRAY[$BATCH])"
conversations="array_fill(:c::bigint, ARRAY[$BATCH])"
keys="array_fill(NULL::text, ARRAY[$BATCH])"
random_conversations="(SELECT array_agg(1 + (random() * ($CONVERSATIONS - 1))::bigint) FROM generate_series(1, $BATCH))"
if [ "$COMPARE" = joins ]; then
    setup "$before" "$migrations"/*.sql
    setup "$after" "$migrations"/*.sql
    for setting in enable_nestloop jit; do
        psql -q "$PG/$before" -c "ALTER FUNCTION append_batch(BIGINT[], BIGINT[], TEXT[], TEXT[], TEXT[], BIGINT, TEXT[]) RESET $setting"
    done
    conversations=$random_conversations
elif [ "$COMPARE" = variant ]; then
    setup "$before" "$migrations"/*.sql
    setup "$after" "$migrations"/*.sql
    psql -q -v ON_ERROR_STOP=1 "$PG/$after" -f "$VARIANT"
    conversations=$random_conversations
    keys="(SELECT array_agg(md5(random()::text)) FROM generate_series(1, $BATCH))"
elif [ "$COMPARE" = dictionary ]; then
    # Every migration up to 0014 (the triggers) or 0015 (none), as the store applies them.
    upto() { for f in "$migrations"/*.sql; do [[ $(basename "$f") < "$1" ]] && echo "$f"; done; }
    mapfile -t with_triggers < <(upto 0015)
    mapfile -t without < <(upto 0016)
    setup "$before" "${with_triggers[@]}"
    setup "$after" "${without[@]}"
    body="(SELECT array_agg('the budget review for the customer meeting moved to friday at noon w' || (random() * 1e12)::bigint) FROM generate_series(1, $BATCH))"
else
    setup "$before" $migrations/0001_*.sql $migrations/0002_*.sql $migrations/0003_*.sql
    setup "$after" $migrations/0001_*.sql $migrations/0002_*.sql $migrations/0003_*.sql $migrations/0005_*.sql
fi

# One append_batch call of BATCH messages; sender 1 or 2 (members of every conversation).
{
    echo "\\set c random(1, $CONVERSATIONS)"
    echo '\set s random(1, 2)'
    printf 'SELECT count(*) FROM append_batch(%s, array_fill(:s::bigint, ARRAY[%d]), array_fill('"'text'"'::text, ARRAY[%d]), %s, %s, (extract(epoch from now()) * 1000)::bigint, array_fill(NULL::text, ARRAY[%d]));\n' \
        "$conversations" "$BATCH" "$BATCH" "$body" "$keys" "$BATCH"
} > "$work/append.sql"

# With pg_stat_statements loaded (shared_preload_libraries), also the time append_batch
# executes per call, without the commit's flush: the database's work alone.
statements=$(psql -qtA "$PG/postgres" -c "SHOW shared_preload_libraries" | grep -c pg_stat_statements || true)
if [ "$statements" -gt 0 ]; then
    psql -q "$PG/$before" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
fi
executed() { # database -> "calls total_ms" of its append_batch calls so far
    [ "$statements" -gt 0 ] || { echo "0 0"; return; }
    psql -qtA -F ' ' "$PG/$before" -c "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0)
        FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
        WHERE d.datname = '$1' AND s.query LIKE '%append_batch%'"
}

for round in $(seq "$ROUNDS"); do
    for db in $before $after; do
        read -r calls0 ms0 < <(executed "$db")
        tps=$("$PGBENCH" -n -c 1 -T "$DURATION" -f "$work/append.sql" "$PG/$db" 2>/dev/null \
            | awk '/^tps/ { print $3 }')
        read -r calls1 ms1 < <(executed "$db")
        exec_ms=$(echo "($ms1 - $ms0) / ($calls1 - $calls0 + ($calls1 == $calls0))" | bc -l)
        rows=$(psql -qtA "$PG/$db" -c "SELECT count(*) FROM messages")
        printf 'round %s %-16s %6.0f batches/s %7.0f messages/s %6.3f ms per batch, %6.3f executing (%s rows)\n' \
            "$round" "$db" "$tps" "$(echo "$tps * $BATCH" | bc)" "$(echo "1000 / $tps" | bc -l)" "$exec_ms" "$rows"
    done
done
