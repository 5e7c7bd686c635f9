#!/usr/bin/env bash
# Sets up a fresh Debian machine (packages), builds, and runs the whole test suite with CTest; then builds and checks
# the Debian package (scripts/check-package.sh, in build-pkg).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
RPTQ_SKIP_DEPS=1 scripts/check-package.sh
