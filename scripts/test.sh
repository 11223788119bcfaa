#!/usr/bin/env bash
# The whole test suite: formatting, clippy, the generated-code check, the Rust unit and
# integration tests (real server, real clients), and the Python client tests (pyarrow, ADBC)
# against the real `lakehouse` binary, and the model-provider tests against a real model server.
# Installs what it needs (system packages, a Python venv, node-llama-cpp and the MiniLM model).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/cargo-env.sh

step() { printf '\n== %s\n' "$*" >&2; }

step "model server (MiniLM over llama.cpp; tests start and stop their own instances)"
LAKEHOUSE_MODELS_DIR=$(scripts/model-server/setup.sh)
export LAKEHOUSE_MODELS_DIR

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
step "generated protobuf code is up to date"
cargo run --locked -q -p lakehouse-proto-gen -- --check
step "cargo test"
cargo test --locked --workspace
step "python client tests"
cargo build --locked -q --bin lakehouse
venv=$(scripts/python-env.sh)
LAKEHOUSE_BIN="$CARGO_TARGET_DIR/debug/lakehouse" "$venv/bin/python" -m pytest tests/python -q -p no:cacheprovider
