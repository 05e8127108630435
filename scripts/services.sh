# Sourced by scripts/test: makes sure the servers the tests talk to are installed and
# running on 127.0.0.1, installing them from Debian packages on a fresh machine.
# Tests isolate themselves inside these servers (own database, own key prefix).

# PostgreSQL on 127.0.0.1:5432, user postgres, no password from localhost.
ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        return
    fi
    local fresh=0
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "scripts/test: installing PostgreSQL (Debian package postgresql)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        fresh=1
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    if [ "$fresh" = 1 ]; then
        # A machine we set up ourselves: trust local TCP connections, as on the dev machines.
        sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' \
            "/etc/postgresql/$version/main/pg_hba.conf"
    fi
    echo "scripts/test: starting PostgreSQL $version" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 && return
        sleep 1
    done
    echo "scripts/test: PostgreSQL did not come up on 127.0.0.1:5432" >&2
    return 1
}

# Redis on 127.0.0.1:6379, nothing kept on disk.
# The binary is needed even when a server already answers: one test restarts a private
# Redis of its own.
ensure_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "scripts/test: installing Redis (Debian package redis-server)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
    if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
        return
    fi
    echo "scripts/test: starting Redis" >&2
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/switchboard-test.log
    for _ in $(seq 1 30); do
        redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && return
        sleep 1
    done
    echo "scripts/test: Redis did not come up on 127.0.0.1:6379" >&2
    return 1
}

# OpenLDAP's slapd and the ldap-utils (slapadd), for the directory sign-in tests. Only the
# binaries: every test starts its own slapd on an ephemeral port with its own config and
# database in a temporary directory. The package's own daemon is stopped after install
# (its postinst starts one on port 389 with a generated dc=nodomain tree that nobody uses).
ensure_slapd() {
    if command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ]; then
        return
    fi
    echo "scripts/test: installing OpenLDAP (Debian packages slapd, ldap-utils)" >&2
    apt-get update -qq
    # policy-rc.d answering 101 tells invoke-rc.d not to start the system daemon; restored
    # after so other installs behave as usual.
    local policy=/usr/sbin/policy-rc.d had_policy=0
    if [ -e "$policy" ]; then had_policy=1; fi
    if [ "$had_policy" = 0 ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null
    if [ "$had_policy" = 0 ]; then rm -f "$policy"; fi
    # Where a daemon started anyway (no invoke-rc.d), stop the one the package started.
    if [ -f /var/run/slapd/slapd.pid ]; then
        kill "$(cat /var/run/slapd/slapd.pid)" 2>/dev/null || true
    fi
}

# moto's standalone server, an S3-compatible store (PyPI `moto[server]`), for the cluster
# attachment test: installed into a virtualenv under ~/.cache/switchboard/moto (override
# with SWITCHBOARD_MOTO_VENV); the test starts its own on an ephemeral port.
ensure_moto() {
    local venv="${SWITCHBOARD_MOTO_VENV:-$HOME/.cache/switchboard/moto}"
    if [ -x "$venv/bin/moto_server" ]; then
        return
    fi
    if ! python3 -m venv --help >/dev/null 2>&1; then
        echo "scripts/test: installing Python's venv (Debian package python3-venv)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
    fi
    echo "scripts/test: installing moto's S3 server (PyPI moto[server]) into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'moto[server]==5.2.5'
}
