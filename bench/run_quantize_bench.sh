#!/usr/bin/env bash
# Quantization pipeline benchmark: `rptq export` of SmolLM2-135M-Instruct (the real LLM of the test bed) with GPTQ
# on 32 x 512 C4 calibration windows, the preset(s) timed one after the other on an idle machine, with the
# pipeline's own phase times (measure / cluster / weights / advance) and, in the same run, the FP forward pass and
# the sgemm ceiling (bench_forward) as the yardstick. Builds nothing.
#
#   bench/run_quantize_bench.sh [BUILD_DIR]      (default: build)
#
# Environment:
#   RPTQ_BENCH_NAME        results file suffix (default: the hostname): bench/results/quantize-smollm2-NAME.txt
#   RPTQ_BENCH_OUT         write the raw output to this file instead
#   RPTQ_SMOLLM2_DIR       the converted model (default: what scripts/fetch-models.sh makes in the XDG cache)
#   RPTQ_QBENCH_STATS      statistics file; made with `rptq calibrate` (32 x 512, C4) when missing
#                          (default /tmp/rptq-bench/smollm2-c4-32x512.h5)
#   RPTQ_QBENCH_DATA       calibration text (default ../shared/data/c4-calib.txt beside the checkout)
#   RPTQ_QBENCH_PRESETS    presets to time (default "W4A8 W4A16")
#   RPTQ_QBENCH_REPEATS    runs per preset (default 1)
#   RPTQ_BENCH_THREADS     threads (default nproc)
#   RPTQ_BENCH_QUIET_WAIT  before each run, wait up to this many seconds (default 300) for idle CPUs
#   RPTQ_QBENCH_BASELINE   another rptq binary (e.g. an older commit's build) to time the same way, before ours
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$REPO/build}
[[ $BUILD = /* ]] || BUILD=$PWD/$BUILD
RPTQ=$BUILD/app/rptq
BENCH=$BUILD/bench/bench_forward
[[ -x $RPTQ ]] || { echo "no $RPTQ: build first" >&2; exit 1; }
[[ -x $BENCH ]] || { echo "no $BENCH: build the bench_forward target first" >&2; exit 1; }
MODEL=${RPTQ_SMOLLM2_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rptq/models/smollm2-135m-instruct}
[[ -f $MODEL/config.json ]] || { echo "no SmolLM2 folder at $MODEL: run scripts/fetch-models.sh" >&2; exit 1; }
DATA=${RPTQ_QBENCH_DATA:-$REPO/../shared/data/c4-calib.txt}
[[ -f $DATA ]] || DATA=/work/shared/data/c4-calib.txt
STATS=${RPTQ_QBENCH_STATS:-/tmp/rptq-bench/smollm2-c4-32x512.h5}
PRESETS=${RPTQ_QBENCH_PRESETS:-"W4A8 W4A16"}
REPEATS=${RPTQ_QBENCH_REPEATS:-1}
NPROC=$(nproc)
THREADS=${RPTQ_BENCH_THREADS:-$NPROC}
QUIET_WAIT=${RPTQ_BENCH_QUIET_WAIT:-300}
NAME=${RPTQ_BENCH_NAME:-$(hostname)}
OUT=${RPTQ_BENCH_OUT:-$REPO/bench/results/quantize-smollm2-$NAME.txt}
TMP=$(mktemp -d /tmp/rptq-qbench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

if [[ ! -f $STATS ]]; then
  [[ -f $DATA ]] || { echo "no calibration text $DATA (set RPTQ_QBENCH_DATA)" >&2; exit 1; }
  mkdir -p "$(dirname "$STATS")"
  "$RPTQ" calibrate "$MODEL" --data "$DATA" --samples 32 --seqlen 512 --out "$STATS" >&2
fi

mkdir -p "$(dirname "$OUT")"
exec > >(tee "$OUT") 2>&1

source "$REPO/bench/quiet_cpu.sh"

echo "# RPTQ Workbench quantization benchmark (raw output of bench/run_quantize_bench.sh)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "# machine: $NAME (hostname $(hostname)), kernel $(uname -r)"
echo "# git: $(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
echo "# build: $BUILD ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt" 2>/dev/null))"
echo "# model: $MODEL"
echo "# stats: $STATS (sha256 $(sha256sum "$STATS" | cut -c1-16)...)"
echo "# presets: {$PRESETS} x $REPEATS, threads $THREADS"
echo "## lscpu | head -20"
lscpu | head -20
echo "## cores (nproc): $NPROC; load before: $(cat /proc/loadavg)"
echo "## rptq: $("$RPTQ" --version)"
"$RPTQ" inspect "$MODEL" --json 2>/dev/null | tr -d '\n' | sed 's/  */ /g' | cut -c1-600
echo

# The yardstick, same run: one FP forward of a 512-token window (layers + head) and the sgemm ceiling.
marker "\"what\":\"bench_forward\""
"$BENCH" "$MODEL" --seqlen 512 --batch 1 --threads "$THREADS" --repeats 5 --warmup 1 | grep '^{' | grep -v '"kind":"sgemm"'
after

BINARIES=("$RPTQ")
if [[ -n ${RPTQ_QBENCH_BASELINE:-} ]]; then
  echo "## baseline: $RPTQ_QBENCH_BASELINE: $("$RPTQ_QBENCH_BASELINE" --version)"
  BINARIES=("$RPTQ_QBENCH_BASELINE" "$RPTQ")
fi
for bin in "${BINARIES[@]}"; do
  for preset in $PRESETS; do
    for ((r = 1; r <= REPEATS; r++)); do
      marker "\"what\":\"export\",\"binary\":\"$bin\",\"preset\":\"$preset\",\"repeat\":$r"
      /usr/bin/time -f '{"kind":"time","wall_s":%e,"user_s":%U,"sys_s":%S,"max_rss_kb":%M}' -o "$TMP/time.json" \
        "$bin" export "$MODEL" --stats "$STATS" --preset "$preset" --out "$TMP/q.h5" --force --json \
        --threads "$THREADS" > "$TMP/out.json"
      python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(json.dumps({"kind":"export","binary":sys.argv[2],"preset":j["preset"],"quantize_seconds":j["quantize_seconds"],"quantize_phases":j.get("quantize_phases"),"bytes":j["bytes"],"description":j["description"]}))' "$TMP/out.json" "$bin"
      cat "$TMP/time.json"
      after
    done
  done
done
echo "## load after: $(cat /proc/loadavg)"
