#!/usr/bin/env bash
# Idle connections held by the local cluster (docs/benchmarks.md, "100,000 connections"):
# starts deploy/local/cluster.sh with G gateways (own database and Redis prefix), connects
# N users with the load tool's connect-storm scenario (W worker processes, 8 source
# addresses), waits until all N are established (or 300 s), then prints the connections
# and RSS of every process, and stops everything.
#
#   scripts/bench-connections.sh [N] [G]      # N = 100000, G = 6 by default
#
# Loopback only. Needs release builds of switchboard and switchboard-loadtest.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-100000}
G=${2:-6}
W=$(( (N + 17999) / 18000 ))
target_dir=${CARGO_TARGET_DIR:-target}
BIN=${SWITCHBOARD_BIN:-$target_dir/release/switchboard}
LOADTEST=$target_dir/release/switchboard-loadtest
OUT=$(mktemp -d)
DB=switchboard_bench_conn
psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
ulimit -n "$(ulimit -Hn)"

BIN=$BIN GATEWAYS=$G PREFIX="bench-conn-$$" DATABASE="postgres://postgres@127.0.0.1:5432/$DB" \
    deploy/local/cluster.sh >"$OUT/cluster.log" 2>&1 &
cluster=$!
cleanup() {
    kill -INT "${storm:-}" 2>/dev/null || true
    kill -TERM $cluster 2>/dev/null || true
    wait 2>/dev/null || true
    psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT
for _ in $(seq 300); do
    grep -q "cluster is up" "$OUT/cluster.log" && break
    sleep 0.2
done
sleep 1
sed -n 's/.*one-time password: *//p' "$OUT/cluster.log" | head -1 >"$OUT/adminpw"
gateways=$(seq -s, -f "ws://127.0.0.1:80%02g" 81 $((80 + G)))

rss_of() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
established() { ss -Htn state established "( sport >= :8081 and sport <= :$((8080 + G)) )" | wc -l; }
report() {
    echo "== $1: $(established) client connections established"
    for pid in $(pgrep -f "$BIN (gateway|router|storage)"); do
        cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
        role=$(echo "$cmdline" | cut -d' ' -f2)
        listen=$(echo "$cmdline" | grep -oE -- '--listen [^ ]+' | cut -d' ' -f2)
        echo "  $role $listen: RSS $(rss_of "$pid") kB"
    done
}
report "before"
start=$(date +%s)
"$LOADTEST" run loadtest/scenarios/connect-storm.toml --gateway "$gateways" --users "$N" \
    --duration 600 --workers "$W" --source-addrs 8 --admin-user admin --admin-password-stdin \
    --out "$OUT/held" <"$OUT/adminpw" >"$OUT/storm.log" 2>&1 &
storm=$!
for _ in $(seq 600); do
    [ "$(established)" -ge "$N" ] && break
    kill -0 $storm 2>/dev/null || break
    sleep 1
done
echo "all established after $(( $(date +%s) - start )) s (including provisioning)"
sleep 5
report "held"
tail -5 "$OUT/storm.log"
