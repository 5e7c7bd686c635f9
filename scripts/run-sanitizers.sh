#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer: builds core, the rptq CLI, rptq-fuzz and the CPU test suites in
# ./build-asan (CPU only, -O1 -g; any sanitizer report aborts the process) and runs them, then a fuzz round of every
# file type under the sanitizers.
#   scripts/run-sanitizers.sh [--ci] [FUZZ_ITERATIONS]   (default 100)
# The whole run: every CPU suite but the GPU ones (their CPU references run in the main suite), the GUI (Qt), the
# SmolLM2 and slow model-level suites, and test_pinned_logits (below). --ci (scripts/run-tests.sh, after the main
# suite): the suites of everything that reads a file or a number from one (formats, tokenizers, the CLI's checks,
# quantizer and packing arithmetic), less the slow checkpoint round trips of every preset, to keep CI's time.
set -euo pipefail
cd "$(dirname "$0")/.."
ci=0
if [ "${1:-}" = "--ci" ]; then
  ci=1
  shift
fi
iterations=${1:-100}
san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DRPTQ_ENABLE_CUDA=OFF -DRPTQ_BUILD_BENCH=OFF > /dev/null
# The suites: every test_*.cpp outside cuda/ and gui/, less the slow model-level ones listed here and
# test_pinned_logits (bit-for-bit logits of the Release build's instruction selection; -O1 differs in the last bits).
skip='test_smollm2|test_quantize|test_sensitivity|test_model_forward|test_pinned_logits'
mapfile -t tests < <(cd tests && find . -name 'test_*.cpp' -not -path './cuda/*' -not -path './gui/*' \
  -exec basename {} .cpp \; | grep -Ev "^($skip)$" | sort)
filter='*'
if [ $ci = 1 ]; then
  tests=(test_bitpack test_quantizer test_checkpoint test_hostile_inputs test_hdf5_hostile test_qcheckpoint
         test_hf_export test_model_config test_tokenizer test_cli_bad_input test_calibration test_cluster_view)
  filter='-SharedModels/CheckpointExport.*'
fi
cmake --build build-asan -j"$(nproc)" --target rptq rptq-fuzz "${tests[@]}"
echo "# run-sanitizers.sh $([ $ci = 1 ] && echo --ci) $iterations: ASan + UBSan (-O1), $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "# machine: $(nproc) CPUs, $(uname -m), $(. /etc/os-release && echo "$PRETTY_NAME"), $(c++ --version | head -n 1)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tools/sanitizers/lsan.supp
export OMP_NUM_THREADS=2
failed=()
for t in "${tests[@]}"; do
  echo "== $t"
  if ! "build-asan/tests/$t" --gtest_brief=1 --gtest_filter="$filter"; then failed+=("$t"); fi
done
echo "== fuzz ($iterations mutations per file)"
tools/fuzz/run-fuzz.sh build-asan "$iterations" build-asan/fuzz || failed+=(fuzz)
if [ ${#failed[@]} -gt 0 ]; then
  echo "sanitizer run FAILED: ${failed[*]}"
  exit 1
fi
# (test_hdf5_hostile's libhdf5 crashers print ASan reports from the isolated reader's child processes, where the
# crash is meant to happen; the suite passes when the parent turns each into its error.)
echo "sanitizer run passed: ${#tests[@]} suites and the fuzz round"
