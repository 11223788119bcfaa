#!/usr/bin/env bash
# Row-level change benchmark (issue 11): UPDATE of one row by key in a 15,000-row table and in
# TPC-H lineitem, DELETE of 1 % of lineitem, MERGE of 10,000 changed orders, 1,000 single-row
# appends then OPTIMIZE, and a point query on a many-file table against a 10-file one — through
# Flight SQL (ADBC) against the release binary, beside DuckDB in-process on the same rows where
# the operation applies. Also the fsync cost per commit (strace -c on the server). Prints a
# Markdown table and writes bench/mutations/results-sf<SCALE>.md. A benchmark, not a test: it
# builds the release binary (~55 min cold on 2 cores) and is not run by CI.
#   bench/mutations/run.sh [SCALE] [MANY_FILES]     (defaults: 1 and 10000)
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=${1:-1}
many=${2:-10000}
. bench/tpch-setup.sh
rm -rf "$work/mutations"
exec "$venv/bin/python" bench/mutations/bench.py --scale "$scale" --many-files "$many" \
  --data "$work/parquet" --storage "$work/mutations" --bin "$lakehouse" \
  --out "bench/mutations/results-sf$scale.md"
