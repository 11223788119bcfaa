#!/usr/bin/env bash
# Builds and runs the Lakehouse server on the embedded default: local storage ./lakehouse-data,
# listening on 127.0.0.1:50051, with the TPC-H sample at scale 0.1 (created on first start),
# and MiniLM as the in-process embedding model (scripts/models.sh puts it in place; the
# generated config ~/.cache/lakehouse/serve.toml names it), so embed(), vector_search with a
# text and `lakehouse ingest --embed` work without a model server. Chat (rag, ai, nl2sql) needs
# an Ollama or OpenAI-compatible server in your own config (docs/ai.md).
# Extra arguments go to `lakehouse serve` (see `--help`); with your own --config, that file is
# used instead of the generated one.
#
# Build times, measured on 2 cores (2026-12-03, see README): the first (cold) build of the debug
# binary took 20 min 53 s on a fresh machine (25 min 37 s on a slower day; cargo shows the
# crates as they compile); later builds take seconds, and a warm start is serving in about
# 1 second.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/cargo-env.sh
if [ ! -x "$CARGO_TARGET_DIR/debug/lakehouse" ]; then
  echo "serve.sh: first build of lakehouse (20-26 min on 2 cores; later builds take seconds)" >&2
else
  echo "serve.sh: building lakehouse (incremental: seconds unless the sources changed)" >&2
fi
cargo build --locked --bin lakehouse
config=()
case " $* ${LAKEHOUSE_CONFIG:+--config} " in
  *" --config"*) ;;
  *)
    minilm=$(scripts/models.sh)
    generated="$HOME/.cache/lakehouse/serve.toml"
    cat > "$generated" <<TOML
# Written by scripts/serve.sh: MiniLM (384-d) embeds in process.
[embedding]
default_model = "minilm"
[embedding.models.minilm]
provider = "local"
path = "$minilm"
TOML
    config=(--config "$generated")
    echo "serve.sh: embeddings by MiniLM in process ($generated)" >&2
    ;;
esac
echo "serve.sh: starting on 127.0.0.1:50051 (the first start writes the TPC-H sample)" >&2
exec "$CARGO_TARGET_DIR/debug/lakehouse" serve --sample tpch:0.1 "${config[@]}" "$@"
