#!/usr/bin/env bash
# Server CPU per delivered 1:1 message on the embedded server (docs/benchmarks.md, "The
# embedded server's CPU per message"): runs the one-to-one scenario against each given
# build of `switchboard serve` in turn, ROUNDS times interleaved (A B A B ...), each run
# on a fresh data dir and a fresh server, and prints one line per run: delivered/s,
# p50/p99, lost/duplicated, and the server's CPU (utime + stime from /proc/PID/stat) per
# delivered message, over the whole load-tool run (provisioning and 2,000 sign-ins
# included) and over its steady middle (from 10% to 90% of the messages the server
# counted stored, read from /metrics every second; per message, not per frame: the
# sender's echo, when on, is not counted), the part of it spent by SQLite's
# writer (the busiest `sqlx-sqlite-worker` thread: every write goes through it) over the
# same window, and the bytes the server had the disk write (`write_bytes` of
# /proc/PID/io) per delivered message over the whole run; and the load tool's CPU per
# delivered message over the same steady window (it shares the machine's cores).
#
# Per build label, LOADTEST_<label> names another load tool binary, ARGS_<label> adds
# arguments to its run (e.g. ARGS_noecho="--echo false"), SERVE_ARGS_<label> to its
# server's (e.g. SERVE_ARGS_normal="--sync normal"), and DATA_<label> puts its data dirs
# under another directory (e.g. DATA_tmpfs=/dev/shm/bench: the disk out of the
# measurement); labels are then letters, digits and underscores.
#
#   scripts/bench-embedded.sh before=/tmp/old/switchboard after=target/release/switchboard
#   RATE=6000 ROUNDS=3 DURATION=20 scripts/bench-embedded.sh now=target/release/switchboard
#
# Loopback only (127.0.0.1:$PORT, default 28190); stops each server when its run ends.
# Results (result.json and logs per run, summary.tsv) under $OUT (default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 1 ] || { sed -n '2,26p' "$0"; exit 2; }
RATE=${RATE:-3000}
USERS=${USERS:-2000}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-28190}
target_dir=${CARGO_TARGET_DIR:-target}
LOADTEST=${LOADTEST:-$target_dir/release/switchboard-loadtest}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
ulimit -n 20000
tck=$(getconf CLK_TCK)

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "error: something already listens on 127.0.0.1:$PORT; set PORT" >&2
    exit 1
fi

server=
cleanup() {
    if [ -n "$server" ]; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
}
trap cleanup EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
written() { awk '/^write_bytes:/ { print $2 }' "/proc/$1/io"; }
writer_ticks() { # the busiest sqlx SQLite thread of process $1
    cat /proc/"$1"/task/*/stat 2>/dev/null |
        awk '/\(sqlx-sqlite-wor/ { t = $14 + $15; if (t > max) max = t } END { print max + 0 }'
}
stored() {
    curl -sf "http://127.0.0.1:$PORT/metrics" |
        awk '/^switchboard_gateway_messages_sent_total / { print $2 }'
}

run_one() { # label binary round
    local label=$1 bin=$2 round=$3
    local dir=$OUT/$label-$round
    local data_var="DATA_$label"
    local data=${!data_var:-$OUT}/$label-$round/data
    local serve_args_var="SERVE_ARGS_$label"
    mkdir -p "$dir" "$data"
    # shellcheck disable=SC2086 # SERVE_ARGS_<label> is a list of arguments
    "$bin" serve --listen 127.0.0.1:$PORT --data-dir "$data" --rate-per-user 0 \
        --rate-per-ip 0 ${!serve_args_var:-} >"$dir/server.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
        sleep 0.1
    done
    sleep 0.5
    sed -n 's/.*one-time password: *//p' "$dir/server.log" | head -1 >"$dir/adminpw"
    local load=$(cut -d' ' -f1 /proc/loadavg) start=$(cpu_ticks "$server") wstart=$(written "$server")
    local tool_var="LOADTEST_$label" args_var="ARGS_$label"
    # shellcheck disable=SC2086 # ARGS_<label> is a list of arguments
    "${!tool_var:-$LOADTEST}" run loadtest/scenarios/one-to-one.toml \
        --gateway ws://127.0.0.1:$PORT --users "$USERS" --rate "$RATE" --duration "$DURATION" \
        --admin-user admin --admin-password-stdin --out "$dir/result" ${!args_var:-} \
        <"$dir/adminpw" >"$dir/loadtest.log" 2>&1 &
    local tool=$!
    : >"$dir/samples"
    while kill -0 "$tool" 2>/dev/null; do
        echo "$(cpu_ticks "$server") $(stored || echo 0) $(writer_ticks "$server")" \
            "$(cpu_ticks "$tool" 2>/dev/null || echo 0)" >>"$dir/samples"
        sleep 1
    done
    wait "$tool" || true # a missed threshold exits 1; the figures still count
    local end=$(cpu_ticks "$server") wend=$(written "$server")
    cleanup
    server=
    local r=$dir/result/result.json
    # Steady window: the first sample at or past 10% of the final count to the first at or
    # past 90%.
    local window
    window=$(awk -v tck="$tck" '
        { cpu[NR] = $1; n[NR] = $2; w[NR] = $3; t[NR] = $4; last = $2 }
        END {
            for (i = 1; i <= NR; i++) {
                if (!a && n[i] >= 0.1 * last) a = i
                if (!b && n[i] >= 0.9 * last) b = i
            }
            if (a && b > a && n[b] > n[a]) printf "%.1f\t%.1f\t%.1f", (cpu[b] - cpu[a]) / tck * 1e6 / (n[b] - n[a]),
                (w[b] - w[a]) / tck * 1e6 / (n[b] - n[a]), (t[b] - t[a]) / tck * 1e6 / (n[b] - n[a])
            else printf "n/a\tn/a\tn/a"
        }' "$dir/samples")
    local whole
    whole=$(jq -r --arg s "$start" --arg e "$end" --arg t "$tck" \
        '(($e|tonumber) - ($s|tonumber)) / ($t|tonumber) * 1e6 / ([.delivered, 1] | max) | . * 10 | round / 10' "$r")
    local kb
    kb=$(jq -r --arg s "$wstart" --arg e "$wend" \
        '(($e|tonumber) - ($s|tonumber)) / 1024 / ([.delivered, 1] | max) | . * 10 | round / 10' "$r")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$round" "$load" \
        "$(jq -r '.delivered' "$r")" "$(jq -r '.delivered_per_s | round' "$r")" \
        "$(jq -r '.p50_ms' "$r")" "$(jq -r '.p99_ms' "$r")" \
        "$(jq -r '"\(.lost)/\(.duplicated)"' "$r")" \
        "$(echo "scale=2; ($end - $start) / $tck" | bc)" "$whole" "$window" "$kb" | tee -a "$OUT/summary.tsv"
}

printf 'build\tround\tload1\tdelivered\tdelivered/s\tp50_ms\tp99_ms\tlost/dup\tcpu_s\tus/msg(run)\tus/msg(steady)\twriter_us/msg(steady)\ttool_us/msg(steady)\tKiB_written/msg\n' |
    tee "$OUT/summary.tsv"
for round in $(seq "$ROUNDS"); do
    for spec in "$@"; do
        run_one "${spec%%=*}" "${spec#*=}" "$round"
    done
done
echo "results: $OUT" >&2
