#!/usr/bin/env bash
# What tracing costs (docs/benchmarks.md, "Tracing overhead"): a local cluster
# (1 storage, 2 routers, 3 gateways, on ports from PORT_BASE, default 9100) runs the load tool's office
# scenario, alternately without OpenTelemetry ("off": no OTLP endpoint) and with the
# OTLP exporter configured but sampling nothing ("ratio0": no trace is kept, so the
# sending gateway makes no span), ROUNDS times interleaved, in one run; then, once,
# sampling everything ("ratio1") into a local sink. Prints medians of delivered
# messages per second and CPU per delivered message.
#
#   scripts/bench-tracing.sh                   # ROUNDS=3 DURATION=30 USERS=1000 RATE=2500
#   ROUNDS=1 DURATION=15 scripts/bench-tracing.sh
#
# Loopback only; stops the cluster when done. Results under $OUT (default
# target/bench-tracing).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/services.sh
ensure_postgres
ensure_redis

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-30}
USERS=${USERS:-1000}
RATE=${RATE:-2500}
target_dir=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$target_dir/bench-tracing}

if [ -z "${NO_BUILD:-}" ]; then
    echo "Building (release) ..." >&2
    cargo build --release -q -p switchboard -p switchboard-loadtest --bins
fi
P=${PORT_BASE:-9100}
for port in $P $((P + 1)) $((P + 2)) $((P + 11)) $((P + 12)) $((P + 13)); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "error: something already listens on 127.0.0.1:$port; set PORT_BASE" >&2
        exit 1
    fi
done
rm -rf "$OUT" && mkdir -p "$OUT/bin"
cp "$target_dir/release/switchboard" "$target_dir/release/switchboard-loadtest" "$OUT/bin/"
BIN=$OUT/bin/switchboard
LOADTEST=$OUT/bin/switchboard-loadtest
password=bench-admin-password

pids=()
stop_cluster() {
    if [ ${#pids[@]} -gt 0 ]; then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
        pids=()
    fi
}
trap 'stop_cluster; redis-cli --scan --pattern "bench-tracing-$$*" | xargs -r redis-cli del >/dev/null' EXIT

# A sink for the "ratio1" run: accepts gRPC connections and answers nothing useful,
# so exports fail after their timeout; what is measured is the servers' side.
sink_port=43170

run() { # round mode
    local dir="$OUT/r$1-$2" db=switchboard_bench_tracing
    echo "== round $1: $2 ==" >&2
    psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    psql postgres://postgres@127.0.0.1:5432/postgres -qc "CREATE DATABASE $db"
    local database=postgres://postgres@127.0.0.1:5432/$db
    printf '%s\n' "$password" | "$BIN" user add admin --admin --password-stdin --database "$database" >/dev/null
    local env=()
    case $2 in
        off) env=(env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_TRACES_SAMPLER) ;;
        ratio0) env=(env OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port
                     OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0) ;;
        ratio1) env=(env OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port
                     OTEL_TRACES_SAMPLER=parentbased_always_on) ;;
    esac
    local redis=(--redis redis://127.0.0.1:6379 --redis-prefix "bench-tracing-$$-$1-$2")
    "${env[@]}" "$BIN" storage --listen 127.0.0.1:$P --database "$database" >>"$dir.cluster.log" 2>&1 &
    pids+=($!)
    for r in 1 2; do
        "${env[@]}" "$BIN" router --listen 127.0.0.1:$((P + r)) "${redis[@]}" >>"$dir.cluster.log" 2>&1 &
        pids+=($!)
    done
    sleep 1
    for g in 1 2 3; do
        "${env[@]}" "$BIN" gateway --listen 127.0.0.1:$((P + 10 + g)) --gateway-id "gw$g" \
            --storage http://127.0.0.1:$P \
            --router http://127.0.0.1:$((P + 1)),http://127.0.0.1:$((P + 2)) \
            "${redis[@]}" --rate-per-user 0 --rate-per-ip 0 >>"$dir.cluster.log" 2>&1 &
        pids+=($!)
    done
    for port in $((P + 11)) $((P + 12)) $((P + 13)); do
        for _ in $(seq 100); do
            curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
            sleep 0.2
        done
    done
    sleep 1
    scripts/cpu-by-role.py snapshot >"$dir.cpu-before"
    local TIMEFORMAT='%U %S'
    { time (printf '%s\n' "$password" | "$LOADTEST" run loadtest/scenarios/office.toml \
        --gateway ws://127.0.0.1:$((P + 11)),ws://127.0.0.1:$((P + 12)),ws://127.0.0.1:$((P + 13)) \
        --users "$USERS" --rate "$RATE" --duration "$DURATION" \
        --admin-user admin --admin-password-stdin --out "$dir" >"$dir.log" 2>&1 || true); } \
        2>"$dir.time"
    scripts/cpu-by-role.py snapshot >"$dir.cpu-after"
    local delivered tool
    delivered=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("delivered", 0))' "$dir/result.json" 2>/dev/null || echo 0)
    tool=$(awk '{print $1 + $2}' "$dir.time")
    scripts/cpu-by-role.py diff "$dir.cpu-before" "$dir.cpu-after" "$delivered" "$tool" >"$dir.cpu"
    tail -n 3 "$dir.log" >&2
    stop_cluster
}

python3 -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
while True:
    c, _ = s.accept()
    threading.Thread(target=lambda c=c: (c.recv(1 << 20), c.close()), daemon=True).start()
' "$sink_port" &
sink=$!
trap 'kill $sink 2>/dev/null; stop_cluster; redis-cli --scan --pattern "bench-tracing-$$*" | xargs -r redis-cli del >/dev/null' EXIT

# ABBA order (off first in odd rounds, ratio0 first in even ones), so a drift of the
# machine over the run weighs on both modes alike.
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="off ratio0"; else order="ratio0 off"; fi
    for mode in $order; do
        run "$round" "$mode"
    done
done
run 1 ratio1

python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, pathlib, re, statistics, sys
out = pathlib.Path(sys.argv[1])
rows = {}
for result in sorted(out.glob("r*/result.json")):
    _, mode = result.parent.name.split("-", 1)
    r = json.loads(result.read_text())
    # Server CPU per delivered message: the gateways', storage's and routers' rows of
    # scripts/cpu-by-role.py (what tracing runs in); PostgreSQL and the load tool apart.
    cpu = (out / f"{result.parent.name}.cpu").read_text()
    per = {m[1]: float(m[2]) for m in re.finditer(r"^(.+?)\s+[0-9.]+\s+[0-9.]+%\s+([0-9.]+)$", cpu, re.M)}
    r["_server_us"] = sum(v for k, v in per.items() if k.startswith("switchboard"))
    total = re.search(r"^total\s+[0-9.]+\s+([0-9.]+)$", cpu, re.M)
    r["_total_us"] = float(total[1]) if total else 0.0
    rows.setdefault(mode, []).append(r)
print(f"{'mode':>7} {'runs':>4} {'delivered/s':>11} {'p50 ms':>7} {'p99 ms':>8} {'lost':>5} {'dup':>4} {'server us/msg':>13} {'total us/msg':>12}")
base = {}
for mode in ["off", "ratio0", "ratio1"]:
    runs = rows.get(mode)
    if not runs:
        continue
    med = lambda k: statistics.median(float(r.get(k, 0) or 0) for r in runs)
    now = {k: med(k) for k in ["delivered_per_s", "_server_us", "_total_us"]}
    base = base or now
    vs = lambda k: f"{100 * (now[k] - base[k]) / base[k]:+.1f}%" if base[k] else "-"
    print(f"{mode:>7} {len(runs):>4} {now['delivered_per_s']:>11.0f} {med('p50_ms'):>7.2f} {med('p99_ms'):>8.2f} "
          f"{sum(int(r.get('lost', 0)) for r in runs):>5} {sum(int(r.get('duplicated', 0)) for r in runs):>4} "
          f"{now['_server_us']:>13.1f} {now['_total_us']:>12.1f}   "
          f"(vs off: delivered/s {vs('delivered_per_s')}, server CPU {vs('_server_us')}, total CPU {vs('_total_us')})")
    print(f"{'':>7} each run: delivered/s " + ", ".join(f"{float(r.get('delivered_per_s', 0)):.0f}" for r in runs)
          + "; server us/msg " + ", ".join(f"{r['_server_us']:.1f}" for r in runs))
PY
echo "CPU per delivered message, per run: $OUT/r*-*.cpu" >&2
