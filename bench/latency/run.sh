#!/usr/bin/env bash
# Latency benchmark: the `SELECT 1` round trip, a point lookup and a small aggregate on a
# 15,000-row table (hot and cold), and four reference queries over a staffing data set written by
# gen.py (fixed seed) — through Lakehouse over Flight SQL (ADBC), beside DuckDB and
# datafusion-python in-process on the same Parquet files. Prints a Markdown table and writes it
# to bench/latency/results.md. A benchmark, not a test: it builds the release binary and is not
# run by CI. vector_search / hybrid_search latency: bench/vector/run.sh; TPC-H: bench/tpch/run.sh.
#   bench/latency/run.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh
. scripts/cargo-env.sh
cargo build --release --locked --bin lakehouse
venv=$(scripts/python-env.sh bench/tpch/requirements.txt "$HOME/.cache/lakehouse/venv-bench")
work="$HOME/.cache/lakehouse/bench/latency"
rm -rf "$work"
mkdir -p "$work"
"$venv/bin/python" bench/latency/gen.py --out "$work/parquet"
exec "$venv/bin/python" bench/latency/bench.py --data "$work/parquet" --storage "$work/lakehouse" \
  --bin "$CARGO_TARGET_DIR/release/lakehouse" --out bench/latency/results.md "$@"
