# Sourced by the scripts that build: the persistent target directory outside the clone, so a
# fresh clone (CI) builds incrementally.
#
# Cargo fingerprints workspace crates by paths relative to the workspace, so two checkouts that
# share a target directory would each take the other's build of our crates as up to date. When the
# target directory was last used by another checkout, our crates' artifacts are removed first
# (dependencies stay cached).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lakehouse/target}"
mkdir -p "$CARGO_TARGET_DIR"
lakehouse_checkout=$(pwd -P)
lakehouse_stamp="$CARGO_TARGET_DIR/.lakehouse-checkout"
if [ -f "$lakehouse_stamp" ] && [ "$(cat "$lakehouse_stamp")" != "$lakehouse_checkout" ]; then
  echo "target dir last built $(cat "$lakehouse_stamp"); rebuilding the workspace crates" >&2
  lakehouse_packages=$(cargo metadata --no-deps --format-version 1 --locked \
    | python3 -c 'import json, sys; print(" ".join("-p " + p["name"] for p in json.load(sys.stdin)["packages"]))')
  # shellcheck disable=SC2086
  cargo clean -q $lakehouse_packages
fi
echo "$lakehouse_checkout" > "$lakehouse_stamp"
