#!/usr/bin/env bash
# Idle connections held by the local cluster (docs/benchmarks.md, "100,000 connections"):
# starts deploy/local/cluster.sh with G gateways (own database and Redis prefix), connects
# N users with the load tool's connect-storm scenario (W worker processes, 8 source
# addresses), waits until all N are established (or 900 s), then prints the connections
# and RSS of every process (and each gateway's RSS growth per held connection), the
# gateways' sign-in refusals, and stops everything.
#
#   scripts/bench-connections.sh [N] [G]      # N = 100000, G = 6 by default
#   MAX_WAIT=180 scripts/bench-connections.sh 20000 2   # give up waiting after 180 s
#
# Loopback only. Needs release builds of switchboard and switchboard-loadtest (or
# SWITCHBOARD_BIN=path and LOADTEST=path).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-100000}
G=${2:-6}
W=$(( (N + 17999) / 18000 ))
target_dir=${CARGO_TARGET_DIR:-target}
BIN=${SWITCHBOARD_BIN:-$target_dir/release/switchboard}
LOADTEST=${LOADTEST:-$target_dir/release/switchboard-loadtest}
OUT=$(mktemp -d)
DB=switchboard_bench_conn
psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
ulimit -n "$(ulimit -Hn)"

BIN=$BIN GATEWAYS=$G PREFIX="bench-conn-$$" DATABASE="postgres://postgres@127.0.0.1:5432/$DB" \
    deploy/local/cluster.sh >"$OUT/cluster.log" 2>&1 &
cluster=$!
# The load tool and its worker processes (it has no SIGINT handler of its own).
stop_storm() {
    [ -n "${storm:-}" ] || return 0
    kill -TERM $(pgrep -P "$storm") "$storm" 2>/dev/null || true
    wait "$storm" 2>/dev/null || true
    storm=""
}
cleanup() {
    stop_storm
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
held_on() { ss -Htn state established "( sport = :$1 )" | wc -l; }
declare -A rss_before
# Each process's RSS; for gateways also the client connections it holds and, once
# `before` is known, the RSS grown per held connection.
report() {
    echo "== $1: $(established) client connections established; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    for pid in $(pgrep -f "$BIN (gateway|router|storage)"); do
        cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
        role=$(echo "$cmdline" | cut -d' ' -f2)
        listen=$(echo "$cmdline" | grep -oE -- '--listen [^ ]+' | cut -d' ' -f2)
        rss=$(rss_of "$pid")
        line="  $role $listen: RSS $rss kB"
        if [ "$role" = gateway ]; then
            held=$(held_on "${listen##*:}")
            line="$line, $held connections"
            if [ -n "${rss_before[$pid]:-}" ] && [ "$held" -gt 0 ]; then
                line="$line, $(( (rss - rss_before[$pid]) * 1024 / held )) bytes per connection"
            fi
        fi
        [ "$1" = before ] && rss_before[$pid]=$rss
        echo "$line"
    done
}
report "before"
start=$(date +%s)
"$LOADTEST" run loadtest/scenarios/connect-storm.toml --gateway "$gateways" --users "$N" \
    --duration 900 --workers "$W" --source-addrs 8 --admin-user admin --admin-password-stdin \
    --out "$OUT/held" <"$OUT/adminpw" >"$OUT/storm.log" 2>&1 &
storm=$!
peak=0
first=""
for _ in $(seq "${MAX_WAIT:-900}"); do
    now=$(established)
    [ "$now" -gt "$peak" ] && peak=$now
    [ -z "$first" ] && [ "$now" -gt 0 ] && first=$(date +%s)
    [ "$now" -ge "$N" ] && break
    kill -0 $storm 2>/dev/null || break
    sleep 1
done
end=$(date +%s)
grep -m1 -E "connections +$N " "$OUT/storm.log" | sed 's/^/all in at (load tool clock, after provisioning): /' || true
echo "$(established) of $N established after $(( end - start )) s, $(( end - ${first:-$end} )) s after the first" \
    "(before it: provisioning); most at once: $peak"
sleep 5
report "held"
# Refusals as the gateways counted them (the load tool is stopped before its summary).
metric() {
    local total=0 v
    for port in $(seq 8081 $((8080 + G))); do
        v=$(curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print int($2)}')
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
echo "gateways: $(metric switchboard_gateway_connections_total) WebSocket connections accepted," \
    "$(metric switchboard_gateway_sign_in_failures_total) sign-ins failed," \
    "$(metric switchboard_gateway_sign_ins_refused_total) of them refused as busy;" \
    "storage unavailable seen $(metric switchboard_gateway_storage_unavailable_total) times"
tail -3 "$OUT/storm.log"
stop_storm
