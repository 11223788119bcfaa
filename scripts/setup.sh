#!/usr/bin/env bash
# Installs what building Lakehouse needs on a fresh Debian machine, only when missing:
#   - protoc (protobuf-compiler): regenerating/checking proto/ and Lance's build scripts;
#   - mold: the linker .cargo/config.toml selects (one linker choice for every build);
#   - strace: the durability test traces the server's fsync/link order with it;
#   - qpdf, img2pdf, graphviz-doc: the PDF tests encrypt a PDF, make an image-only one, and
#     ingest graphviz-doc's PDF manual pages.
# The Rust toolchain itself is expected (rustup); gcc/g++ are on every machine of this kind.
set -euo pipefail
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v mold >/dev/null 2>&1 || missing+=(mold)
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v qpdf >/dev/null 2>&1 || missing+=(qpdf)
command -v img2pdf >/dev/null 2>&1 || missing+=(img2pdf)
[ -e /usr/share/doc/graphviz/pdf/dot.1.pdf.gz ] || missing+=(graphviz-doc)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing ${missing[*]} (apt-get)" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi
