#!/usr/bin/env bash
# GPU benchmark in one go, for a machine with an NVIDIA GPU (written for a short lease of an H100 / H200): builds
# rptq's CUDA targets, makes two random OPT models, runs the GPU test binaries, then for OPT-125m and OPT-1.3b shapes
# bench_cuda (GpuRunner evaluation and calibration tokens/s, --gemm: GEMMs against cuBLAS / cuBLASLt, memory
# ceilings, packed GEMV) and torch_cuda.py (PyTorch eager, the same work), and summarises. Raw output only.
#
#   bench/run_cuda_bench.sh [OUT_DIR]    (default: $OUT when set, else bench/results/cuda-HOST-DATE)
#
# Writes at most 7 files, all directly in OUT_DIR: run.log (progress and each step's result, as printed),
# machine.txt (nvidia-smi, nvcc, CPU, versions), build.log, tests.log, bench_cuda.txt and torch_cuda.txt (the raw
# JSON lines and tables of every run), summary.txt (bench/summarize_cuda.py). Every step runs under a timeout and
# the whole under a wall-clock budget: a step that no longer fits is skipped and says so. Nothing fails the script
# except a missing GPU (exit 3, after the build) or no build at all (exit 4, after the PyTorch runs); a failing
# test, benchmark or missing PyTorch is reported and the rest goes on.
#
# Environment (defaults in brackets):
#   RPTQ_BENCH_BUDGET_S   wall-clock budget of the whole script [480]
#   RPTQ_CUDA_BUILD       build folder [/tmp/rptq-cuda-build]; configured with CUDA, Release, CMAKE_CUDA_ARCHITECTURES
#   RPTQ_CUDA_ARCH        [90]                 and only bench_cuda plus the test_cuda_* targets are built
#   RPTQ_CUDA_PREBUILT    a folder with bin/bench_cuda (and bin/test_cuda_*, lib/*.so*) made elsewhere (e.g. by
#                         bench/pack_cuda_bench.sh), or a .tar.xz of one: used instead of building
#   RPTQ_CUDA_FALLBACK    the same, used only when the build fails (e.g. the machine lacks a build dependency)
#   RPTQ_BENCH_TESTS      1: build and run the test_cuda_* binaries first [1]; RPTQ_BENCH_TEST_TIMEOUT each [120]
#   RPTQ_BENCH_MODELS     random models under this folder [/tmp/rptq-bench]: opt-125m-random (F32), opt-1.3b-random
#                         (F16, 2.6 GB); made in the background while the build runs, kept when already there
#   RPTQ_BENCH_SIZES      which to run ["125m 1.3b"]
#   RPTQ_BENCH_125M_ARGS, RPTQ_BENCH_1_3B_ARGS  sizes given to both engines (see the defaults below)
#   RPTQ_BENCH_GEMM_ARGS  arguments of bench_cuda --gemm (see the default below)
#   RPTQ_BENCH_TORCH_ARGS extra arguments of torch_cuda.py (e.g. "--device cpu" for a check without a GPU)
#   PYTHON                interpreter with torch and numpy [python3]
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START=$(date +%s)
BUDGET=${RPTQ_BENCH_BUDGET_S:-480}
OUTDIR=${1:-${OUT:-$REPO/bench/results/cuda-$(hostname -s 2>/dev/null || echo host)-$(date -u +%Y%m%d-%H%M%S)}}
BUILD=${RPTQ_CUDA_BUILD:-/tmp/rptq-cuda-build}
ARCH=${RPTQ_CUDA_ARCH:-90}
PREBUILT=${RPTQ_CUDA_PREBUILT:-}
FALLBACK=${RPTQ_CUDA_FALLBACK:-}
RUN_TESTS=${RPTQ_BENCH_TESTS:-1}
TEST_TIMEOUT=${RPTQ_BENCH_TEST_TIMEOUT:-120}
MODELS=${RPTQ_BENCH_MODELS:-/tmp/rptq-bench}
SIZES=${RPTQ_BENCH_SIZES:-"125m 1.3b"}
PYTHON=${PYTHON:-python3}
NPROC=$(nproc 2>/dev/null || echo 4)
# Both engines get the same sizes (and so the same token ids). 125m: eval 8 x 2048 tokens in batches of 8;
# calibration 16 x 2048. 1.3b: calibration 8 x 2048 (its attention score ranges are computed on the host).
ARGS_125M=${RPTQ_BENCH_125M_ARGS:-"--eval-seqlen 2048 --eval-windows 8 --eval-batch 8 --warmup 1 --repeats 3 --calib-samples 16 --calib-seqlen 2048 --calib-batch 8 --calib-warmup 1 --calib-repeats 2"}
ARGS_1_3B=${RPTQ_BENCH_1_3B_ARGS:-"--eval-seqlen 2048 --eval-windows 8 --eval-batch 8 --warmup 1 --repeats 2 --calib-samples 8 --calib-seqlen 2048 --calib-batch 8 --calib-warmup 0 --calib-repeats 2"}
TORCH_ARGS=${RPTQ_BENCH_TORCH_ARGS:-}
GEMM_ARGS=${RPTQ_BENCH_GEMM_ARGS:-"--rows 2048 --min-ms 10 --samples 3 --lt-algos 4 --bw-mib 1024 --gemv-bits 4 --gemv-pool-mib 256"}

mkdir -p "$OUTDIR" || { echo "cannot create $OUTDIR" >&2; exit 1; }
OUTDIR=$(cd "$OUTDIR" && pwd)
RUNLOG=$OUTDIR/run.log MACHINE=$OUTDIR/machine.txt BUILDLOG=$OUTDIR/build.log TESTLOG=$OUTDIR/tests.log
RPTQLOG=$OUTDIR/bench_cuda.txt TORCHLOG=$OUTDIR/torch_cuda.txt SUMMARY=$OUTDIR/summary.txt
exec > >(tee -a "$RUNLOG") 2>&1

elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((BUDGET - $(elapsed))); }
say() { printf '[%4ds] %s\n' "$(elapsed)" "$*"; }
gpu_state() {  # one line of clocks, temperature, power and memory, when nvidia-smi answers
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used,utilization.gpu \
    --format=csv,noheader 2>/dev/null | sed 's/^/        gpu: sm, mem clock, temp, power, mem used, util = /'
}
# step NAME MIN_S MAX_S LOG CMD...: runs CMD with its output appended to LOG (with a header), under a timeout of
# min(MAX_S, time left - 10 s); skipped when less than MIN_S is left. Returns CMD's status (124: timed out,
# 125: skipped).
step() {
  local name=$1 min=$2 max=$3 log=$4
  shift 4
  local l
  l=$(left)
  if ((l < min)); then
    say "SKIP  $name: ${l}s left of the ${BUDGET}s budget, it needs at least ${min}s"
    echo "### SKIPPED $name (budget)" >>"$log"
    return 125
  fi
  local t=$((l - 10 < max ? l - 10 : max))
  say "START $name (timeout ${t}s)"
  {
    echo
    echo "### $name"
    echo "### command: $*"
    echo "### started $(date -u '+%H:%M:%S') UTC, elapsed $(elapsed)s"
  } >>"$log"
  local t0 rc
  t0=$(date +%s)
  timeout -k 10 "$t" "$@" >>"$log" 2>&1
  rc=$?
  echo "### exit status $rc after $(($(date +%s) - t0))s" >>"$log"
  if ((rc == 0)); then say "OK    $name ($(($(date +%s) - t0))s)"
  elif ((rc == 124 || rc == 137)); then say "TIMEOUT $name after $(($(date +%s) - t0))s (see $(basename "$log"))"
  else say "FAIL  $name: exit status $rc after $(($(date +%s) - t0))s (see $(basename "$log"))"
  fi
  gpu_state
  return $rc
}

say "RPTQ Workbench GPU benchmark (bench/run_cuda_bench.sh), raw output in $OUTDIR"
say "date $(date -u '+%Y-%m-%d %H:%M:%S UTC'); host $(hostname); $NPROC CPUs; budget ${BUDGET}s"
say "git $(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"

# ---- the machine
{
  echo "# machine: $(hostname), $(date -u '+%Y-%m-%d %H:%M:%S UTC'), kernel $(uname -r), $(uname -m)"
  echo "## nvidia-smi"; nvidia-smi 2>&1 || echo "(nvidia-smi failed or is missing)"
  echo "## nvidia-smi -L"; nvidia-smi -L 2>&1
  echo "## nvidia-smi -q (clocks, power, memory, ECC, driver)"; nvidia-smi -q 2>&1 | head -400
  echo "## nvcc --version"; nvcc --version 2>&1 || /usr/local/cuda/bin/nvcc --version 2>&1
  echo "## cmake / ninja / gcc"; cmake --version 2>&1 | head -1; ninja --version 2>&1; c++ --version 2>&1 | head -1
  echo "## lscpu"; lscpu 2>&1 | head -25
  echo "## memory"; free -g 2>&1
  echo "## disk"; df -h /tmp 2>&1
  echo "## /etc/os-release"; head -4 /etc/os-release 2>&1
  echo "## python"; command -v "$PYTHON"; "$PYTHON" -c 'import sys, numpy; print(sys.version.split()[0], "numpy", numpy.__version__)' 2>&1
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1
} >"$MACHINE" 2>&1
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
if [[ -n $GPU_NAME ]]; then say "GPU: $GPU_NAME ($(nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1))"
else say "nvidia-smi finds no GPU (or is missing); going on: bench_cuda's own device check decides"
fi
gpu_state
HAVE_TORCH=0
if "$PYTHON" -c 'import torch, numpy' >/dev/null 2>&1; then HAVE_TORCH=1
else say "PyTorch (or numpy) is not importable by $PYTHON: the PyTorch runs are skipped"
fi

# ---- random models, in the background while the build runs (numpy only); only with a GPU in sight
GEN_PID=""
GEN_LOG=/tmp/rptq-bench-models.$$.log
model_dir() { echo "$MODELS/opt-$1-random"; }
if [[ -n $GPU_NAME ]] && "$PYTHON" -c 'import numpy' >/dev/null 2>&1; then
  (
    for size in $SIZES; do
      dir=$(model_dir "$size")
      if [[ -f $dir/model.safetensors && -f $dir/config.json ]]; then echo "have $dir"; continue; fi
      dtype=f32; [[ $size == 1.3b ]] && dtype=f16
      "$PYTHON" "$REPO/bench/make_random_opt.py" "$dir" --size "$size" --dtype "$dtype" || echo "make_random_opt $size failed"
    done
  ) >"$GEN_LOG" 2>&1 &
  GEN_PID=$!
  say "making the random models in the background (pid $GEN_PID): $SIZES under $MODELS"
fi

# ---- build (or a prebuilt bundle)
BIN=""
RUNENV=()  # a prefix for bench_cuda: set for a prebuilt bundle
TEST_TARGETS=$(cd "$REPO/tests" && ls test_cuda_*.cpp 2>/dev/null | sed 's/\.cpp$//' | tr '\n' ' ')
# use_prebuilt DIR|BUNDLE.tar.xz: sets BIN and RUNENV from a bundle of bench/pack_cuda_bench.sh; fails if it holds
# no bin/bench_cuda.
use_prebuilt() {
  local p=$1
  if [[ $p == *.tar.xz && -f $p ]]; then
    rm -rf /tmp/rptq-prebuilt && mkdir -p /tmp/rptq-prebuilt && tar -xJf "$p" -C /tmp/rptq-prebuilt || return 1
    p=$(find /tmp/rptq-prebuilt -path '*/bin/bench_cuda' | head -1)
    p=${p%/bin/bench_cuda}
  fi
  [[ -n $p && -x $p/bin/bench_cuda ]] || { say "$1 holds no bin/bench_cuda"; return 1; }
  p=$(cd "$p" && pwd)
  BIN=$p/bin
  # Only for bench_cuda (PyTorch keeps the machine's own libraries): the bundle's libraries, then CUDA's; rptq
  # loads OpenBLAS at run time (core/src/model/blas.cpp), the bundle's copy when it has one.
  RUNENV=(env "LD_LIBRARY_PATH=$p/lib:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  [[ -f $p/lib/libopenblas.so.0 ]] && RUNENV+=("RPTQ_BLAS_LIBRARY=$p/lib/libopenblas.so.0")
  say "using the prebuilt binaries in $BIN (${RUNENV[*]:1})"
  { echo "### prebuilt: $BIN; ldd bench_cuda:"; "${RUNENV[@]}" ldd "$BIN/bench_cuda"; } >>"$BUILDLOG" 2>&1
}
: >"$BUILDLOG"
if [[ -n $PREBUILT ]]; then
  use_prebuilt "$PREBUILT" || say "building instead"
fi
if [[ -z $BIN ]]; then
  if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH=/usr/local/cuda/bin:$PATH; fi
  gen=(); command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  if [[ -f $BUILD/CMakeCache.txt ]] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=${gen[1]:-Unix Makefiles}\$" "$BUILD/CMakeCache.txt"; then
    say "$BUILD was configured with another generator: using $BUILD-${ARCH} instead"; BUILD=$BUILD-$ARCH
  fi
  configure=(cmake -S "$REPO" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH"
             -DRPTQ_ENABLE_CUDA=ON -DRPTQ_BUILD_BENCH=ON)
  tests_on=$RUN_TESTS
  if [[ $RUN_TESTS == 1 ]]; then
    step "configure (tests on)" 30 120 "$BUILDLOG" "${configure[@]}" -DRPTQ_BUILD_TESTS=ON
  else
    step "configure (tests off)" 30 120 "$BUILDLOG" "${configure[@]}" -DRPTQ_BUILD_TESTS=OFF
  fi
  rc=$?
  if ((rc != 0 && rc != 125)) && [[ $RUN_TESTS == 1 ]]; then
    say "configure failed with the tests on (GoogleTest missing?): trying again without them"
    tests_on=0
    step "configure (tests off)" 30 120 "$BUILDLOG" "${configure[@]}" -DRPTQ_BUILD_TESTS=OFF
    rc=$?
  fi
  if ((rc == 0)); then
    if ! grep -q '^RPTQ_ENABLE_CUDA:BOOL=ON' "$BUILD/CMakeCache.txt" || ! grep -q 'RPTQ: CUDA kernels ON' "$BUILDLOG"; then
      say "CMake did not enable CUDA (nvcc not found?): see build.log"
    fi
    targets=(bench_cuda)
    # shellcheck disable=SC2206
    [[ $tests_on == 1 ]] && targets+=($TEST_TARGETS)
    step "build ${targets[*]}" 60 330 "$BUILDLOG" cmake --build "$BUILD" --target "${targets[@]}" -j "$NPROC"
    rc=$?
    if ((rc != 0 && rc != 125)) && [[ $tests_on == 1 ]]; then
      say "the build failed: trying bench_cuda alone"
      step "build bench_cuda" 60 240 "$BUILDLOG" cmake --build "$BUILD" --target bench_cuda -j "$NPROC"
    fi
    [[ -x $BUILD/bench/bench_cuda ]] && BIN=$BUILD/bench
  fi
  if [[ -z $BIN ]]; then
    say "no bench_cuda was built; the last lines of build.log:"
    grep -iE 'error|could not|not found|missing' "$BUILDLOG" | tail -15 | sed 's/^/        /'
    if [[ -n $FALLBACK ]]; then
      say "falling back to the bundle RPTQ_CUDA_FALLBACK=$FALLBACK"
      use_prebuilt "$FALLBACK" || say "no usable bundle either"
    fi
  fi
fi
tbin() {  # where test binary $1 is
  if [[ -x $BIN/$1 ]]; then echo "$BIN/$1"; elif [[ -x $BUILD/tests/$1 ]]; then echo "$BUILD/tests/$1"; fi
}

# ---- is there a GPU the build can use?
if [[ -n $BIN ]]; then
  info=$("${RUNENV[@]}" "$BIN/bench_cuda" --device-info 2>&1)
  if [[ $? -ne 0 ]]; then
    say "NO USABLE GPU: bench_cuda --device-info says: $(echo "$info" | tail -1)"
    say "stopping after the build (exit 3); nothing was benchmarked"
    [[ -n $GEN_PID ]] && { pkill -P "$GEN_PID" 2>/dev/null; kill "$GEN_PID" 2>/dev/null; }
    exit 3
  fi
  echo "$info" >>"$RPTQLOG"
  say "device: $(echo "$info" | grep -o '"rptq_device":"[^"]*"')"
elif [[ -z $GPU_NAME ]]; then
  say "NO GPU and no build: stopping (exit 3)"
  exit 3
fi

# ---- GPU tests
if [[ -n $BIN && $RUN_TESTS == 1 ]]; then
  : >"$TESTLOG"
  for t in $TEST_TARGETS; do
    exe=$(tbin "$t")
    if [[ -z $exe ]]; then say "SKIP  $t: not built"; continue; fi
    step "$t" 20 "$TEST_TIMEOUT" "$TESTLOG" "${RUNENV[@]}" "$exe" --gtest_color=no
    # this test's own section of tests.log: the PASSED / SKIPPED / FAILED counts and the failed tests' names
    sed -n "/^### $t\$/,\$p" "$TESTLOG" | grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]|^\[  FAILED  \] [A-Za-z]' |
      head -8 | sed 's/^/        /'
  done
fi

# ---- the models
if [[ -n $GEN_PID ]]; then
  say "waiting for the random models"
  wait "$GEN_PID"
  sed 's/^/        /' "$GEN_LOG"
  cat "$GEN_LOG" >>"$RPTQLOG"
  rm -f "$GEN_LOG"
fi

# ---- benchmarks
args_for() { if [[ $1 == 1.3b ]]; then echo "$ARGS_1_3B"; else echo "$ARGS_125M"; fi; }
for size in $SIZES; do
  dir=$(model_dir "$size")
  if [[ ! -f $dir/model.safetensors ]]; then say "SKIP  opt-$size: no model in $dir"; continue; fi
  # shellcheck disable=SC2046
  set -- $(args_for "$size")
  min=60; max=150; [[ $size == 1.3b ]] && { min=90; max=200; }
  if [[ -n $BIN ]]; then
    check=(); [[ $size == 125m ]] && check=(--check-cpu --check-windows 1 --check-samples 2 --gen-tokens 128)
    step "bench_cuda opt-$size (evaluation, calibration)" "$min" "$max" "$RPTQLOG" "${RUNENV[@]}" "$BIN/bench_cuda" "$dir" "$@" "${check[@]}"
    tail -12 "$RPTQLOG" | grep -E '^   (fp32|fp16|bf16) ' | sed 's/^/      /'
  fi
  if ((HAVE_TORCH)); then
    # shellcheck disable=SC2086
    step "torch_cuda.py opt-$size (evaluation: eager, sdpa; calibration)" 45 "$max" "$TORCHLOG" env PYTHONUNBUFFERED=1 \
      "$PYTHON" "$REPO/bench/torch_cuda.py" "$dir" "$@" --attention eager,sdpa $TORCH_ARGS
    tail -14 "$TORCHLOG" | grep -E '^   (fp32|fp16|bf16) ' | sed 's/^/      /'
  fi
done
if [[ -n $BIN ]]; then
  # the sizes in reverse order (1.3b first by default: its shapes are the ones that fill the GPU)
  for size in $(echo "$SIZES" | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}'); do
    dir=$(model_dir "$size")
    [[ -f $dir/config.json ]] || continue
    # shellcheck disable=SC2086
    step "bench_cuda --gemm opt-$size" 30 120 "$RPTQLOG" "${RUNENV[@]}" "$BIN/bench_cuda" --gemm "$dir" $GEMM_ARGS
    tail -40 "$RPTQLOG" | grep -E '^   (layer step|memory:|packed GEMV)' | sed 's/^/      /'
  done
fi

# ---- summary
if [[ -f $RPTQLOG || -f $TORCHLOG ]]; then
  [[ -f $RPTQLOG ]] || : >"$RPTQLOG"
  logs=("$RPTQLOG"); [[ -f $TORCHLOG ]] && logs+=("$TORCHLOG")
  "$PYTHON" "$REPO/bench/summarize_cuda.py" "${logs[@]}" >"$SUMMARY" 2>&1 ||
    python3 "$REPO/bench/summarize_cuda.py" "${logs[@]}" >"$SUMMARY" 2>&1
  cat "$SUMMARY"
fi
gpu_state
say "done in $(elapsed)s; files: $(cd "$OUTDIR" && ls | tr '\n' ' ')"
[[ -n $BIN ]] || exit 4
exit 0
