#!/usr/bin/env bash
# Vector search benchmark on all 400k GloVe 6B 50-d vectors: IVF_PQ build time, recall@10 and
# p50/p99 latency of `vector_search` and `hybrid_search` (BM25 over the words fused with the
# vector side) through Flight SQL (ADBC from Python, and the Rust client) and in-process, beside
# pylance (Lance's Python package, same Lance version, same index and search parameters; hybrid
# as its two searches fused in Python), plus cached vs uncached `embed` throughput with MiniLM on
# the real model server and in process (candle). Prints a Markdown table and writes it to bench/vector/results.md. A
# benchmark, not a test: it builds release binaries (~35 min the first time) and is not run by
# CI.
#   bench/vector/run.sh [--queries N] [--embed-only]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh
. scripts/cargo-env.sh
cargo build --release --locked --bin lakehouse
# With the server selected too, so features unify as in the server's build (no second arrow).
cargo build --release --locked -p lakehouse-server -p lakehouse-client --example query_latency
cargo bench --locked --no-run -p lakehouse-server --bench vector_search
LAKEHOUSE_MODELS_DIR=$(scripts/model-server/setup.sh)
export LAKEHOUSE_MODELS_DIR
venv=$(scripts/python-env.sh bench/vector/requirements.txt "$HOME/.cache/lakehouse/venv-bench-vector")
exec "$venv/bin/python" bench/vector/bench.py --bin "$CARGO_TARGET_DIR/release/lakehouse" \
  --client-bin "$CARGO_TARGET_DIR/release/examples/query_latency" \
  --work "$HOME/.cache/lakehouse/bench/vector" --out bench/vector/results.md "$@"
