#!/usr/bin/env bash
# The long crash test: 100 SIGKILLs of a server while a writer runs UPDATE, DELETE, MERGE,
# upserts and OPTIMIZE (tests/python/test_crash.py; the suite runs 4). Builds the debug
# binary first.
# Usage: scripts/crash-test.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/cargo-env.sh
cargo build --locked -q --bin lakehouse
venv=$(scripts/python-env.sh)
LAKEHOUSE_CRASH_ROUNDS="${1:-100}" LAKEHOUSE_BIN="$CARGO_TARGET_DIR/debug/lakehouse" \
  "$venv/bin/python" -m pytest tests/python/test_crash.py -q -p no:cacheprovider
