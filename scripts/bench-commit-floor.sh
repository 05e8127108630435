#!/usr/bin/env bash
# The storage step's floor under the cluster benchmark's write rate, with nothing of
# Switchboard running (docs/benchmarks.md, "The floors under load"): pgbench calls
# append_batch (the storage service's one statement per batch) RATE times a second with
# BATCH messages each, spread over 500 conversations, every message with a key of its
# own, on a fresh database with every migration; after 5 s of that, the floors example
# measures a PostgreSQL single-row commit beside it. Prints, per round, the single-row
# commit's p50/p99 and the append_batch calls' p50/p99 (from pgbench's per-call log,
# counted from each call's scheduled start).
#
#   scripts/bench-commit-floor.sh           # ROUNDS=3 DURATION=20 RATE=312 BATCH=16 (4,992 msg/s)
#   RATE=156 BATCH=32 scripts/bench-commit-floor.sh
#
# Talks to the local PostgreSQL only; drops its database when done.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
ensure_postgres
. scripts/bench-lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20}
RATE=${RATE:-312}
BATCH=${BATCH:-16}
CONVERSATIONS=500
PG="postgres://postgres@127.0.0.1:5432"
export PGOPTIONS="-c client_min_messages=warning"
PGBENCH=$(ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
FLOORS=${FLOORS:-${CARGO_TARGET_DIR:-target}/release/examples/floors}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p switchboard --example floors
db=sbbench_floor
work=$(mktemp -d)
trap 'rm -rf "$work"; psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT

bench_append_database "$PG/$db" "$CONVERSATIONS" services/storage/migrations/postgres/*.sql

# One append_batch call: BATCH messages in random conversations, sender 1 or 2 (members
# of every conversation), a fresh key per message (the retry lookup runs for each).
cat >"$work/append.sql" <<SQL
\\set s random(1, 2)
SELECT count(*) FROM append_batch(
    (SELECT array_agg(1 + (random() * ($CONVERSATIONS - 1))::bigint) FROM generate_series(1, $BATCH)),
    array_fill(:s::bigint, ARRAY[$BATCH]), array_fill('text'::text, ARRAY[$BATCH]),
    array_fill('the budget review for the customer meeting moved to friday at noon'::text, ARRAY[$BATCH]),
    (SELECT array_agg(md5(random()::text)) FROM generate_series(1, $BATCH)),
    (extract(epoch from now()) * 1000)::bigint, array_fill(NULL::text, ARRAY[$BATCH]));
SQL

commit_floor() { "$FLOORS" redis://127.0.0.1:6379 "$PG/$db" 2000 | grep postgres; }
echo "idle: $(commit_floor)"
for round in $(seq "$ROUNDS"); do
    # Two connections, so a slow call does not hold back the next one's start.
    "$PGBENCH" -n -c 2 -j 1 -R "$RATE" -T "$DURATION" -l --log-prefix="$work/calls.$round" \
        -f "$work/append.sql" "$PG/$db" >"$work/pgbench.$round" 2>&1 &
    pgbench=$!
    sleep 5
    echo "round $round, $((RATE * BATCH)) msg/s appended: $(commit_floor)"
    wait "$pgbench"
    # The log's third column: each call's time in microseconds, from its scheduled start.
    cat "$work/calls.$round".* | awk '{ print $3 }' | sort -n | awk -v batch="$BATCH" -v round="$round" '
        { t[NR] = $1 }
        END { printf "round %s, append_batch of %d: %d calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                     round, batch, NR, t[int(NR * 0.5)] / 1000, t[int(NR * 0.99)] / 1000, t[NR] / 1000 }'
done
