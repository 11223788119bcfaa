#!/usr/bin/env bash
# Creates (or reuses) a Python virtualenv and prints its path.
#   scripts/python-env.sh [REQUIREMENTS [VENV]]
# Defaults: tests/python/requirements.txt into ~/.cache/lakehouse/venv (LAKEHOUSE_VENV overrides
# the default venv). The venv lives outside the clone and is rebuilt only when the requirements
# file changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
req=${1:-$root/tests/python/requirements.txt}
venv=${2:-${LAKEHOUSE_VENV:-$HOME/.cache/lakehouse/venv}}
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements-sha256" 2>/dev/null)" != "$want" ]; then
  echo "setting up Python venv in $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  echo "$want" > "$venv/.requirements-sha256"
fi
echo "$venv"
