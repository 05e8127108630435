#!/usr/bin/env bash
# Side by side: the same scenarios against Switchboard (embedded `switchboard serve`) and
# ejabberd (MAM on mnesia, then MAM on PostgreSQL), in one session on this machine.
# Writes every run's result.json/report.html under $OUT and one line per run to
# $OUT/summary.tsv. Used for docs/benchmarks.md, "Side by side with ejabberd".
#
#   cargo build --release -p switchboard -p switchboard-loadtest
#   loadtest/peers/compare.sh                  # everything (about 35 minutes)
#   PEERS="sb ej" RATES="500 1000" REPS=1 loadtest/peers/compare.sh   # a subset
#
# Settings (environment): BIN (target/release), OUT (/tmp/compare), PEERS ("sb ej ejsql"),
# IDLE_USERS (5000; 0 skips the idle test), RATES ("500 1000 2000 4000 8000"; "" none), REPS (3),
# BC_USERS (2000; 0 skips the broadcast), SB_ECHO (false), SB_SYNC (full; with normal,
# Switchboard runs `serve --sync normal`, acks that do not wait for the disk's flush, as
# ejabberd's archive on mnesia does not, and its rows are labelled sb-normal).
#
# Switchboard's users sign in with `auth.echo` false (SB_ECHO): an XMPP client gets no copy
# of what it sends (no carbons here), so neither server writes the sender an echo; the
# sender still gets Switchboard's `ack`, which XMPP has no counterpart for.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
OUT=${OUT:-/tmp/compare}
PEERS=${PEERS:-sb ej ejsql}
IDLE_USERS=${IDLE_USERS:-5000}
RATES=${RATES-500 1000 2000 4000 8000}
REPS=${REPS:-3}
BC_USERS=${BC_USERS:-2000}
SB_ECHO=${SB_ECHO:-false}
SB_SYNC=${SB_SYNC:-full}
SB_PORT=28080
EJ=loadtest/peers/ejabberd.sh
LT="$BIN/switchboard-loadtest"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.tsv"
[ -f "$SUMMARY" ] || printf 'peer\ttest\tusers\trate\trep\tdelivered\tdelivered_per_s\tlost\tdup\tooo\tp50_ms\tp99_ms\tmax_ms\tconnect_failures\terrors\tkinds\trss_before_kb\trss_held_kb\n' >"$SUMMARY"

SB_PID=
cleanup() {
    [ -n "$SB_PID" ] && kill "$SB_PID" 2>/dev/null || true
    "$EJ" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

rss_of() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }

start_sb() {
    rm -rf "$OUT/sb-data"
    ulimit -n 20000
    "$BIN/switchboard" serve --listen 127.0.0.1:$SB_PORT --data-dir "$OUT/sb-data" \
        --rate-per-user 0 --rate-per-ip 0 --sync "$SB_SYNC" >"$OUT/sb.log" 2>&1 &
    SB_PID=$!
    for _ in $(seq 1 100); do
        grep -q "one-time password" "$OUT/sb.log" && break
        sleep 0.2
    done
    sed -n 's/.*one-time password: *//p' "$OUT/sb.log" | head -1 >"$OUT/adminpw"
}

# The name of PEER's rows and run directories: sb-normal for Switchboard with SB_SYNC=normal.
label_of() {
    if [ "$1" = sb ] && [ "$SB_SYNC" != full ]; then echo "sb-$SB_SYNC"; else echo "$1"; fi
}

# run PEER TEST USERS RATE REP SCENARIO [extra args...]: one load-test run, one summary line.
run() {
    local peer=$1 test=$2 users=$3 rate=$4 rep=$5 scenario=$6
    shift 6
    local label
    label=$(label_of "$peer")
    local dir="$OUT/$label-$test-$users-$rate-$rep" args=()
    case $peer in
        sb) args=(--gateway ws://127.0.0.1:$SB_PORT --admin-user admin --admin-password-stdin
            --echo "$SB_ECHO") ;;
        *) args=(--protocol xmpp --gateway xmpp://127.0.0.1:5222) ;;
    esac
    echo "== $label $test users=$users rate=$rate rep=$rep" >&2
    "$LT" run "$scenario" --users "$users" --rate "$rate" --out "$dir" "${args[@]}" "$@" \
        <"$OUT/adminpw" >"$dir.log" 2>&1 || true
    line "$label" "$test" "$users" "$rate" "$rep" "$dir" "${RSS_BEFORE:-}" "${RSS_HELD:-}"
}

line() {
    local dir=$6
    if [ ! -f "$dir/result.json" ]; then
        printf '%s\t%s\t%s\t%s\t%s\tFAILED (see %s.log)\n' "$1" "$2" "$3" "$4" "$5" "$dir" >>"$SUMMARY"
        return
    fi
    python3 - "$@" >>"$SUMMARY" <<'EOF'
import json, sys
peer, test, users, rate, rep, d, before, held = sys.argv[1:9]
r = json.load(open(d + "/result.json"))
t = r.get("totals", r)
def g(k):
    for src in (r, t, r.get("latency", {})):
        if isinstance(src, dict) and k in src:
            return src[k]
    return ""
def f(v):
    return f"{v:.1f}" if isinstance(v, float) else str(v)
print("\t".join([peer, test, users, rate, rep] + [f(g(k)) for k in
      ["delivered", "delivered_per_s", "lost", "duplicated", "out_of_order", "p50_ms",
       "p99_ms", "max_ms", "connect_failures", "errors"]]
      + [json.dumps(r.get("kinds", {}), separators=(",", ":")), before, held]))
EOF
}

pid_of() {
    case $1 in
        sb) echo "$SB_PID" ;;
        *) "$EJ" pid ;;
    esac
}

idle() {
    local peer=$1 pid dir
    dir="$OUT/$(label_of "$1")-idle-$IDLE_USERS-0-1"
    pid=$(pid_of "$peer")
    # Hold for 40 s after a 10 s ramp; RSS is sampled once the users are provisioned (the
    # "running" line, just before the first connection) and again with everyone connected.
    run "$peer" idle "$IDLE_USERS" 0 1 loadtest/scenarios/connect-storm.toml --duration 40 &
    local lt=$!
    for _ in $(seq 1 600); do
        grep -q "^running" "$dir.log" 2>/dev/null && break
        sleep 0.1
    done
    RSS_BEFORE=$(rss_of "$pid")
    sleep 25
    RSS_HELD=$(rss_of "$pid")
    echo "$peer idle: RSS ${RSS_BEFORE} kB before, ${RSS_HELD} kB with the connections held" >&2
    wait $lt || true
    # The background run wrote its summary line without the RSS figures: add them.
    python3 - "$SUMMARY" "$RSS_BEFORE" "$RSS_HELD" <<'EOF2'
import sys
path, before, held = sys.argv[1:4]
lines = open(path).read().rstrip("\n").split("\n")
cols = lines[-1].split("\t")
cols[-2:] = [before, held]
lines[-1] = "\t".join(cols)
open(path, "w").write("\n".join(lines) + "\n")
EOF2
    RSS_BEFORE= RSS_HELD=
}

peer_phase() {
    local peer=$1
    case $peer in
        ej) "$EJ" start --ttl 7200 ;;
        ejsql) "$EJ" start --sql --ttl 7200 ;;
    esac
    [ "$IDLE_USERS" -gt 0 ] && idle "$peer"
    # Broadcast before the rate steps: a peer overloaded by the highest rate stays busy
    # for a long time after it.
    [ "$BC_USERS" -gt 0 ] && run "$peer" broadcast "$BC_USERS" 1 1 loadtest/scenarios/broadcast.toml
    for rate in $RATES; do
        for rep in $(seq 1 "$REPS"); do
            run "$peer" one-to-one 2000 "$rate" "$rep" loadtest/scenarios/one-to-one.toml
        done
    done
    case $peer in
        ej | ejsql) "$EJ" stop ;;
    esac
}

start_sb
{
    echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB RAM, $(uname -sr)"
    echo "date: $(date -u +%FT%TZ); commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "ejabberd: $(dpkg-query -W -f '${Version}' ejabberd 2>/dev/null || echo 'not installed yet')"
} >"$OUT/machine.txt"
for peer in $PEERS; do
    peer_phase "$peer"
done
column -t -s $'\t' "$SUMMARY"
