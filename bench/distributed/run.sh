#!/usr/bin/env bash
# Distributed TPC-H: the 22 queries at scale factor SCALE (default 1) through one coordinator
# with 0, 1, 2 and 4 `lakehouse worker` processes on this machine, all over one local storage
# directory (see bench.py). On one machine the cores do not grow with the workers, so this
# measures what distribution costs per query; from EXPLAIN ANALYZE's metrics it also records
# the bytes each stage reads and sends on, and projects SF 100 on 4 and 16 machines from them.
# Prints Markdown tables and writes them to bench/distributed/results-sf<SCALE>.md. A
# benchmark, not a test: it builds the release binary and is not run by CI.
#   bench/distributed/run.sh [SCALE] [WORKER COUNTS, default "0 1 2 4"]
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=${1:-1}
counts=${2:-0 1 2 4}
. bench/tpch-setup.sh
rm -rf "$work/lakehouse-distributed"
# shellcheck disable=SC2086
exec "$venv/bin/python" bench/distributed/bench.py --scale "$scale" --data "$work/parquet" \
  --storage "$work/lakehouse-distributed" --bin "$lakehouse" \
  --workers $counts --out "bench/distributed/results-sf$scale.md"
