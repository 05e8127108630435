#!/usr/bin/env bash
# Server memory with a client that never reads (docs/benchmarks.md, "Slow consumers"):
# starts a fresh embedded server, opens a WebSocket for user `sink` that never reads a
# byte (a raw socket from bash), has 4 parallel senders post large messages to `sink` over
# REST, samples the server's RSS (VmRSS from /proc) meanwhile, and prints the baseline,
# the peak, and whether the gateway cut the reader off (`slow_consumer`). Runs RUNS times
# and prints the median growth.
#
#   scripts/bench-slow-consumer.sh                         # 4 x 150 messages of 60 KB
#   QUEUE_BYTES=1073741824 scripts/bench-slow-consumer.sh  # byte cap out of the way
#   RUNS=3 MESSAGES=150 BODY=60000 scripts/bench-slow-consumer.sh
#
# Loopback only (127.0.0.1:28082); stops the server when done. Uses the debug build unless
# SWITCHBOARD_BIN says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-150}
BODY=${BODY:-60000}
SENDERS=4
QUEUE_BYTES=${QUEUE_BYTES:-}
target_dir=${CARGO_TARGET_DIR:-target}
BIN=${SWITCHBOARD_BIN:-$target_dir/debug/switchboard}
PORT=28082
URL=http://127.0.0.1:$PORT
PASSWORD='correct horse battery'

one_run() { # prints "baseline_kib peak_kib cut_off"
    local out server token sink_token i
    out=$(mktemp -d)
    for user in sender sink; do
        printf '%s\n' "$PASSWORD" | "$BIN" user add "$user" --data-dir "$out/data" \
            --display-name "$user" --org Bench --password-stdin >/dev/null
    done
    local extra=()
    [ -n "$QUEUE_BYTES" ] && extra=(--session-queue-bytes "$QUEUE_BYTES")
    "$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$out/data" --rate-per-user 0 \
        --rate-per-ip 0 "${extra[@]}" >"$out/server.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        curl -sf $URL/healthz >/dev/null && break
        sleep 0.1
    done
    login() {
        curl -sf $URL/api/v1/login -H 'content-type: application/json' \
            -d "{\"username\":\"$1\",\"password\":\"$PASSWORD\"}" | jq -r .token
    }
    token=$(login sender)
    sink_token=$(login sink)
    head -c "$BODY" /dev/zero | tr '\0' x | jq -Rc '{to: "sink", body: .}' >"$out/body.json"
    # The never-reading client: upgrade, then never read fd 3.
    exec 3<>/dev/tcp/127.0.0.1/$PORT
    printf 'GET /ws?token=%s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' \
        "$sink_token" $PORT >&3
    sleep 1
    rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
    local baseline peak=0 now
    baseline=$(rss)
    for s in $(seq $SENDERS); do
        (for i in $(seq "$MESSAGES"); do
            curl -sf $URL/api/v1/messages -H "authorization: Bearer $token" \
                -H 'content-type: application/json' --data-binary @"$out/body.json" >/dev/null
        done) &
    done
    while [ -n "$(jobs -pr | grep -v "^$server\$")" ]; do
        now=$(rss)
        [ "$now" -gt "$peak" ] && peak=$now
        sleep 0.05
    done
    now=$(rss)
    [ "$now" -gt "$peak" ] && peak=$now
    local cut
    cut=$(curl -sf $URL/metrics | awk '/^switchboard_gateway_slow_consumer_disconnects_total/ {print $2}')
    exec 3>&-
    kill $server 2>/dev/null
    wait $server 2>/dev/null || true
    rm -rf "$out"
    echo "$baseline $peak ${cut:-0}"
}

growths=()
for run in $(seq "$RUNS"); do
    read -r baseline peak cut < <(one_run)
    growth=$(( (peak - baseline) / 1024 ))
    growths+=("$growth")
    echo "run $run: RSS baseline $((baseline / 1024)) MiB, peak $((peak / 1024)) MiB, growth $growth MiB, slow_consumer disconnects: $cut"
done
median=$(printf '%s\n' "${growths[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median RSS growth over $RUNS runs: $median MiB ($SENDERS senders x $MESSAGES messages of $BODY bytes, queue bytes ${QUEUE_BYTES:-default})"
