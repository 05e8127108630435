#!/usr/bin/env bash
# Per-unit costs for the capacity model (docs/scaling.md, "Capacity model"), and the
# simulation run that checks the model against the local cluster.
#
# Starts its own Redis (a spare port, nothing on disk) and its own PostgreSQL instance
# (initdb in a temporary directory, a spare port, pg_stat_statements loaded), and the
# local cluster on them (deploy/local/cluster.sh via scripts/bench-lib.sh: 1 storage,
# 2 routers, 2 gateways). Then, each in a window of its own, with the load tool:
#
#   idle         the cluster with no clients (what each process costs doing nothing)
#   signin       CONN_USERS clients connect and sign in (connect-storm)
#   connected    ... and hold their connections idle (CPU per held connection, RSS)
#   broadcast    ... while BROADCASTS org broadcasts to everyone are posted
#   presence     PRESENCE_USERS clients change presence every PRESENCE_EVERY s (watch 10)
#   direct-low   1:1 messages at LOW msg/s     (2,000 users, all online)
#   direct-high  1:1 messages at HIGH msg/s    (bigger append batches)
#   group        messages to groups of 20 at GROUP_RATE msg/s
#
# and prints the per-unit costs (scripts/bench-capacity.py costs; $OUT/costs.json is the
# model's input). With SIMULATE=1 (default) it then runs the simulation: SIM_PEOPLE
# people, a share online, chatting at the profile's rate with one org broadcast in the
# window, and prints the model's prediction (scripts/capacity-model.py) beside what was
# measured.
#
#   scripts/bench-capacity.sh                       # about 10 minutes, results in target/bench-capacity
#   SIMULATE=0 scripts/bench-capacity.sh            # per-unit costs only
#   NO_BUILD=1 scripts/bench-capacity.sh            # the release binaries as they are
#
# Loopback only; bounded (every load-tool run has a fixed duration); stops and removes
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/services.sh
ensure_postgres   # psql, initdb and the PostgreSQL binaries come with it
ensure_redis
. scripts/bench-lib.sh

CONN_USERS=${CONN_USERS:-3000}
BROADCASTS=${BROADCASTS:-5}
PRESENCE_USERS=${PRESENCE_USERS:-2000}
PRESENCE_EVERY=${PRESENCE_EVERY:-4}
LOW=${LOW:-200}
HIGH=${HIGH:-800}
GROUP_RATE=${GROUP_RATE:-100}
WINDOW=${WINDOW:-20}
SIMULATE=${SIMULATE:-1}
SIM_PEOPLE=${SIM_PEOPLE:-20000}
SIM_WINDOW=${SIM_WINDOW:-60}
# The simulated profile: the same ratios as docs/scaling.md's organisations.
SIM_PROFILE=${SIM_PROFILE:-scripts/capacity-profile.json}
OUT=${OUT:-$bench_target_dir/bench-capacity}

bench_ports_free
rm -rf "$OUT" && mkdir -p "$OUT"
bench_binaries
ulimit -n "$(ulimit -Hn)"

# A free loopback port at or above $1.
free_port() {
    local port=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    echo "$port"
}

# Our own Redis and PostgreSQL, so their counters and CPU are this run's alone.
REDIS_PORT=$(free_port 6390)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --logfile "$OUT/redis.log" &
redis_pid=$!
PG_PORT=$(free_port 5440)
PG_NAME=sbcap-$$
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pg_dir=$(mktemp -d /tmp/sb-capacity-pg.XXXXXX)
chown postgres "$pg_dir"
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    bench_stop_cluster
    as_postgres "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    rm -rf "$pg_dir"
}
trap cleanup EXIT
as_postgres "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -A trust >"$OUT/initdb.log"
as_postgres "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w start -o "-p $PG_PORT \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories=$pg_dir -c cluster_name=$PG_NAME \
    -c shared_preload_libraries=pg_stat_statements" >/dev/null
for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
done

bench_fresh_database "postgres://postgres@127.0.0.1:$PG_PORT/postgres" switchboard_capacity
psql "$DATABASE" -qc "CREATE EXTENSION pg_stat_statements"
REDIS=redis://127.0.0.1:$REDIS_PORT
PREFIX=cap-$$
GATEWAYS=2
bench_start_cluster

export CAP_REDIS_PORT=$REDIS_PORT CAP_PG_URL=$DATABASE CAP_GATEWAYS=8081,8082 \
    CAP_ROUTERS=7201,7202 CAP_STORAGE=7100
# Our processes: the gateways and routers carry the prefix, the storage service the
# database's port, PostgreSQL its cluster_name, Redis its port.
export CAP_ONLY="$PREFIX,127.0.0.1:$PG_PORT/,$PG_NAME,127.0.0.1:$REDIS_PORT"
sample() { scripts/bench-capacity.py sample "$OUT/$1.json"; }

token=$(curl -sf -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$bench_password\"}" \
    http://127.0.0.1:8081/api/v1/login | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
broadcast() {
    curl -sf -o /dev/null -H "authorization: Bearer $token" -H 'content-type: application/json' \
        -d "{\"to\":\"\",\"body\":\"capacity $1\"}" http://127.0.0.1:8081/api/v1/broadcasts
}

# scenario NAME KIND USERS RAMP DURATION RATE GROUP_SHARE PRESENCE_EVERY GROUP_SIZES PREFIX [ONLINE]
scenario() {
    cat >"$OUT/$1.toml" <<EOF
name = "capacity-$1"
kind = "$2"
users = $3
online_share = ${11:-1}
ramp_secs = $4
duration_secs = $5
rate = $6
body_bytes = 64
drain_secs = 3

[provision]
prefix = "${10}"
password = "loadtest-password"
group_sizes = $9

[office]
group_share = $7
presence_every_secs = $8
typing_share = 0
watch = 10
EOF
}

# start_load NAME: runs the load tool on $OUT/NAME.toml in the background and returns
# once provisioning is over and the clients start connecting.
start_load() {
    printf '%s\n' "$bench_password" | "$LOADTEST" run "$OUT/$1.toml" \
        --gateway ws://127.0.0.1:8081,ws://127.0.0.1:8082 --admin-user admin \
        --admin-password-stdin --out "$OUT/$1" >"$OUT/$1.log" 2>&1 &
    load=$!
    for _ in $(seq 600); do
        grep -q "^running" "$OUT/$1.log" && return
        kill -0 "$load" 2>/dev/null || { cat "$OUT/$1.log" >&2; return 1; }
        sleep 0.2
    done
    echo "error: the load tool did not start $1" >&2
    return 1
}

# Signed-in sessions on both gateways.
sessions() {
    local port n total=0
    for port in 8081 8082; do
        n=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '$1 == "switchboard_gateway_sessions" {print $2}')
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

# wait_signed_in NAME: until every client the load tool runs for NAME (the "N online" of
# its first line) has signed in, at most 120 s: on a busy machine sign-ins run past the
# ramp, and their work must not land in the next window.
wait_signed_in() {
    local want
    want=$(sed -n 's/^running .*(\([0-9]*\) online).*/\1/p' "$OUT/$1.log" | head -n 1)
    for _ in $(seq 240); do
        [ "$(sessions)" -ge "${want:-0}" ] && return
        sleep 0.5
    done
    echo "warning: only $(sessions) of $want clients signed in for $1" >&2
}

# measured NAME RAMP: a window of $WINDOW seconds, starting once the ramp is over, every
# client has signed in and the database has finished their sessions' start.
measured() {
    start_load "$1"
    sleep "$2"
    wait_signed_in "$1"
    scripts/bench-capacity.py settle
    sample "$1.before"
    sleep "$WINDOW"
    sample "$1.after"
    wait "$load" || true
    echo "== $1: $(tail -n 1 "$OUT/$1.log")" >&2
}

echo "== idle" >&2
sleep 3
sample idle.before
sleep "$WINDOW"
sample idle.after

echo "== sign-in, held connections, org broadcasts ($CONN_USERS clients)" >&2
scenario connect connect-storm "$CONN_USERS" 10 $((WINDOW + 2 * BROADCASTS + 60)) 0 0 0 "[]" capc
start_load connect
sample signin.before
sleep 10
wait_signed_in connect
sleep 2
sample signin.after
scripts/bench-capacity.py settle
sample connected.before
sleep "$WINDOW"
sample connected.after
sample broadcast.before
for n in $(seq "$BROADCASTS"); do
    broadcast "$n"
    sleep 2
done
sample broadcast.after
wait "$load" || true

echo "== presence changes" >&2
scenario presence office "$PRESENCE_USERS" 8 $((WINDOW + 40)) 0 0 "$PRESENCE_EVERY" "[20]" capp
measured presence 8
echo "== messages" >&2
scenario direct-low office 2000 5 $((WINDOW + 40)) "$LOW" 0 0 "[20]" capm
measured direct-low 5
scenario direct-high office 2000 5 $((WINDOW + 40)) "$HIGH" 0 0 "[20]" capm
measured direct-high 5
scenario group office 2000 5 $((WINDOW + 40)) "$GROUP_RATE" 1 0 "[20]" capm
measured group 5

scripts/bench-capacity.py costs "$OUT" | tee "$OUT/costs.txt"

if [ "$SIMULATE" = 1 ]; then
    # The profile scaled down to SIM_PEOPLE people: same online share, messages per
    # person, group mix and presence changes; one org broadcast in the window.
    read -r online rate group_share presence_every group_sizes < <(python3 - "$SIM_PROFILE" "$SIM_PEOPLE" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
people = int(sys.argv[2])
online = people * p["online_share"]
print(p["online_share"], online * p["messages_per_person_minute"] / 60,
      1 - p["direct_share"], 3600 / p["presence_changes_per_person_hour"],
      json.dumps([s for s, _ in p["group_sizes"]]).replace(" ", ""))
EOF
)
    echo "== simulation: $SIM_PEOPLE people, $online online, $rate msg/s, one broadcast" >&2
    scenario simulation office "$SIM_PEOPLE" 20 $((SIM_WINDOW + 40)) "$rate" "$group_share" \
        "$presence_every" "$group_sizes" cap-sim "$online"
    start_load simulation
    sleep 20
    wait_signed_in simulation
    scripts/bench-capacity.py settle
    sample simulation.before
    sleep $((SIM_WINDOW / 2))
    broadcast simulation
    sleep $((SIM_WINDOW - SIM_WINDOW / 2))
    sample simulation.after
    wait "$load" || true
    echo "== simulation: $(tail -n 1 "$OUT/simulation.log")" >&2
    seconds=$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); print(a["t"]-b["t"])' \
        "$OUT/simulation.after.json" "$OUT/simulation.before.json")
    scripts/capacity-model.py --costs "$OUT/costs.json" --profile "$SIM_PROFILE" \
        --people "$SIM_PEOPLE" --local --broadcasts-in-window 1 --window "$seconds" \
        --json "$OUT/prediction.json" >"$OUT/prediction.txt"
    scripts/bench-capacity.py compare "$OUT" "$OUT/prediction.json" | tee "$OUT/comparison.txt"
fi
