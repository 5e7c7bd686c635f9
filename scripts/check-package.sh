#!/usr/bin/env bash
# Builds the Debian package rptq-workbench (CPU build, Release, only rptq and rptq-workbench) in its own build
# folder, checks its contents, validates the desktop entry and the AppStream metainfo, unpacks it into a scratch
# root and runs the installed rptq there on the installed demo model.
# Usage: scripts/check-package.sh   (RPTQ_PKG_BUILD_DIR: the build folder, default build-pkg;
#                                    RPTQ_SKIP_DEPS=1: do not run scripts/install-deps.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
BUILD=${RPTQ_PKG_BUILD_DIR:-build-pkg}
START=$SECONDS
step() { echo "== check-package: $* ($((SECONDS - START)) s)"; }
fail() { echo "check-package: FAILED: $*" >&2; exit 1; }

if [ "${RPTQ_SKIP_DEPS:-0}" != 1 ]; then scripts/install-deps.sh; fi

step "configure and build in $BUILD (CPU, Release, no tests, no benchmarks)"
mkdir -p "$BUILD"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRPTQ_ENABLE_CUDA=OFF \
  -DRPTQ_BUILD_TESTS=OFF -DRPTQ_BUILD_BENCH=OFF > "$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)"
rm -f "$BUILD"/rptq-workbench_*.deb
step "cpack"
(cd "$BUILD" && cpack -G DEB > cpack.log 2>&1) || { cat "$BUILD/cpack.log"; exit 1; }
DEB=$(ls "$BUILD"/rptq-workbench_*.deb)
echo "$DEB ($(du -h "$DEB" | cut -f1))"

step "contents"
dpkg-deb -f "$DEB" Package Version Architecture Installed-Size Depends
LIST=$(dpkg-deb -c "$DEB" | awk '{print $NF}' | sed 's|^\./|/|')
REQUIRED=(
  /usr/bin/rptq /usr/bin/rptq-workbench
  /usr/share/applications/io.github.rptq.Workbench.desktop
  /usr/share/metainfo/io.github.rptq.Workbench.metainfo.xml
  /usr/share/icons/hicolor/scalable/apps/io.github.rptq.Workbench.svg
  /usr/share/man/man1/rptq.1.gz /usr/share/man/man1/rptq-workbench.1.gz
  /usr/share/doc/rptq-workbench/copyright
  /usr/share/rptq-workbench/LICENSE /usr/share/rptq-workbench/resources/README.md
  /usr/share/rptq-workbench/resources/data/c4-sample.txt /usr/share/rptq-workbench/resources/data/stories.txt
)
for N in 16 22 24 32 48 64 128 256; do REQUIRED+=("/usr/share/icons/hicolor/${N}x${N}/apps/io.github.rptq.Workbench.png"); done
for f in resources/models/*/*; do REQUIRED+=("/usr/share/rptq-workbench/$f"); done  # every model file, LICENSE/README too
for f in "${REQUIRED[@]}"; do grep -qxF "$f" <<<"$LIST" || fail "$f is not in the package"; done
echo "all ${#REQUIRED[@]} expected files present ($(grep -vc '/$' <<<"$LIST") files in all)"
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
for d in libopenblas0-openmp libqt6widgets6 libqt6charts6 libhdf5; do
  grep -q "$d" <<<"$DEPENDS" || fail "Depends lacks $d: $DEPENDS"
done
if grep -Eiq 'cuda|nvidia' <<<"$DEPENDS$LIST"; then fail "the CPU package refers to CUDA"; fi

ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
dpkg -x "$DEB" "$ROOT"
step "validate the desktop entry and the metainfo"
desktop-file-validate "$ROOT/usr/share/applications/io.github.rptq.Workbench.desktop"
appstreamcli validate --no-net "$ROOT/usr/share/metainfo/io.github.rptq.Workbench.metainfo.xml"
for p in rptq rptq-workbench; do
  MAN=$ROOT/usr/share/man/man1/$p.1.gz
  zcat "$MAN" | grep -q '^\.TH ' || fail "$p.1.gz is not a man page"
  if command -v man > /dev/null; then  # roff warnings, as lintian checks them
    W=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$MAN" 2>&1 > /dev/null)
    [ -z "$W" ] || fail "$p.1.gz: $W"
  fi
done
echo "man pages rptq(1), rptq-workbench(1): no roff warnings"

step "run the installed binaries from the scratch root $ROOT"
for b in rptq rptq-workbench; do
  if ldd "$ROOT/usr/bin/$b" | grep 'not found'; then fail "$b: shared libraries not found"; fi
done
cd "$ROOT"  # away from the source tree
export XDG_RUNTIME_DIR=$ROOT/run && mkdir -m 700 "$XDG_RUNTIME_DIR"
VERSION=$(usr/bin/rptq --version)
echo "$VERSION"
grep -q "CPU only" <<<"$VERSION" || fail "rptq --version does not say CPU only"
QT_QPA_PLATFORM=offscreen usr/bin/rptq-workbench --version
R=usr/share/rptq-workbench/resources
usr/bin/rptq eval "$R/models/stories260k" --data "$R/data/stories.txt" --seqlen 128 --max-windows 2 --json \
  | tee "$ROOT/eval.json"
grep -q '"ppl"' "$ROOT/eval.json" || fail "rptq eval printed no perplexity"
# The workbench opens its demo model from the installed resources, never from the source tree it was built from
# (checked with strace where it is installed and allowed to trace).
TRACE=()
if strace -qq -o /dev/null true 2> /dev/null; then TRACE=(strace -f -qq -e trace=openat,newfstatat,statx -o "$ROOT/gui.trace"); fi
"${TRACE[@]}" usr/bin/rptq-workbench --screenshot "$ROOT/model.png" --step model 2>&1 | grep -v propagateSizeHints
[ -s "$ROOT/model.png" ] || fail "rptq-workbench --screenshot wrote nothing"
if [ ${#TRACE[@]} -gt 0 ]; then
  grep -q "\"$ROOT/usr/share/rptq-workbench/resources/models/tiny-opt-16m/model.safetensors\"" "$ROOT/gui.trace" \
    || fail "rptq-workbench did not open the installed demo model"
  if grep -q "\"$SRC/resources" "$ROOT/gui.trace"; then fail "rptq-workbench read the source tree's resources"; fi
  echo "rptq-workbench opened the installed demo model (strace)"
fi
cd "$SRC"
step "passed"
