#!/usr/bin/env bash
# Server memory per idle connection (docs/benchmarks.md, "Bottlenecks", item 5): starts a
# fresh embedded server, warms it up with 200 users, reads its RSS, holds N idle
# authenticated connections (presence set) with the load tool's connect-storm scenario,
# reads its RSS again once all are established, and prints the difference per connection.
#
#   scripts/bench-memory.sh [N]                          # N = 15000 by default
#   SWITCHBOARD_BIN=/tmp/old/switchboard scripts/bench-memory.sh 15000
#
# Loopback only (127.0.0.1:28081); stops the server when done. Needs release builds of
# switchboard and switchboard-loadtest.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-15000}
target_dir=${CARGO_TARGET_DIR:-target}
BIN=${SWITCHBOARD_BIN:-$target_dir/release/switchboard}
LOADTEST=$target_dir/release/switchboard-loadtest
OUT=$(mktemp -d)
PORT=28081
ulimit -n 20000

"$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$OUT/data" --rate-per-user 0 --rate-per-ip 0 >"$OUT/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$OUT"' EXIT
for _ in $(seq 100); do
    curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break
    sleep 0.1
done
sleep 0.5
sed -n 's/.*one-time password: *//p' "$OUT/server.log" | head -1 >"$OUT/adminpw"
rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
storm() { # users duration out
    "$LOADTEST" run loadtest/scenarios/connect-storm.toml --gateway ws://127.0.0.1:$PORT \
        --users "$1" --duration "$2" --workers 2 --admin-user admin --admin-password-stdin \
        --out "$3" <"$OUT/adminpw" >"$3.log" 2>&1
}

storm 200 2 "$OUT/warmup"
sleep 1
before=$(rss)
# Hold N connections (the scenario's ramp, then up to 240 s); RSS is read once all N are
# established (or after 200 s, on a busy machine), then the load tool is stopped.
established() { ss -Htn state established "( sport = :$PORT )" | wc -l; }
storm "$N" 240 "$OUT/held" &
storm_pid=$!
for _ in $(seq 400); do
    [ "$(established)" -ge "$N" ] && break
    sleep 0.5
done
sleep 3
connected=$(established)
held=$(rss)
kill -INT $storm_pid 2>/dev/null || true
wait $storm_pid 2>/dev/null || true
echo "connections held: $connected of $N"
echo "server RSS: ${before} kB before, ${held} kB held"
awk -v b="$before" -v h="$held" -v n="$connected" \
    'BEGIN { printf "per connection: %.1f KiB\n", (h - b) / n }'
