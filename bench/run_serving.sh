#!/usr/bin/env bash
# The serving target (docs/serving.md) against RPTQ's own W4A16 on one model: FP, RPTQ W4A16 (per-cluster weight
# groups, every reorder), and the compressed-tensors serving quantization with BF16, F16 and F32 scales (and FP8 KV
# scales per tensor and per head), each compared with the FP model on the same windows (ppl, KL, top-1). Then the
# F32-scale serving export, read by tools/compressed-tensors/scale_census.py: how many of its scales F16 would
# flush or round and BF16 would round. Builds nothing; writes the raw outputs into OUT_DIR.
#
#   bench/run_serving.sh [BUILD_DIR]
# Environment: RPTQ_MODEL (default ../shared/models/tiny-opt-16m), RPTQ_GROUP (128; the serving group size),
#   RPTQ_CALIB (../shared/data/c4-calib.txt), RPTQ_EVAL (../shared/data/wikitext2-test.txt), RPTQ_SEQLEN (512),
#   RPTQ_SAMPLES (128), RPTQ_MAX_WINDOWS (40), RPTQ_OUT_DIR (docs/results/serving/<model>), RPTQ_PYTHON (a Python
#   with safetensors and numpy, for the scale census; skipped without one), RPTQ_STATS (a statistics file to use
#   instead of calibrating), RPTQ_KV_MODES (the FP8 KV rows: "tensor head" by default, "" for none),
#   RPTQ_MORE_GROUPS (more serving group sizes, BF16 scales, e.g. "64 32"), RPTQ_RPTQ_GROUPS (RPTQ's own W4A16 with
#   uniform groups of these sizes, every reorder kept: not servable, it separates the reorders from the grouping),
#   RPTQ_ACT_ORDER (1: also the serving row with GPTQ's act-order)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$REPO/build}
RPTQ=$BUILD/app/rptq
MODEL=${RPTQ_MODEL:-$REPO/../shared/models/tiny-opt-16m}
GROUP=${RPTQ_GROUP:-128}
CALIB=${RPTQ_CALIB:-$REPO/../shared/data/c4-calib.txt}
EVAL=${RPTQ_EVAL:-$REPO/../shared/data/wikitext2-test.txt}
SEQLEN=${RPTQ_SEQLEN:-512}
SAMPLES=${RPTQ_SAMPLES:-128}
WINDOWS=${RPTQ_MAX_WINDOWS:-40}
NAME=$(basename "$MODEL")
OUT=${RPTQ_OUT_DIR:-$REPO/docs/results/serving/$NAME}
PY=${RPTQ_PYTHON:-python3}
TMP=$(mktemp -d /tmp/rptq-serving.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
export RPTQ_HISTORY=off
{
  echo "# serving target on $NAME: calibration $(basename "$CALIB") ($SAMPLES x $SEQLEN, seed 2), evaluation $(basename "$EVAL") ($WINDOWS windows of $SEQLEN), serving group $GROUP"
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) git $(git -C "$REPO" rev-parse --short HEAD) $(lscpu | grep 'Model name' | sed 's/  */ /g'), $(nproc) cores"
} > "$OUT/README.txt"
if [ -n "${RPTQ_STATS:-}" ]; then
  STATS=$RPTQ_STATS
  echo "# statistics: $STATS (sha256 $(sha256sum "$STATS" | cut -d' ' -f1)), not recalibrated" >> "$OUT/README.txt"
else
  STATS=$TMP/stats.h5
  "$RPTQ" calibrate "$MODEL" --data "$CALIB" --samples "$SAMPLES" --seqlen "$SEQLEN" --out "$STATS" >> "$OUT/README.txt" 2>&1
fi
compare() {  # NAME ARGS...
  local name=$1
  shift
  echo "== $name: rptq compare $*" >> "$OUT/README.txt"
  "$RPTQ" compare "$MODEL" --stats "$STATS" --data "$EVAL" --seqlen "$SEQLEN" --max-windows "$WINDOWS" --json "$@" \
    > "$OUT/$name.json" 2>> "$OUT/README.txt"
}
compare rptq-W4A16 --preset W4A16
compare serving-g$GROUP-bf16 --serving compressed-tensors --weight-group "$GROUP" --scale-dtype bf16
compare serving-g$GROUP-f16 --serving compressed-tensors --weight-group "$GROUP" --scale-dtype f16
compare serving-g$GROUP-f32 --serving compressed-tensors --weight-group "$GROUP" --scale-dtype f32
for g in ${RPTQ_MORE_GROUPS:-}; do
  compare serving-g$g-bf16 --serving compressed-tensors --weight-group "$g" --scale-dtype bf16
done
for g in ${RPTQ_RPTQ_GROUPS:-}; do
  compare rptq-W4A16-g$g --preset W4A16 --weight-group "$g"
done
if [ "${RPTQ_ACT_ORDER:-0}" = 1 ]; then
  compare serving-g$GROUP-bf16-act-order --serving compressed-tensors --weight-group "$GROUP" --act-order
fi
for k in ${RPTQ_KV_MODES-tensor head}; do
  compare serving-g$GROUP-bf16-kvfp8-$k --serving compressed-tensors --weight-group "$GROUP" --kv-fp8 "$k"
done
# The scale census of the F32-scale export (what F16 and BF16 storage would do to its scales).
"$RPTQ" export "$MODEL" --stats "$STATS" --format compressed-tensors --weight-group "$GROUP" --scale-dtype f32 \
  --out "$TMP/served-f32" >> "$OUT/README.txt" 2>&1
if "$PY" -c 'import numpy, safetensors' 2> /dev/null; then
  "$PY" "$REPO/tools/compressed-tensors/scale_census.py" "$TMP/served-f32" > "$OUT/scale-census.txt"
else
  echo "no Python with numpy and safetensors: scale census skipped" > "$OUT/scale-census.txt"
fi
# One line per setting: ppl FP, ppl quantized, KL, top-1 agreement.
for f in "$OUT"/*.json; do
  python3 - "$f" <<'EOF'
import json, os, sys
j = json.load(open(sys.argv[1]))
print(f"{os.path.basename(sys.argv[1])[:-5]:40s} ppl_fp {j['ppl_fp']:.3f} ppl_q {j['ppl_q']:.3f} kl {j['kl']:.5f} "
      f"kl_p99 {j['kl_p99']:.4f} top1 {100 * j['top1_agreement']:.2f}%")
EOF
done > "$OUT/summary.txt"
cat "$OUT/summary.txt"
