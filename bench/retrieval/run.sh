#!/usr/bin/env bash
# Retrieval benchmark on documents nobody here wrote: the "Python HOWTOs" of Debian's
# python3.11-doc package (its HTML, as shipped), ingested with `lakehouse ingest --embed`
# (chunked, embedded by the real MiniLM model server). Queries are the pages' section titles;
# the relevant chunks are those of that section. Prints recall@1/5/10 and MRR for vector, BM25
# and hybrid search side by side, the same with reranking by the test chat model on a sample of
# the queries (--rerank-queries N, --rerank-candidates C), and the ingest throughput; writes
# bench/retrieval/results.md.
# A benchmark, not a test: CI does not run it.
#   bench/retrieval/run.sh [--chunk-size N] [--chunk-overlap M]
# PROFILE=release builds and runs the release binary (~35 min the first time); the default
# debug build gives the same rankings, and ingest is bound by the model server's embedding.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh
. scripts/cargo-env.sh
profile=${PROFILE:-debug}
if [ "$profile" = release ]; then
  cargo build --release --locked --bin lakehouse
else
  cargo build --locked --bin lakehouse
fi
LAKEHOUSE_MODELS_DIR=$(scripts/model-server/setup.sh)
export LAKEHOUSE_MODELS_DIR

# The corpus: python3.11-doc from the Debian archive (apt-get download needs no root).
work=$HOME/.cache/lakehouse/bench/retrieval
corpus=$work/python3.11-doc/usr/share/doc/python3.11/html/howto
if [ ! -d "$corpus" ]; then
  mkdir -p "$work" && rm -rf "$work/python3.11-doc"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  (cd "$work" && rm -f python3.11-doc_*.deb \
    && { apt-get download python3.11-doc 2>/dev/null \
         || { $sudo apt-get update -qq && apt-get download python3.11-doc 2>/dev/null; }; } \
    && dpkg-deb -x python3.11-doc_*.deb python3.11-doc)
fi

venv=$(scripts/python-env.sh)
exec "$venv/bin/python" bench/retrieval/bench.py --bin "$CARGO_TARGET_DIR/$profile/lakehouse" \
  --corpus "$corpus" --package "$(cd "$work" && ls python3.11-doc_*.deb)" \
  --work "$work/run" --out bench/retrieval/results.md "$@"
