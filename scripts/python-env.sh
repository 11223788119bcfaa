#!/usr/bin/env bash
# Creates (or reuses) the Python virtualenv for the client tests and prints its path.
# The venv lives outside the clone (default ~/.cache/lakehouse/venv, override with
# LAKEHOUSE_VENV) and is rebuilt only when tests/python/requirements.txt changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${LAKEHOUSE_VENV:-$HOME/.cache/lakehouse/venv}
req="$root/tests/python/requirements.txt"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements-sha256" 2>/dev/null)" != "$want" ]; then
  echo "setting up Python venv in $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  echo "$want" > "$venv/.requirements-sha256"
fi
echo "$venv"
