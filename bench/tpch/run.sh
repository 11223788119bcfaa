#!/usr/bin/env bash
# TPC-H benchmark: the 22 queries at scale factor SCALE (default 1) through Lakehouse over Flight
# SQL (ADBC client), beside datafusion-python and DuckDB in-process on the same Parquet files.
# Prints a Markdown table (medians of 3 timed runs after one warm-up, per engine and query) and
# writes it to bench/tpch/results-sf<SCALE>.md. A benchmark, not a test: it builds the release
# binary (~15-30 min the first time) and is not run by CI.
#   bench/tpch/run.sh [SCALE]
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=${1:-1}
. bench/tpch-setup.sh
# Fresh Lakehouse storage each run, so the ingest is measured too.
rm -rf "$work/lakehouse"
exec "$venv/bin/python" bench/tpch/bench.py --scale "$scale" --data "$work/parquet" \
  --storage "$work/lakehouse" --bin "$lakehouse" \
  --out "bench/tpch/results-sf$scale.md"
