#!/usr/bin/env bash
# Starts a local Switchboard cluster: 1 storage, 2 routers and 3 gateways (GATEWAYS=N),
# against the local PostgreSQL and Redis (started, and installed on a fresh machine, like
# the tests do). Prints the gateway URLs; Ctrl-C stops everything.
#
#   deploy/local/cluster.sh            # database switchboard_local, Redis prefix "local"
#   DATABASE=postgres://... REDIS=redis://... PREFIX=... deploy/local/cluster.sh
#   GATEWAY_ARGS="--rate-per-user 0 --rate-per-ip 0" deploy/local/cluster.sh   # extra gateway flags
#   STORAGE_ARGS="--retention-interval-secs 60" deploy/local/cluster.sh        # extra storage flags
#   GATEWAYS=6 deploy/local/cluster.sh   # more gateways (ports 8081, 8082, ...; at most 9)
set -euo pipefail
cd "$(dirname "$0")/../.."

. scripts/services.sh
ensure_postgres
ensure_redis

DATABASE=${DATABASE:-postgres://postgres@127.0.0.1:5432/switchboard_local}
REDIS=${REDIS:-redis://127.0.0.1:6379}
PREFIX=${PREFIX:-local}
GATEWAYS=${GATEWAYS:-3}
if ! [[ "$GATEWAYS" =~ ^[1-9]$ ]]; then
    echo "GATEWAYS must be 1 to 9 (ports 8081-8089), not '$GATEWAYS'" >&2
    exit 2
fi
# BIN=path uses that binary; otherwise the release build (cargo makes it up to date).
if [ -z "${BIN:-}" ]; then
    echo "Building target/release/switchboard ..." >&2
    cargo build --release -q -p switchboard
    BIN=target/release/switchboard
fi

# Create the database on first use (the storage service applies migrations).
db_name=${DATABASE##*/}
admin_url=${DATABASE%/*}/postgres
if ! psql "$admin_url" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1; then
    psql "$admin_url" -qc "CREATE DATABASE $db_name"
fi

pids=()
stop() {
    echo; echo "Stopping the cluster ..." >&2
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

start() {
    "$BIN" "$@" &
    pids+=($!)
}

# The first start creates an admin account and prints its password once.
password=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 20 || true)
if printf '%s\n' "$password" | "$BIN" user add admin --admin --password-stdin --database "$DATABASE" >/dev/null 2>&1; then
    echo "Created the first account: admin, one-time password: $password"
fi

start storage --database "$DATABASE" --listen 127.0.0.1:7100 ${STORAGE_ARGS:-}
start router --redis "$REDIS" --redis-prefix "$PREFIX" --listen 127.0.0.1:7201
start router --redis "$REDIS" --redis-prefix "$PREFIX" --listen 127.0.0.1:7202
# A gateway holds up to ~19,000 clients: a process may have 20,000 open files here.
ulimit -n "$(ulimit -Hn)"
for n in $(seq "$GATEWAYS"); do
    start gateway --storage http://127.0.0.1:7100 \
        --router http://127.0.0.1:7201,http://127.0.0.1:7202 \
        --redis "$REDIS" --redis-prefix "$PREFIX" --gateway-id "gw$n" \
        --listen "127.0.0.1:808$n" ${GATEWAY_ARGS:-}
done

sleep 1
echo
echo "Switchboard cluster is up:"
for n in $(seq "$GATEWAYS"); do
    echo "  gateway gw$n: http://127.0.0.1:808$n  (WebSocket ws://127.0.0.1:808$n/ws)"
done
echo "  storage: http://127.0.0.1:7100   routers: http://127.0.0.1:7201, http://127.0.0.1:7202"
echo "Press Ctrl-C to stop."
wait
