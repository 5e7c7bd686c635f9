#!/usr/bin/env bash
# Packs a bench_cuda built here into a bundle that bench/run_cuda_bench.sh can use on a GPU machine that cannot
# build the project (its image lacks HDF5, PCRE2, nlohmann-json, GoogleTest or OpenBLAS development files):
#
#   bench/pack_cuda_bench.sh BUILD_DIR BUNDLE.tar.xz
#   RPTQ_CUDA_PREBUILT=BUNDLE.tar.xz bench/run_cuda_bench.sh      (on the GPU machine)
#
# The bundle holds bin/bench_cuda and lib/: every shared library bench_cuda needs except the C runtime and the CUDA
# libraries (the GPU machine brings its own CUDA 13 runtime and cuBLAS; the build must use the same major version),
# plus libopenblas.so.0, which rptq loads at run time (core/src/model/blas.cpp; RPTQ_BLAS_LIBRARY points at it). Use a
# build configured with -DRPTQ_ENABLE_ONEDNN=OFF to leave oneDNN (40 MB) out: it only serves CPU GEMMs. The test
# binaries are not packed: they find their data by paths compiled in. Builds nothing.
set -euo pipefail
BUILD=${1:?usage: pack_cuda_bench.sh BUILD_DIR BUNDLE.tar.xz}
BUNDLE=${2:?usage: pack_cuda_bench.sh BUILD_DIR BUNDLE.tar.xz}
EXE=$BUILD/bench/bench_cuda
[[ -x $EXE ]] || { echo "no $EXE: build the bench_cuda target first" >&2; exit 1; }
STAGE=$(mktemp -d /tmp/rptq-pack.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/rptq-cuda-bench/bin" "$STAGE/rptq-cuda-bench/lib"
cp "$EXE" "$STAGE/rptq-cuda-bench/bin/"
# The C runtime and CUDA's own libraries stay behind.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libcuda\.|libcudart\.|libcublas\.|libcublasLt\.)'
ldd "$EXE" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
  if [[ $name =~ $skip ]]; then continue; fi
  cp -L "$path" "$STAGE/rptq-cuda-bench/lib/$name"
  echo "lib: $name <- $path"
done
blas=$(sed -n 's/^RPTQ_OPENBLAS_LIBRARY:FILEPATH=//p' "$BUILD/CMakeCache.txt")
if [[ -n $blas && -f $blas ]]; then
  cp -L "$blas" "$STAGE/rptq-cuda-bench/lib/libopenblas.so.0"
  echo "lib: libopenblas.so.0 <- $blas (loaded at run time)"
  # OpenBLAS's own dependencies (libgfortran, libgomp, ...), when not there yet
  ldd "$blas" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
    if [[ $name =~ $skip || -f $STAGE/rptq-cuda-bench/lib/$name ]]; then continue; fi
    cp -L "$path" "$STAGE/rptq-cuda-bench/lib/$name"
    echo "lib: $name <- $path (for OpenBLAS)"
  done
else
  echo "warning: no OpenBLAS found in $BUILD/CMakeCache.txt: calibration (host score ranges) and --check-cpu will fail" >&2
fi
du -sh "$STAGE/rptq-cuda-bench/bin" "$STAGE/rptq-cuda-bench/lib"
tar -C "$STAGE" -cJf "$BUNDLE" rptq-cuda-bench
ls -la "$BUNDLE"
