#!/usr/bin/env bash
# Org broadcast benchmark (docs/benchmarks.md, "Org broadcasts"): how long from a
# broadcast to everyone (POST /api/v1/broadcasts) until the last of N online users has
# it, for each N in $USERS_LIST, on the embedded server (port 8090) and on a local
# cluster (the roles of deploy/local/cluster.sh: 1 storage on PostgreSQL, 2 routers,
# 3 gateways, on ports 9100-9202; users spread over the 3 gateways). ROUNDS broadcasts per run; the load tool prints each round and
# the median of the rounds' last receipts.
#
#   scripts/bench-broadcast.sh                       # USERS_LIST="1000 10000" ROUNDS=3
#   MODES=embedded USERS_LIST=1000 scripts/bench-broadcast.sh
#
# Loopback only; stops every server it started. Output under $OUT (default
# target/bench-broadcast).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/services.sh

ROUNDS=${ROUNDS:-3}
USERS_LIST=${USERS_LIST:-"1000 10000"}
MODES=${MODES:-"embedded cluster"}
target_dir=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$target_dir/bench-broadcast}

if [ -z "${NO_BUILD:-}" ]; then
    echo "Building (release) ..." >&2
    cargo build --release -q -p switchboard -p switchboard-loadtest --bins
fi
rm -rf "$OUT" && mkdir -p "$OUT/bin"
cp "$target_dir/release/switchboard" "$target_dir/release/switchboard-loadtest" "$OUT/bin/"
BIN=$OUT/bin/switchboard
LOADTEST=$OUT/bin/switchboard-loadtest
password=bench-admin-password
pids=()
cleanup() {
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    [ -n "${PREFIX:-}" ] && redis-cli --scan --pattern "$PREFIX:*" | xargs -r redis-cli del >/dev/null
    return 0
}
trap cleanup EXIT

wait_ready() { # port
    for _ in $(seq 150); do
        curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
        sleep 0.2
    done
    echo "error: nothing ready on 127.0.0.1:$1" >&2
    exit 1
}

measure() { # mode users gateways
    echo "== $1, $2 users ==" | tee -a "$OUT/summary.txt"
    printf '%s\n' "$password" | "$LOADTEST" broadcast-latency --gateway "$3" \
        --users "$2" --rounds "$ROUNDS" --prefix "ob-$1-$2" \
        --admin-user admin --admin-password-stdin 2>"$OUT/$1-$2.log" | tee -a "$OUT/summary.txt"
}

for mode in $MODES; do
    case $mode in
    embedded)
        port=${EMBEDDED_PORT:-8090}
        data=$OUT/embedded-data
        printf '%s\n' "$password" | "$BIN" user add admin --admin --password-stdin --data-dir "$data" >/dev/null
        "$BIN" serve --data-dir "$data" --listen "127.0.0.1:$port" --rate-per-user 0 --rate-per-ip 0 \
            >"$OUT/embedded.log" 2>&1 &
        pids+=($!)
        wait_ready "$port"
        for users in $USERS_LIST; do measure embedded "$users" "ws://127.0.0.1:$port"; done
        kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; pids=()
        ;;
    cluster)
        # The roles of deploy/local/cluster.sh (1 storage, 2 routers, 3 gateways), on ports
        # of their own (9100, 9201-9202, 9181-9183) so a local cluster may keep running.
        ensure_postgres
        ensure_redis
        for port in 9100 9201 9202 9181 9182 9183; do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                echo "error: something already listens on 127.0.0.1:$port" >&2
                exit 1
            fi
        done
        db=switchboard_bench_broadcast
        psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
        psql postgres://postgres@127.0.0.1:5432/postgres -qc "CREATE DATABASE $db"
        DATABASE=postgres://postgres@127.0.0.1:5432/$db
        PREFIX=bench-broadcast-$$
        printf '%s\n' "$password" | "$BIN" user add admin --admin --password-stdin --database "$DATABASE" >/dev/null
        redis=(--redis redis://127.0.0.1:6379 --redis-prefix "$PREFIX")
        "$BIN" storage --database "$DATABASE" --listen 127.0.0.1:9100 >"$OUT/cluster.log" 2>&1 &
        pids+=($!)
        for port in 9201 9202; do
            "$BIN" router "${redis[@]}" --listen "127.0.0.1:$port" >>"$OUT/cluster.log" 2>&1 &
            pids+=($!)
        done
        for n in 1 2 3; do
            "$BIN" gateway --storage http://127.0.0.1:9100 \
                --router http://127.0.0.1:9201,http://127.0.0.1:9202 "${redis[@]}" \
                --gateway-id "gw$n" --listen "127.0.0.1:918$n" --rate-per-user 0 --rate-per-ip 0 \
                >>"$OUT/cluster.log" 2>&1 &
            pids+=($!)
        done
        for port in 9181 9182 9183; do wait_ready "$port"; done
        sleep 1
        for users in $USERS_LIST; do
            measure cluster "$users" ws://127.0.0.1:9181,ws://127.0.0.1:9182,ws://127.0.0.1:9183
        done
        kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true; pids=()
        psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
        ;;
    *) echo "unknown mode $mode" >&2; exit 1 ;;
    esac
done
