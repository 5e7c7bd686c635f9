#!/bin/bash
# Builds the emulated kernels library from kernels/*.cu and relinks test binaries of a CUDA build against it.
# Usage: tools/cuda-emu/build.sh BUILD_DIR [TARGET...]   (targets: test_cuda_model, app/rptq, ...; build them first
# with cmake --build BUILD_DIR --target ...). Output: BUILD_DIR/cuda-emu/{libemu.a,bin/TARGET}.
set -e
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: build.sh BUILD_DIR [TARGET...]}" && pwd)
shift
out="$build/cuda-emu"
cuda_include=${CUDA_INCLUDE:-/usr/local/cuda/include}
mkdir -p "$out/obj" "$out/bin"
pids=""
python3 "$here/patch.py" "$repo/kernels" "$out"
FLAGS="-std=c++17 -O2 -g -fno-omit-frame-pointer -Wno-attributes -Wno-unknown-pragmas -isystem $cuda_include"
# The newest header a kernel may include (patch.py rewrites a copy only when it changed): a changed header rebuilds
# every kernel, as a header dependency would.
newest_header=$(ls -t "$out"/src/*.cuh "$repo/core/include/rptq/model/attention_shape.h" "$here/emu_cuda.h" | head -1)
for f in "$out"/src/*.cpp; do
  o="$out/obj/$(basename "$f" .cpp).o"
  if [ ! -f "$o" ] || [ "$f" -nt "$o" ] || [ "$newest_header" -nt "$o" ]; then
    g++ $FLAGS -include "$here/emu_cuda.h" -I"$out/src" -I"$repo/core/include" -c "$f" -o "$o" &
    pids="$pids $!"
  fi
done
# The emulated CUDA runtime and cuBLAS, and the cuBLASLt subset bench_cuda calls (archive members: linked only
# where called).
for f in emu_runtime emu_cublaslt; do
  if [ ! -f "$out/obj/$f.o" ] || [ "$here/$f.cpp" -nt "$out/obj/$f.o" ]; then
    g++ $FLAGS -c "$here/$f.cpp" -o "$out/obj/$f.o" &
    pids="$pids $!"
  fi
done
for p in $pids; do wait "$p"; done  # a failed compile stops the script
rm -f "$out/libemu.a"
ar rcs "$out/libemu.a" "$out"/obj/*.o
[ $# -gt 0 ] && python3 "$here/relink.py" "$build" "$out" "$@"
exit 0
