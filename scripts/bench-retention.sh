#!/usr/bin/env bash
# Retention under load (docs/benchmarks.md, "Retention under load"): the embedded server
# (`switchboard serve`, SQLite) on a history of MESSAGES old messages (the search
# benchmark's synthetic organisation, spread over the past year) runs the load tool's
# office scenario, alternately with retention idle ("idle": no policy) and with retention
# deleting everything older than a day ("deleting": about MESSAGES messages go while the
# load runs), ROUNDS times interleaved, each round on a fresh copy of the same seeded
# database. Prints medians of office p50/p99 and of retention's deletion rate.
#
#   scripts/bench-retention.sh                 # ROUNDS=3 DURATION=40 USERS=1000 RATE=500
#   ROUNDS=1 DURATION=20 MESSAGES=200000 scripts/bench-retention.sh
#   PROFILE=debug NO_BUILD=1 scripts/bench-retention.sh    # binaries as built, debug
#   RETENTION_ARGS="--retention-batch 500 --retention-pause-ms 20" scripts/bench-retention.sh
#   SWITCHBOARD_BIN=/tmp/old/switchboard NO_BUILD=1 scripts/bench-retention.sh
#
# Several builds or settings side by side, interleaved in each round (one idle run, then
# one deleting run per variant): VARIANTS names them; BIN_<name> is that variant's
# server (default: this build), ARGS_<name> its extra retention flags and SQL_<name>
# SQL run on its copy of the database first (e.g. to undo a migration for an older
# build). E.g. before and after a change, in one session:
#
#   VARIANTS="before after" BIN_before=/tmp/before/switchboard NO_BUILD=1 \
#       SQL_before="DELETE FROM _sqlx_migrations WHERE version = 13" \
#       scripts/bench-retention.sh
#
# A variant whose name starts with "idle" runs without a policy: the idle baseline of
# another build (e.g. VARIANTS="idlebefore before after" BIN_idlebefore=... ).
#
# By default the embedded server: it is what most installations run, and SQLite's single
# writer is where deletes and live appends compete hardest. BACKEND=postgres runs the
# same on the local cluster instead (deploy/local/cluster.sh: storage on PostgreSQL, whose
# retention job deletes, 2 routers, GATEWAYS gateways, default 2, the load spread over
# them), each round on a fresh copy (CREATE DATABASE ... TEMPLATE) of a seeded database;
# PG=postgres://... names the server (default the local one):
#
#   BACKEND=postgres ROUNDS=5 DURATION=30 scripts/bench-retention.sh
#
# Loopback only (port PORT, default 9180; the cluster's fixed ports); stops the servers
# when done. Results under $OUT (default target/bench-retention).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-40}
USERS=${USERS:-1000}
RATE=${RATE:-500}
MESSAGES=${MESSAGES:-1000000}
PORT=${PORT:-9180}
PROFILE=${PROFILE:-release}
RETENTION_ARGS=${RETENTION_ARGS:-}
VARIANTS=${VARIANTS:-}
BACKEND=${BACKEND:-sqlite}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
GATEWAYS=${GATEWAYS:-2}
case $BACKEND in
    sqlite | postgres) ;;
    *) echo "error: BACKEND is sqlite or postgres, not '$BACKEND'" >&2; exit 2 ;;
esac
target_dir=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$target_dir/bench-retention}

if [ -z "${NO_BUILD:-}" ]; then
    echo "Building ($PROFILE) ..." >&2
    flag=()
    [ "$PROFILE" = release ] && flag=(--release)
    cargo build "${flag[@]}" -q -p switchboard -p switchboard-loadtest --bins
fi
if [ "$BACKEND" = postgres ]; then
    . scripts/bench-lib.sh
    . scripts/services.sh
    ensure_postgres
    ensure_redis
    bench_ports_free
    seed_db=sb_bench_retention_seed run_db=sb_bench_retention_run
    PREFIX=bench-retention-$$
elif (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
    echo "error: something already listens on 127.0.0.1:$PORT; set PORT" >&2
    exit 1
fi
rm -rf "$OUT" && mkdir -p "$OUT/bin"
# Copies, so a rebuild during the run cannot swap binaries under it.
# SWITCHBOARD_BIN=path runs another build of the server (e.g. before a pacing change).
cp "${SWITCHBOARD_BIN:-$target_dir/$PROFILE/switchboard}" "$OUT/bin/switchboard"
cp "$target_dir/$PROFILE/switchboard-loadtest" "$OUT/bin/"
BIN=$OUT/bin/switchboard
for variant in $VARIANTS; do
    bin_var=BIN_$variant
    cp "${!bin_var:-$BIN}" "$OUT/bin/switchboard-$variant"
done
LOADTEST=$OUT/bin/switchboard-loadtest
password=bench-admin-password

echo "Seeding $MESSAGES messages ..." >&2
if [ "$BACKEND" = postgres ]; then
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $seed_db WITH (FORCE)"
    psql "$PG/postgres" -qc "CREATE DATABASE $seed_db"
    "$LOADTEST" search-seed --postgres "$PG/$seed_db" --messages "$MESSAGES" >"$OUT/seed.log" 2>&1
    printf '%s\n' "$password" | "$BIN" user add admin --admin --password-stdin \
        --database "$PG/$seed_db" >/dev/null
    psql "$PG/$seed_db" -qc "VACUUM ANALYZE"
else
    "$LOADTEST" search-seed --sqlite "$OUT/seeded" --messages "$MESSAGES" >"$OUT/seed.log" 2>&1
    printf '%s\n' "$password" | "$BIN" user add admin --admin --password-stdin \
        --data-dir "$OUT/seeded" >/dev/null
fi

server=
stop_server() {
    if [ -n "$server" ]; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=
    fi
    if [ "$BACKEND" = postgres ]; then
        bench_stop_cluster
    fi
}
cleanup() {
    stop_server
    if [ "$BACKEND" = postgres ]; then
        psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $run_db WITH (FORCE)"
        psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $seed_db WITH (FORCE)"
    fi
}
trap cleanup EXIT

# Where the retention job runs: its metrics count what it deleted.
metrics_url=http://127.0.0.1:$PORT/metrics
gateways=ws://127.0.0.1:$PORT
if [ "$BACKEND" = postgres ]; then
    metrics_url=http://127.0.0.1:7100/metrics
    gateways=$(seq -s, -f 'ws://127.0.0.1:808%g' "$GATEWAYS")
fi

deleted() { # messages retention deleted so far, from the server's metrics
    curl -sf "$metrics_url" |
        awk '/^switchboard_retention_messages_deleted_total/ {print $2; found=1} END {if (!found) print 0}'
}

run() { # round mode [variant]
    local dir="$OUT/r$1-$2" data="$OUT/data-r$1-$2" bin=$BIN args=$RETENTION_ARGS sql=
    if [ -n "${3:-}" ]; then
        bin=$OUT/bin/switchboard-$3
        local args_var=ARGS_$3 sql_var=SQL_$3
        args="$RETENTION_ARGS ${!args_var:-}"
        sql=${!sql_var:-}
    fi
    echo "== round $1: $2 ==" >&2
    local deleting=1
    case $2 in idle | deleting-idle*) deleting= ;; esac
    # The organisation's default: keep a day (nearly all the seeded year goes).
    local policy="INSERT INTO retention_policies (conversation_id, keep_days, updated_at)
        VALUES (0, 1, $(date +%s)000)"
    # The first sweep starts 1 s after start; idle rounds have no policy, so it finds
    # nothing to do, as on a server whose history is within its policy.
    if [ "$BACKEND" = postgres ]; then
        local db=$run_db
        psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
        psql "$PG/postgres" -qc "CREATE DATABASE $db TEMPLATE $seed_db STRATEGY FILE_COPY"
        [ -z "$sql" ] || psql "$PG/$db" -qc "$sql"
        [ -z "$deleting" ] || psql "$PG/$db" -qc "$policy"
        sync
        DATABASE=$PG/$db BIN=$bin STORAGE_ARGS="--retention-interval-secs 1 $args"
        bench_start_cluster
        mv "$OUT/cluster.log" "$dir.server.log"
    else
        cp -a "$OUT/seeded" "$data"
        [ -z "$sql" ] || sqlite3 "$data/switchboard.db" "$sql"
        [ -z "$deleting" ] || sqlite3 "$data/switchboard.db" "$policy"
        # The copy's pages go to disk now, not during the load (where the kernel's
        # writeback of a few hundred MB competes with every commit's fsync).
        sync
        # shellcheck disable=SC2086
        "$bin" serve --data-dir "$data" --listen 127.0.0.1:$PORT --rate-per-user 0 \
            --rate-per-ip 0 --retention-interval-secs 1 $args >"$dir.server.log" 2>&1 &
        server=$!
        for _ in $(seq 100); do
            curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
            sleep 0.2
        done
    fi
    if [ -n "$deleting" ]; then
        # Start the load once deleting has begun.
        for _ in $(seq 100); do
            [ "$(deleted)" != 0 ] && break
            sleep 0.2
        done
    fi
    local before start
    before=$(deleted)
    start=$(date +%s.%N)
    printf '%s\n' "$password" | "$LOADTEST" run loadtest/scenarios/office.toml \
        --gateway "$gateways" --users "$USERS" --rate "$RATE" --duration "$DURATION" \
        --admin-user admin --admin-password-stdin --out "$dir" >"$dir.log" 2>&1 || true
    local after end
    after=$(deleted)
    end=$(date +%s.%N)
    python3 -c 'import sys; b, a, s, e = map(float, sys.argv[1:]); print(f"{a - b:.0f} {(a - b) / (e - s):.0f}")' \
        "$before" "$after" "$start" "$end" >"$dir.deleted"
    cut -d' ' -f1 /proc/loadavg >"$dir.load"
    tail -n 3 "$dir.log" >&2
    echo "deleted during the load: $(cut -d' ' -f1 "$dir.deleted"), per second: $(cut -d' ' -f2 "$dir.deleted")" >&2
    stop_server
    rm -rf "$data"
}

for round in $(seq "$ROUNDS"); do
    run "$round" idle
    if [ -z "$VARIANTS" ]; then
        run "$round" deleting
    fi
    # Every other round in reverse order, so no variant always runs right after idle.
    order=$VARIANTS
    if [ $((round % 2)) = 0 ]; then
        order=$(printf '%s\n' $VARIANTS | tac | tr '\n' ' ')
    fi
    for variant in $order; do
        run "$round" "deleting-$variant" "$variant"
    done
done

python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
rows = {}
for result in sorted(out.glob("r*/result.json")):
    _, mode = result.parent.name.split("-", 1)
    r = json.loads(result.read_text())
    n, rate = (out / f"{result.parent.name}.deleted").read_text().split()
    r["_deleted"], r["_rate"] = float(n), float(rate)
    rows.setdefault(mode, []).append(r)
print(f"{'mode':>16} {'runs':>4} {'p50 ms':>7} {'p99 ms':>7} {'delivered/s':>11} {'deleted/s':>9} {'lost':>5}   p99 per run")
base = None
for mode in ["idle"] + sorted(m for m in rows if m != "idle"):
    runs = rows.get(mode)
    if not runs:
        continue
    med = lambda k: statistics.median(float(r.get(k, 0) or 0) for r in runs)
    p99 = med("p99_ms")
    base = base or p99
    per_run = ", ".join(f"{float(r.get('p99_ms', 0)):.1f}" for r in runs)
    print(f"{mode:>16} {len(runs):>4} {med('p50_ms'):>7.2f} {p99:>7.2f} {med('delivered_per_s'):>11.0f} {med('_rate'):>9.0f} {sum(int(r.get('lost', 0)) for r in runs):>5}   {per_run}   ({100 * (p99 - base) / base:+.1f}% p99 vs idle)")
loads = [float(p.read_text()) for p in out.glob("r*.load")]
if loads:
    print(f"load average (1 min) at the end of each run: {min(loads):.1f} to {max(loads):.1f}, median {statistics.median(loads):.1f}")
PY
