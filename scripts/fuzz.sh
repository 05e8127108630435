#!/usr/bin/env bash
# Fuzzes what Switchboard parses from untrusted input (the targets in fuzz/): each target
# runs for SECONDS (default 20) on the nightly toolchain with cargo-fuzz, which is
# installed from crates.io when missing. Starts from the seed corpus in fuzz/corpus/
# (kept read-only: new inputs go to a temporary directory), and fails on the first crash,
# whose input is left in fuzz/artifacts/<target>/ (add it to fuzz/corpus/<target>/ as a
# regression once fixed).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
shift || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchboard/target}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: no nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --quiet
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi

# Safe Rust only (unsafe is forbidden in the workspace): the sanitizer would mostly slow
# the run down; panics, overflow checks and debug assertions are what we look for.
cargo +nightly fuzz build --fuzz-dir fuzz --sanitizer none --debug-assertions

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for target in "${targets[@]}"; do
    mkdir -p "$work/$target" "fuzz/artifacts/$target"
    echo "scripts/fuzz.sh: $target for ${seconds}s" >&2
    cargo +nightly fuzz run --fuzz-dir fuzz --sanitizer none --debug-assertions "$target" \
        "$work/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$target/" 2>"$work/$target.log" || {
        status=1
        echo "scripts/fuzz.sh: $target FAILED; its input is in fuzz/artifacts/$target/" >&2
        grep -v '^#' "$work/$target.log" | tail -n 40 >&2
        continue
    }
    grep -E 'stat::(number_of_executed_units|new_units_added)' "$work/$target.log" \
        | sed "s/^/  $target: /" >&2 || true
done
exit "$status"
