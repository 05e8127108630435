#!/usr/bin/env bash
# The peer for the side-by-side benchmark: Debian's ejabberd, configured for a fair load
# test on this machine, in a scratch directory of its own (the system's /etc/ejabberd and
# /var/lib/ejabberd are not touched).
#
#   loadtest/peers/ejabberd.sh start [--sql] [--ttl SECS]   # install if missing, configure, start
#   loadtest/peers/ejabberd.sh register PREFIX COUNT [PASSWORD]  # PREFIX-0 .. PREFIX-(COUNT-1)
#   loadtest/peers/ejabberd.sh rss      # VmRSS (kB) of the ejabberd node
#   loadtest/peers/ejabberd.sh status
#   loadtest/peers/ejabberd.sh stop
#
# What the configuration does (see write_config below):
#   - c2s on 127.0.0.1:$EJABBERD_C2S_PORT (default 5222), plain TCP: STARTTLS offered by no
#     certificate, never required; SASL PLAIN allowed (passwords stored plain, so a login
#     costs no SCRAM key derivation);
#   - mod_http_api on 127.0.0.1:$EJABBERD_HTTP_PORT (default 5280), open to loopback: the
#     load tool registers its users there (POST /api/register), or `register` below does;
#   - mod_mam on for every message (default: always) in mnesia, or with --sql in PostgreSQL
#     (database ejabberd_bench on 127.0.0.1:5432, ejabberd's own pg.sql schema as shipped
#     in the Debian package, driver package erlang-p1-pgsql); MUC rooms archive too;
#   - mod_muc with room sizes up to 100,000 (its default cap is 200), occupants' presence
#     shared only in rooms up to 100 (default 1,000; see the comment in the config);
#   - the c2s shaper set to `none` and max_fsm_queue raised to 100,000, so the server and
#     not the anti-flood shaper is measured;
#   - an open-file limit of 20,000 (the hard cap of a process here) and 32,000 Erlang ports.
#
# The node stops by itself after --ttl seconds (default 7200) in case nobody calls `stop`.
set -euo pipefail

DIR=${EJABBERD_BENCH_DIR:-/tmp/ejabberd-bench}
C2S_PORT=${EJABBERD_C2S_PORT:-5222}
HTTP_PORT=${EJABBERD_HTTP_PORT:-5280}
NODE=${EJABBERD_NODE:-ejabberd-bench@localhost}
DOMAIN=localhost
PG=(psql -h 127.0.0.1 -p 5432 -U postgres -v ON_ERROR_STOP=1 -q)

# Run as the ejabberd user through setpriv, not su: ejabberdctl's own `su ejabberd` would
# open a PAM session that resets the open-file limit to 1,024 (the node then refuses
# connections past ~1,000 with EMFILE).
ctl() {
    ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    (cd "$DIR" && setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
        env HOME=/var/lib/ejabberd ERL_MAX_PORTS=32000 ejabberdctl --node "$NODE" \
        --config-dir "$DIR/etc" --logs "$DIR/log" --spool "$DIR/spool" "$@")
}

install_if_missing() {
    local sql=$1 want=()
    command -v ejabberdctl >/dev/null || want+=(ejabberd)
    # Debian ships ejabberd's PostgreSQL driver separately; without it every SQL query
    # fails ("Failed to start Erlang application 'p1_pgsql'").
    # (A package apt knows but has not installed has the status "... not-installed".)
    if [ "$sql" = 1 ] && ! dpkg-query -W -f '${Status}' erlang-p1-pgsql 2>/dev/null |
        grep -q 'install ok installed'; then
        want+=(erlang-p1-pgsql)
    fi
    if [ ${#want[@]} -gt 0 ]; then
        echo "installing ${want[*]}..." >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${want[@]}" >/dev/null
        # The package may start its own system instance; this benchmark runs its own node.
        if [ -d /run/systemd/system ]; then systemctl stop ejabberd || true; fi
    fi
}

write_config() {
    local sql=$1 mam_db=mnesia
    mkdir -p "$DIR/etc" "$DIR/log" "$DIR/spool"
    [ "$sql" = 1 ] && mam_db=sql
    echo '{lookup, [file, native]}.' >"$DIR/etc/inetrc"
    cat >"$DIR/etc/ejabberdctl.cfg" <<EOF
ERL_MAX_PORTS=32000
ERL_PROCESSES=1000000
ERL_MAX_ETS_TABLES=10000
EJABBERD_BYPASS_WARNINGS=true
EJABBERD_PID_PATH=$DIR/ejabberd.pid
EOF
    cat >"$DIR/etc/ejabberd.yml" <<EOF
# Written by loadtest/peers/ejabberd.sh: a benchmark configuration, loopback only.
hosts:
  - $DOMAIN
loglevel: warning
log_rotate_count: 0
max_fsm_queue: 100000
auth_method: internal
auth_password_format: plain
listen:
  - port: $C2S_PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    shaper: none
    access: c2s
    max_stanza_size: 262144
    starttls_required: false
  - port: $HTTP_PORT
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
shaper:
  normal:
    rate: 1000000000
    burst_size: 1000000000
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 100000
  c2s_shaper: none
  s2s_shaper: none
acl:
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  local:
    allow: all
  c2s:
    allow: all
  muc_create:
    allow: all
  register:
    allow: all
api_permissions:
  "loopback benchmark":
    from:
      - ejabberd_ctl
      - mod_http_api
    who: all
    what: "*"
EOF
    if [ "$sql" = 1 ]; then
        cat >>"$DIR/etc/ejabberd.yml" <<EOF
sql_type: pgsql
sql_server: "127.0.0.1"
sql_port: 5432
sql_database: ejabberd_bench
sql_username: postgres
sql_password: ""
sql_pool_size: 10
new_sql_schema: false
EOF
    fi
    cat >>"$DIR/etc/ejabberd.yml" <<EOF
modules:
  mod_disco: {}
  mod_roster: {}
  mod_offline: {}
  mod_http_api: {}
  mod_mam:
    db_type: $mam_db
    default: always
    assume_mam_usage: true
  mod_muc:
    host: "conference.$DOMAIN"
    access_create: muc_create
    max_users: 100000
    max_user_conferences: 100
    # Occupants see each other's presence only in rooms up to this size (default 1,000):
    # with the default, 2,000 users joining one room cost ~2 million presence stanzas and
    # the room process delivered no message within a 20 s broadcast run.
    max_users_presence: 100
    default_room_options:
      mam: true
      max_users: 100000
      persistent: true
EOF
}

setup_sql() {
    local schema=/usr/share/ejabberd/sql/pg.sql
    [ -f "$schema" ] || { echo "missing $schema (the Debian package ships it)" >&2; exit 1; }
    pg_isready -h 127.0.0.1 -p 5432 -q || {
        echo "PostgreSQL is not accepting connections on 127.0.0.1:5432" >&2
        exit 1
    }
    # A fresh database for every start, so runs are comparable.
    "${PG[@]}" -d postgres -c "DROP DATABASE IF EXISTS ejabberd_bench" \
        -c "CREATE DATABASE ejabberd_bench"
    "${PG[@]}" -d ejabberd_bench -f "$schema" >/dev/null
}

node_pid() {
    # ejabberd writes its OS pid there (EJABBERD_PID_PATH in ejabberdctl.cfg).
    local pid
    pid=$(cat "$DIR/ejabberd.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

start() {
    local sql=0 ttl=7200
    while [ $# -gt 0 ]; do
        case $1 in
            --sql) sql=1; shift ;;
            --ttl) ttl=$2; shift 2 ;;
            *) echo "unknown option $1" >&2; exit 2 ;;
        esac
    done
    install_if_missing "$sql"
    if [ -n "$(node_pid)" ]; then
        echo "already running (pid $(node_pid)); run '$0 stop' first" >&2
        exit 1
    fi
    # A fresh spool for every start: no users, rooms or archive from earlier runs.
    rm -rf "$DIR/spool" "$DIR/log"
    write_config "$sql"
    [ "$sql" = 1 ] && setup_sql
    chown -R ejabberd:ejabberd "$DIR"
    ctl start
    for _ in $(seq 1 60); do
        if ctl status >/dev/null 2>&1 && curl -s -o /dev/null "http://127.0.0.1:$HTTP_PORT/api/status" -X POST -d '{}'; then
            break
        fi
        sleep 1
    done
    ctl status >/dev/null || { echo "ejabberd did not start; see $DIR/log" >&2; exit 1; }
    # Stop by itself after the TTL, in case nobody calls stop.
    nohup setsid bash -c "sleep $ttl; '$0' stop" >/dev/null 2>&1 &
    echo $! >"$DIR/watchdog.pid"
    echo "ejabberd started: pid $(node_pid), xmpp://127.0.0.1:$C2S_PORT (domain $DOMAIN)," \
        "http://127.0.0.1:$HTTP_PORT/api, MAM in $([ "$sql" = 1 ] && echo PostgreSQL || echo mnesia);" \
        "stops by itself in $ttl s"
}

stop() {
    if [ -f "$DIR/watchdog.pid" ]; then
        local w
        w=$(cat "$DIR/watchdog.pid")
        rm -f "$DIR/watchdog.pid"
        # Only our own watchdog: its pid, and only if it is still the sleeping bash we started.
        if [ "$w" != "$$" ] && ps -o args= -p "$w" 2>/dev/null | grep -q "stop"; then
            kill -- "-$w" 2>/dev/null || kill "$w" 2>/dev/null || true
        fi
    fi
    local pid
    pid=$(node_pid)
    [ -z "$pid" ] && { echo "not running"; return 0; }
    ctl stop >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || { echo "stopped"; return 0; }
        sleep 1
    done
    kill "$pid" 2>/dev/null || true
    echo "stopped (killed pid $pid)"
}

register() {
    local prefix=$1 count=$2 password=${3:-loadtest-password}
    seq 0 $((count - 1)) | xargs -P 16 -I{} curl -s -o /dev/null -X POST \
        "http://127.0.0.1:$HTTP_PORT/api/register" \
        -d "{\"user\":\"$prefix-{}\",\"host\":\"$DOMAIN\",\"password\":\"$password\"}"
    echo "registered $prefix-0 .. $prefix-$((count - 1))"
}

rss() {
    local pid
    pid=$(node_pid)
    [ -n "$pid" ] || { echo "not running" >&2; exit 1; }
    awk '/VmRSS/ {print $2}' "/proc/$pid/status"
}

cmd=${1:-}
shift || true
case $cmd in
    start) start "$@" ;;
    stop) stop ;;
    register) register "$@" ;;
    rss) rss ;;
    status) ctl status ;;
    pid) node_pid ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
esac
