#!/usr/bin/env bash
# The web client's browser tests (web-tests/): headless Debian Chromium driven by
# playwright-core against the built `switchboard` binary. Called by scripts/test after
# the Rust suites; runs on its own too. Installs what it needs when missing: Chromium
# (Debian package `chromium`; playwright never downloads a browser), the npm test
# dependency (`npm ci` from the committed package-lock.json), and PostgreSQL and Redis
# (scripts/services.sh), which the cluster-mode tests (tests/cluster.js) run on, each in a
# database and key prefix of its own. Screenshots go to $CARGO_TARGET_DIR/web-screenshots
# (target/web-screenshots without it).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/services.sh
ensure_postgres
ensure_redis

if [ ! -x /usr/bin/chromium ]; then
    echo "scripts/web-tests.sh: installing Chromium (Debian package chromium)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "scripts/web-tests.sh: installing Node.js (Debian packages nodejs, npm)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -d web-tests/node_modules/playwright-core ]; then
    (cd web-tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

# The tests start the debug binary: build it (a no-op after `cargo nextest run`).
cargo build --locked -p switchboard
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cd web-tests
exec npm test
