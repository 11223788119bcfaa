# Sourced by the TPC-H based benchmarks (bench/tpch, bench/mutations, bench/distributed) with
# `scale` set: builds the release binary, makes the benchmark venv and the TPC-H Parquet files
# at that scale (tpchgen-cli, kept in ~/.cache/lakehouse/bench/tpch-sf<scale>/parquet). Sets
# `venv` (the venv's directory), `work` (the scale's directory) and `lakehouse` (the binary).
scripts/setup.sh
. scripts/cargo-env.sh
cargo build --release --locked --bin lakehouse
lakehouse="$CARGO_TARGET_DIR/release/lakehouse"
venv=$(scripts/python-env.sh bench/tpch/requirements.txt "$HOME/.cache/lakehouse/venv-bench")
work="$HOME/.cache/lakehouse/bench/tpch-sf$scale"
if [ ! -f "$work/parquet/lineitem.parquet" ]; then
  mkdir -p "$work/parquet"
  "$venv/bin/tpchgen-cli" parquet -s "$scale" --output-dir "$work/parquet"
fi
