#!/usr/bin/env bash
# Every RPTQ preset on one model, calibrated on one text and evaluated on another, plus W4A4 with one cluster per
# tap (plain per-tensor quantization) to show what reordering buys. Builds nothing; writes the raw output.
#
#   bench/run_presets.sh [BUILD_DIR]
# Environment: RPTQ_MODEL (default ../shared/models/tiny-opt-16m), RPTQ_CALIB (../shared/data/c4-calib.txt),
#   RPTQ_EVAL (../shared/data/wikitext2-test.txt), RPTQ_SEQLEN (512), RPTQ_SAMPLES (128), RPTQ_MAX_WINDOWS (40),
#   RPTQ_OUT (bench/results/presets-<model>.txt), RPTQ_ABLATIONS (1: the softmax, RTN, grid and --no-sequential
#   rows), RPTQ_REMEDIES (0; 1: the W4A8 remedies for LLaMA-family activations: --fp-prefix 1, --dynamic,
#   per-token and 16-bit overrides of the o_proj / down_proj inputs, and W16A8 with and without per-token ranges),
#   RPTQ_STATS (a statistics file to use instead of calibrating; its sha256 goes into the output)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$REPO/build}
RPTQ=$BUILD/app/rptq
MODEL=${RPTQ_MODEL:-$REPO/../shared/models/tiny-opt-16m}
CALIB=${RPTQ_CALIB:-$REPO/../shared/data/c4-calib.txt}
EVAL=${RPTQ_EVAL:-$REPO/../shared/data/wikitext2-test.txt}
SEQLEN=${RPTQ_SEQLEN:-512}
SAMPLES=${RPTQ_SAMPLES:-128}
WINDOWS=${RPTQ_MAX_WINDOWS:-40}
NAME=$(basename "$MODEL")
OUT=${RPTQ_OUT:-$REPO/bench/results/presets-$NAME.txt}
TMP=$(mktemp -d /tmp/rptq-presets.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
{
  echo "# rptq presets on $NAME: calibration $(basename "$CALIB") ($SAMPLES x $SEQLEN, seed 2), evaluation $(basename "$EVAL") ($WINDOWS windows of $SEQLEN)"
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) git $(git -C "$REPO" rev-parse --short HEAD) $(lscpu | grep 'Model name' | sed 's/  */ /g'), $(nproc) cores"
  if [ -n "${RPTQ_STATS:-}" ]; then
    echo "# statistics: $RPTQ_STATS (sha256 $(sha256sum "$RPTQ_STATS" | cut -d' ' -f1)), not recalibrated"
    ln -s "$(cd "$(dirname "$RPTQ_STATS")" && pwd)/$(basename "$RPTQ_STATS")" "$TMP/stats.h5"
  else
    "$RPTQ" calibrate "$MODEL" --data "$CALIB" --samples "$SAMPLES" --seqlen "$SEQLEN" --out "$TMP/stats.h5" --json
  fi
  run() {  # label, extra args...
    local label=$1; shift
    echo "## $label: rptq compare $*"
    "$RPTQ" compare "$MODEL" --stats "$TMP/stats.h5" --data "$EVAL" --seqlen "$SEQLEN" --max-windows "$WINDOWS" "$@" --json \
      | python3 -c "import json,sys; j=json.load(sys.stdin); j['label']='$label'; print(json.dumps(j))"
  }
  for p in W16A16 W4A16 W4A8 W4A4 W4A4KV W4A3KV W3A3KV; do run "$p" --preset "$p"; done
  run "W4A4 per-tensor (1 cluster per tap)" --preset W4A4 --clusters 1
  if [ "${RPTQ_REMEDIES:-0}" = 1 ]; then
    run "W4A8 per-tensor (1 cluster per tap)" --preset W4A8 --clusters 1
    run "W4A8, first token FP (--fp-prefix 1)" --preset W4A8 --fp-prefix 1
    run "W4A8, dynamic ranges (--dynamic)" --preset W4A8 --dynamic
    run "W4A8, per-token ranges on every tap but K/V" --preset W4A8 --override "per-token"
    run "W4A8, o_proj and down_proj inputs per-token" --preset W4A8 --override "attn_output,ffn_hidden:per-token"
    run "W4A8, o_proj and down_proj inputs FP" --preset W4A8 --override "attn_output,ffn_hidden:abits=16"
    run "W16A8" --wbits 16 --abits 8
    run "W16A8, per-token ranges on every tap but K/V" --wbits 16 --abits 8 --override "per-token"
  fi
  [ "${RPTQ_ABLATIONS:-1}" = 1 ] || exit 0
  run "W4A8 with FP softmax" --preset W4A8 --softmax-bits 16
  run "W4A4 with FP softmax" --preset W4A4 --softmax-bits 16
  run "W4A16 RTN weights" --preset W4A16 --weights rtn
  run "W4A4 RTN weights" --preset W4A4 --weights rtn
  run "W4A4 reference grid" --preset W4A4 --grid reference
  run "W4A4 FP-model ranges (--no-sequential)" --preset W4A4 --no-sequential
} | tee "$OUT"
python3 - "$OUT" <<'PY' | tee -a "$OUT"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{') and '"label"' in l]
print("\n| setting | ppl FP | ppl quantized | KL (nats/token) | top-1 agreement |")
print("|---|---|---|---|---|")
for j in rows:
    print(f"| {j['label']} | {j['ppl_fp']:.3f} | {j['ppl_q']:.3f} | {j['kl']:.5f} | {100*j['top1_agreement']:.2f}% |")
PY
