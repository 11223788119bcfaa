#!/usr/bin/env bash
# Ingest benchmark: TPC-H SF 1 lineitem.csv and a 20-column NDJSON file of similar size turned
# into Parquet by `lakehouse ingest` (release server, fresh storage per file), DuckDB
# (`COPY (SELECT * FROM read_csv_auto(...)) TO ... (FORMAT parquet)`) and datafusion-python
# (`read_csv(...).write_parquet(...)`); then `SELECT * FROM lineitem` streamed to ADBC and to
# pyarrow.flight. Prints a Markdown table and writes it to bench/ingest/results.md.
# A benchmark, not a test: it builds the release binary and is not run by CI.
#   bench/ingest/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh
. scripts/cargo-env.sh
cargo build --release --locked --bin lakehouse
venv=$(scripts/python-env.sh bench/ingest/requirements.txt "$HOME/.cache/lakehouse/venv-bench")
work="$HOME/.cache/lakehouse/bench/ingest"
mkdir -p "$work"
exec "$venv/bin/python" bench/ingest/bench.py --work "$work" \
  --tpchgen "$venv/bin/tpchgen-cli" --bin "$CARGO_TARGET_DIR/release/lakehouse" \
  --out bench/ingest/results.md
