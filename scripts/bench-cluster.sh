#!/usr/bin/env bash
# Cluster latency benchmark (docs/benchmarks.md, "Cluster: same vs cross gateway"):
# starts the local cluster (deploy/local/cluster.sh: 1 storage on PostgreSQL, 2 routers,
# 3 gateways) on a fresh database and Redis prefix, measures the floors (Redis PUBLISH
# round trip, Redis lookup, PostgreSQL single-row commit, gRPC round trip), then runs the
# load tool's one-to-one scenario with both partners on one gateway ("same") and on two
# ("cross"), at a light rate and at 5,000 msg/s, ROUNDS times interleaved, and prints
# medians.
#
#   scripts/bench-cluster.sh                # ROUNDS=3 DURATION=15 USERS=2000
#   ROUNDS=1 DURATION=10 scripts/bench-cluster.sh
#   SWITCHBOARD_BIN=/tmp/old/switchboard NO_BUILD=1 scripts/bench-cluster.sh   # another server build
#   STORAGE_ARGS="--commit-pipeline 2" RATES=5000 PLACEMENTS=cross scripts/bench-cluster.sh
#
# The floors are measured twice: before any traffic, and during each run above the light
# rate (started FLOORS_AFTER seconds into the load tool's run, default 6 + DURATION/4:
# past its 5 s ramp), so the summary shows what that load alone does to them. Both
# include a gRPC round trip to router 1 (a health check).
#
# Besides the load tool's result, each run leaves what the processes measured meanwhile
# (scripts/metrics-diff.py: storage commit times and batch sizes, router lookups, gaps
# the gateways filled from storage, ...) in $OUT/rROUND-RATE-PLACEMENT.metrics, and, when
# the server preloads pg_stat_statements, PostgreSQL's busiest statements of the run in
# $OUT/rROUND-RATE-PLACEMENT.statements.
#
# Loopback only; stops the cluster when done. Results under $OUT (default
# target/bench-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/services.sh
ensure_postgres
ensure_redis

. scripts/bench-lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-15}
USERS=${USERS:-2000}
LIGHT=${LIGHT:-100}
HEAVY=${HEAVY:-5000}
RATES=${RATES:-$LIGHT $HEAVY}
PLACEMENTS=${PLACEMENTS:-same cross}
OUT=${OUT:-$bench_target_dir/bench-cluster}

bench_ports_free
rm -rf "$OUT" && mkdir -p "$OUT"
bench_binaries
if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release -q -p switchboard --example floors
fi
cp "$bench_target_dir/release/examples/floors" "$OUT/bin/"
password=$bench_password

bench_fresh_database postgres://postgres@127.0.0.1:5432/postgres switchboard_bench
PREFIX=bench-$$
trap bench_stop_cluster EXIT
bench_start_cluster

echo "== floors (one at a time, no load) ==" | tee "$OUT/floors.txt"
floors() { "$OUT/bin/floors" redis://127.0.0.1:6379 "$DATABASE" 2000 http://127.0.0.1:7201; }
floors | tee -a "$OUT/floors.txt"

# storage, the two routers and the two gateways the load goes to
metrics_ports="7100 7201 7202 8081 8082"
# PostgreSQL's statement statistics, where the server collects them (docs/operations.md):
# reset before a run, its busiest statements after.
ADMIN_DB=postgres://postgres@127.0.0.1:5432/postgres
statements() { # reset | FILE
    psql -qAtX "$ADMIN_DB" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
        >/dev/null 2>&1 || return 0
    if [ "$1" = reset ]; then
        psql -qAtX "$ADMIN_DB" -c "SELECT pg_stat_statements_reset()" >/dev/null 2>&1 || true
        return 0
    fi
    psql -qX "$ADMIN_DB" -c "
        SELECT calls, round(total_exec_time::numeric, 1) AS total_ms,
               round((total_exec_time / calls)::numeric, 3) AS ms_per_call, rows,
               left(regexp_replace(query, '\s+', ' ', 'g'), 100) AS statement
        FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
        WHERE d.datname = '${DATABASE##*/}'
        ORDER BY total_exec_time DESC LIMIT 12" >"$1" 2>&1 || true
}
run() { # round rate placement gateways
    local dir="$OUT/r$1-$2-$3"
    echo "== round $1: $2 msg/s, $3 gateway ==" >&2
    scripts/cpu-by-role.py snapshot >"$dir.cpu-before"
    scripts/metrics-diff.py snapshot $metrics_ports >"$dir.metrics-before"
    statements reset
    local floors_pid=
    if [ "$2" != "$LIGHT" ]; then
        (sleep "${FLOORS_AFTER:-$((6 + DURATION / 4))}" && floors >"$dir.floors" 2>&1) &
        floors_pid=$!
    fi
    local TIMEFORMAT='%U %S'
    { time (printf '%s\n' "$password" | "$LOADTEST" run loadtest/scenarios/one-to-one.toml \
        --gateway "$4" --users "$USERS" --rate "$2" --duration "$DURATION" \
        --admin-user admin --admin-password-stdin --out "$dir" >"$dir.log" 2>&1 || true); } \
        2>"$dir.time"
    # CPU per role over the run, per delivered message (the load tool's from `time`: its
    # process is gone by the second snapshot).
    [ -z "$floors_pid" ] || wait "$floors_pid" || true
    scripts/cpu-by-role.py snapshot >"$dir.cpu-after"
    scripts/metrics-diff.py snapshot $metrics_ports >"$dir.metrics-after"
    scripts/metrics-diff.py diff "$dir.metrics-before" "$dir.metrics-after" >"$dir.metrics"
    statements "$dir.statements"
    local delivered tool
    delivered=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("delivered", 0))' "$dir/result.json" 2>/dev/null || echo 0)
    tool=$(awk '{print $1 + $2}' "$dir.time")
    scripts/cpu-by-role.py diff "$dir.cpu-before" "$dir.cpu-after" "$delivered" "$tool" \
        >"$dir.cpu"
    tail -n 3 "$dir.log" >&2
}
# Light runs first: an overloaded run leaves a backlog of sends (its clients left
# without their acks) that the cluster works off after the run ends; SETTLE seconds
# after each heavy run let it finish before the next.
for rate in $RATES; do
    for round in $(seq "$ROUNDS"); do
        for placement in $PLACEMENTS; do
            if [ "$placement" = same ]; then gateways=ws://127.0.0.1:8081
            else gateways=ws://127.0.0.1:8081,ws://127.0.0.1:8082; fi
            run "$round" "$rate" "$placement" "$gateways"
            [ "$rate" = "$LIGHT" ] || sleep "${SETTLE:-20}"
        done
    done
done

python3 - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
rows = {}
for result in sorted(out.glob("r*/result.json")):
    _, rate, placement = result.parent.name.split("-")
    r = json.loads(result.read_text())
    rows.setdefault((int(rate), placement), []).append(r)
print(f"{'offered msg/s':>13} {'placement':>9} {'runs':>4} {'delivered/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'ack p50':>7} {'ack p99':>7} {'lost':>5} {'dup':>4}")
for (rate, placement), runs in sorted(rows.items()):
    med = lambda k: statistics.median(float(r.get(k, 0) or 0) for r in runs)
    print(f"{rate:>13} {placement:>9} {len(runs):>4} {med('delivered_per_s'):>11.0f} {med('p50_ms'):>7.2f} {med('p99_ms'):>7.2f} {med('max_ms'):>7.1f} {med('ack_p50_ms'):>7.2f} {med('ack_p99_ms'):>7.2f} {sum(int(r.get('lost', 0)) for r in runs):>5} {sum(int(r.get('duplicated', 0)) for r in runs):>4}")

# The floors, idle and under each heavy rate: medians of the runs' p50 and p99.
def floors(path):
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(" p50 ")
        if rest:
            words = rest.split()
            yield name.strip(), float(words[0]), float(words[3])
print()
print(f"{'floor':<32} {'under':>14} {'runs':>4} {'p50 ms':>7} {'p99 ms':>7}")
groups = {"idle": [out / "floors.txt"]}
for path in sorted(out.glob("r*.floors")):
    _, rate, placement = path.name.split(".")[0].split("-")
    groups.setdefault(f"{rate} {placement}", []).append(path)
for under, paths in groups.items():
    by_name = {}
    for path in paths:
        for name, p50, p99 in floors(path):
            by_name.setdefault(name, []).append((p50, p99))
    for name, values in by_name.items():
        print(f"{name:<32} {under:>14} {len(values):>4} {statistics.median(v[0] for v in values):>7.3f} {statistics.median(v[1] for v in values):>7.3f}")
EOF
