# Sourced by the cluster benchmarks (scripts/bench-cluster.sh, scripts/bench-capacity.sh):
# release build, copies of the binaries, a fresh database with an admin, and the local
# cluster (deploy/local/cluster.sh) started in the background and stopped again.
# Everything listens on loopback only. Callers set OUT (results directory) first.
# Also by the append_batch benchmarks (scripts/bench-append.sh,
# scripts/bench-commit-floor.sh), for bench_append_database.

bench_target_dir=${CARGO_TARGET_DIR:-target}

# Builds the release binaries unless NO_BUILD=1 (e.g. while sources are being edited),
# then copies them to $OUT/bin so a rebuild during the run cannot swap binaries under it.
# SWITCHBOARD_BIN=path runs another build of the server (e.g. an older commit's) with this
# load tool. Sets BIN and LOADTEST.
bench_binaries() {
    if [ -z "${NO_BUILD:-}" ]; then
        echo "Building (release) ..." >&2
        cargo build --release -q -p switchboard -p switchboard-loadtest --bins
    fi
    mkdir -p "$OUT/bin"
    cp "${SWITCHBOARD_BIN:-$bench_target_dir/release/switchboard}" "$OUT/bin/switchboard"
    cp "$bench_target_dir/release/switchboard-loadtest" "$OUT/bin/"
    BIN=$OUT/bin/switchboard
    LOADTEST=$OUT/bin/switchboard-loadtest
}

# Refuses to start when the local cluster's ports are taken (someone else's cluster).
bench_ports_free() {
    local port
    for port in 8081 8082 7100 7201 7202; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "error: something already listens on 127.0.0.1:$port (a local cluster?); stop it first" >&2
            return 1
        fi
    done
}

# bench_fresh_database ADMIN_URL NAME: drops and creates database NAME on the server of
# ADMIN_URL (a URL ending in /postgres) and adds the account admin with $bench_password.
# Sets DATABASE.
bench_password=bench-admin-password
bench_fresh_database() {
    psql "$1" -qc "DROP DATABASE IF EXISTS $2 WITH (FORCE)"
    psql "$1" -qc "CREATE DATABASE $2"
    DATABASE=${1%/*}/$2
    printf '%s\n' "$bench_password" |
        "$BIN" user add admin --admin --password-stdin --database "$DATABASE" >/dev/null
}

# Starts deploy/local/cluster.sh in the background (1 storage, 2 routers, GATEWAYS
# gateways, default 3) on $DATABASE, Redis $REDIS (default the local one) and key prefix
# $PREFIX, without rate limits (and with $STORAGE_ARGS, if set, on the storage service),
# logging to $OUT/cluster.log; waits until gateways 8081
# and 8082 are ready. Sets bench_cluster (its pid).
bench_start_cluster() {
    BIN=$BIN DATABASE=$DATABASE PREFIX=$PREFIX REDIS=${REDIS:-redis://127.0.0.1:6379} \
        GATEWAYS=${GATEWAYS:-3} GATEWAY_ARGS="--rate-per-user 0 --rate-per-ip 0" \
        STORAGE_ARGS=${STORAGE_ARGS:-} \
        deploy/local/cluster.sh >"$OUT/cluster.log" 2>&1 &
    bench_cluster=$!
    local port
    for port in 8081 8082; do
        for _ in $(seq 100); do
            curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
            sleep 0.2
        done
    done
    sleep 1
}

# Stops the cluster (TERM, not INT: a background job of a script ignores SIGINT) and
# removes its Redis keys.
bench_stop_cluster() {
    if [ -n "${bench_cluster:-}" ]; then
        kill -TERM "$bench_cluster" 2>/dev/null || true
        wait "$bench_cluster" 2>/dev/null || true
        bench_cluster=
    fi
    local url=${REDIS:-redis://127.0.0.1:6379}
    redis-cli -u "$url" --scan --pattern "$PREFIX:*" | xargs -r redis-cli -u "$url" del >/dev/null
}

# bench_append_database URL CONVERSATIONS MIGRATION_FILES...: drops and creates the
# database of URL (on the local server), applies the given migrations and adds 100 users
# and CONVERSATIONS group conversations; users 1 and 2 are members of every conversation,
# so either may send to any of them with append_batch.
bench_append_database() {
    local url=$1 conversations=$2
    shift 2
    psql -q "${url%/*}/postgres" -c "DROP DATABASE IF EXISTS ${url##*/} WITH (FORCE)" \
        -c "CREATE DATABASE ${url##*/}"
    local file
    for file in "$@"; do psql -q -v ON_ERROR_STOP=1 "$url" -f "$file"; done
    psql -q -v ON_ERROR_STOP=1 -v n="$conversations" "$url" <<'SQL'
INSERT INTO users (username, password_hash, created_at)
    SELECT 'u' || i, '!', 0 FROM generate_series(1, 100) i;
INSERT INTO conversations (kind, name, created_at) SELECT 'group', 'g' || i, 0 FROM generate_series(1, :n) i;
INSERT INTO members (conversation_id, user_id, joined_at)
    SELECT c.id, u.id, 0 FROM conversations c JOIN users u ON u.id % 50 = c.id % 50 OR u.id <= 2;
SQL
}
