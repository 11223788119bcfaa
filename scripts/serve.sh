#!/usr/bin/env bash
# Builds and runs the Lakehouse server on the embedded default: local storage ./lakehouse-data,
# listening on 127.0.0.1:50051, with the TPC-H sample at scale 0.1 (created on first start).
# Extra arguments go to `lakehouse serve` (see `--help`). The first build takes ~35-40 minutes
# on 2 cores (measured 37 min 47 s on a fresh machine); later starts take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/cargo-env.sh
exec cargo run --locked --bin lakehouse -- serve --sample tpch:0.1 "$@"
