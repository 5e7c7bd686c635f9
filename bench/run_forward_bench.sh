#!/usr/bin/env bash
# Forward-pass benchmark: rptq (bench_forward) vs PyTorch eager fp32 (torch_forward.py) at seqlen 512, batch 1,
# on tiny-opt-16m and a random-weight OPT-125m, at nproc threads and 1 thread. Builds nothing.
#
#   bench/run_forward_bench.sh [BUILD_DIR]      (default: build)
#
# Environment:
#   RPTQ_BENCH_NAME       results file suffix (default: the hostname): bench/results/forward-cpu-NAME.txt
#   RPTQ_BENCH_OUT        write the raw output to this file instead
#   RPTQ_BENCH_REPEATS    timed repeats per run (default 7), RPTQ_BENCH_WARMUP warm-up runs (default 2)
#   RPTQ_BENCH_THREADS    thread counts (default: "$(nproc) 1")
#   RPTQ_BENCH_QUIET_WAIT before each run, wait up to this many seconds (default 300) for the CPUs to be idle
#                         (< 10% busy for 2 s): other work on a small machine wrecks the timings. Each run's marker
#                         line records the wait and the CPU busy/steal share in the second before and after it.
#   RPTQ_BENCH_CORETYPES  OpenBLAS kernel sets to run under: "default" = OPENBLAS_CORETYPE unset (what users get:
#                         rptq then chooses the kernels from CPUID, torch's OpenBLAS from the CPU model), any other
#                         word is exported as OPENBLAS_CORETYPE for both engines. Default: "default", plus the core
#                         type rptq chooses when torch's OpenBLAS picks a different one by itself (Debian's 0.3.21
#                         falls back to the SSE3 "Prescott" kernels on CPUs newer than it), so that PyTorch is also
#                         measured with the same kernels as rptq.
#   RPTQ_TINY_MODEL       tiny-opt-16m folder (default: ../shared/models/tiny-opt-16m beside the checkout)
#   RPTQ_OPT125_DIR       random OPT-125m folder, created by make_random_opt.py when missing
#                         (default /tmp/rptq-bench/opt-125m-random)
#   PYTHON                interpreter with torch and numpy (default /usr/bin/python3)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$REPO/build}
[[ $BUILD = /* ]] || BUILD=$PWD/$BUILD
BENCH=$BUILD/bench/bench_forward
PYTHON=${PYTHON:-/usr/bin/python3}
[[ -x $BENCH ]] || { echo "no $BENCH: build the bench_forward target first" >&2; exit 1; }

TINY=${RPTQ_TINY_MODEL:-$REPO/../shared/models/tiny-opt-16m}
[[ -f $TINY/config.json ]] || TINY=/work/shared/models/tiny-opt-16m
[[ -f $TINY/config.json ]] || { echo "tiny-opt-16m not found (set RPTQ_TINY_MODEL)" >&2; exit 1; }
TINY=$(cd "$TINY" && pwd)
OPT125=${RPTQ_OPT125_DIR:-/tmp/rptq-bench/opt-125m-random}
if [[ ! -f $OPT125/model.safetensors || ! -f $OPT125/config.json ]]; then
  "$PYTHON" "$REPO/bench/make_random_opt.py" "$OPT125" >&2
fi

NAME=${RPTQ_BENCH_NAME:-$(hostname)}
OUT=${RPTQ_BENCH_OUT:-$REPO/bench/results/forward-cpu-$NAME.txt}
REPEATS=${RPTQ_BENCH_REPEATS:-7}
WARMUP=${RPTQ_BENCH_WARMUP:-2}
NPROC=$(nproc)
THREADS=${RPTQ_BENCH_THREADS:-"$NPROC 1"}
QUIET_WAIT=${RPTQ_BENCH_QUIET_WAIT:-300}
SEQLEN=512
BATCH=1
TMP=$(mktemp -d /tmp/rptq-bench-run.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# The OpenBLAS kernels each engine gets when OPENBLAS_CORETYPE is unset: rptq chooses them itself from CPUID
# (rptq::blas); Debian's torch loads the pthreads OpenBLAS, which picks by CPU model and may fall back to Prescott.
torch_openblas_py='
import ctypes, os, torch
lib = next((l.split()[-1] for l in open("/proc/self/maps") if "openblas" in l and ".so" in l.split()[-1]), None)
if lib:
    ob = ctypes.CDLL(lib)
    ob.openblas_get_config.restype = ctypes.c_char_p
    ob.openblas_get_corename.restype = ctypes.c_char_p
    print(ob.openblas_get_corename().decode(), "|", os.path.realpath(lib), "|", ob.openblas_get_config().decode())
else:
    print("none | no OpenBLAS loaded by torch |")
'
rptq_core=$(env -u OPENBLAS_CORETYPE "$BENCH" --print-config | sed -n 's/.*"corename":"\([^"]*\)".*/\1/p')
rptq_backend=$("$BENCH" --print-config | sed -n 's/.*"forward_gemm_backend":"\([^"]*\)".*/\1/p')
torch_core=$(env -u OPENBLAS_CORETYPE "$PYTHON" -c "$torch_openblas_py" | cut -d' ' -f1)
if [[ -z ${RPTQ_BENCH_CORETYPES:-} ]]; then
  RPTQ_BENCH_CORETYPES=default
  if [[ -n $rptq_core && $rptq_core != "$torch_core" ]]; then RPTQ_BENCH_CORETYPES="default $rptq_core"; fi
fi

mkdir -p "$(dirname "$OUT")"
exec > >(tee "$OUT") 2>&1

source "$REPO/bench/quiet_cpu.sh"

with_core() {  # with_core CORETYPE CMD...: runs CMD with OPENBLAS_CORETYPE unset ("default") or set
  local core=$1; shift
  if [[ $core == default ]]; then env -u OPENBLAS_CORETYPE "$@"; else OPENBLAS_CORETYPE=$core "$@"; fi
}

echo "# RPTQ Workbench forward-pass benchmark (raw output of bench/run_forward_bench.sh)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "# machine: $NAME (hostname $(hostname)), kernel $(uname -r)"
echo "# git: $(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
echo "# build: $BUILD ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt" 2>/dev/null), RPTQ_NATIVE=$(sed -n 's/^RPTQ_NATIVE:BOOL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null))"
echo "# runs: seqlen $SEQLEN, batch $BATCH, threads {$THREADS}, $WARMUP warm-up + $REPEATS timed forwards per run, OpenBLAS core types {$RPTQ_BENCH_CORETYPES}"
echo "# models: $TINY ; $OPT125"
echo "## lscpu | head -20"
lscpu | head -20
echo "## model name: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); cores (nproc): $NPROC"
echo "## load before: $(cat /proc/loadavg)"
echo "## rptq's OpenBLAS (openblas_get_config), per core type"
for core in $RPTQ_BENCH_CORETYPES; do
  echo "# core type $core: $(with_core "$core" "$BENCH" --print-config)"
done
echo "## sgemm 2048^3 at $NPROC threads with the kernels rptq chooses (OPENBLAS_CORETYPE unset) and with OpenBLAS's own"
echo "## choice on this CPU as torch's OpenBLAS reports it (${torch_core:-?}), exported as OPENBLAS_CORETYPE"
env -u OPENBLAS_CORETYPE "$BENCH" --sgemm-only --threads "$NPROC"
if [[ -n $torch_core && $torch_core != none && $torch_core != "$rptq_core" ]]; then
  OPENBLAS_CORETYPE=$torch_core "$BENCH" --sgemm-only --threads "$NPROC"
fi
echo "## PyTorch"
OMP_NUM_THREADS=$NPROC OPENBLAS_NUM_THREADS=$NPROC "$PYTHON" -c '
import os, torch
print("torch", torch.__version__)
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
print(torch.__config__.parallel_info())'
for core in $RPTQ_BENCH_CORETYPES; do
  echo "# torch's OpenBLAS under core type $core: corename | library | config: $(with_core "$core" "$PYTHON" -c "$torch_openblas_py")"
done
echo

for core in $RPTQ_BENCH_CORETYPES; do
  echo "######## OpenBLAS core type: $core"
  # Correctness of the benchmark itself: the PyTorch forward must give rptq's logits on the same tokens.
  marker "\"coretype\":\"$core\",\"model\":\"tiny-opt-16m\",\"what\":\"logits check\""
  for shape in "512 1" "128 2"; do
    set -- $shape
    with_core "$core" "$BENCH" "$TINY" --seqlen "$1" --batch "$2" --threads "$NPROC" --repeats 1 --warmup 0 \
      --no-ceiling --dump-logits "$TMP/tiny.logits" | grep -E '"kind":"logits_dump"'
    with_core "$core" "$PYTHON" "$REPO/bench/torch_forward.py" "$TINY" --threads "$NPROC" --no-bench \
      --check-logits "$TMP/tiny.logits"
  done
  for model in "$TINY" "$OPT125"; do
    label=$(basename "$model")
    for t in $THREADS; do
      echo
      marker "\"coretype\":\"$core\",\"model\":\"$label\",\"threads\":$t,\"engine\":\"rptq\""
      with_core "$core" "$BENCH" "$model" --seqlen $SEQLEN --batch $BATCH --threads "$t" --repeats "$REPEATS" \
        --warmup "$WARMUP" --profile --label "$label"
      after
      if [[ $rptq_backend != openblas ]]; then
        # The same binary with its GEMMs on OpenBLAS, for comparison.
        marker "\"coretype\":\"$core\",\"model\":\"$label\",\"threads\":$t,\"engine\":\"rptq/openblas\""
        with_core "$core" env RPTQ_GEMM=openblas "$BENCH" "$model" --seqlen $SEQLEN --batch $BATCH --threads "$t" \
          --repeats "$REPEATS" --warmup "$WARMUP" --no-ceiling --label "$label"
        after
      fi
      marker "\"coretype\":\"$core\",\"model\":\"$label\",\"threads\":$t,\"engine\":\"torch\""
      with_core "$core" env -u OMP_WAIT_POLICY "$PYTHON" "$REPO/bench/torch_forward.py" "$model" --seqlen $SEQLEN \
        --batch $BATCH --threads "$t" --repeats "$REPEATS" --warmup "$WARMUP" --label "$label"
      after
      if ((t > 1)); then
        # Debian's torch runs its own OpenMP pool beside the pthreads OpenBLAS pool; with more than one thread the
        # two spin against each other unless OpenMP threads sleep when idle. Measure torch that way too.
        marker "\"coretype\":\"$core\",\"model\":\"$label\",\"threads\":$t,\"engine\":\"torch OMP_WAIT_POLICY=PASSIVE\""
        with_core "$core" env OMP_WAIT_POLICY=PASSIVE "$PYTHON" "$REPO/bench/torch_forward.py" "$model" \
          --seqlen $SEQLEN --batch $BATCH --threads "$t" --repeats "$REPEATS" --warmup "$WARMUP" --label "$label"
        after
      fi
    done
  done
done
echo
echo "## load after: $(cat /proc/loadavg)"
echo
sleep 1  # let tee write everything before the summary reads the file back
"$PYTHON" "$REPO/bench/summarize_forward.py" "$OUT"
