#!/usr/bin/env bash
# Sets up a fresh Debian machine (packages), builds, and runs RPTQ Workbench's main job on the embedded demo models:
# first the rptq command line (a description of the model, a generated story and its perplexity, then RPTQ itself:
# calibrate, look at one layer's channel clusters, compare the FP and W4A8 models, and generate with a 4-bit packed
# KV cache), then the workbench, which opens the demo model tiny-opt-16m. Without a display the workbench renders
# its Model, Explore and Compare steps to PNG files instead (offscreen) and prints where they are.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
RPTQ=build/app/rptq
MODEL=resources/models/stories260k
STORIES=resources/data/stories.txt
$RPTQ inspect "$MODEL"
echo
$RPTQ generate "$MODEL" --prompt "Once upon a time" --max-new-tokens 120
echo
$RPTQ eval "$MODEL" --data "$STORIES" --seqlen 128
echo
STATS=$(mktemp -d)/stories260k-stats.h5
$RPTQ calibrate "$MODEL" --data "$STORIES" --samples 16 --seqlen 128 --out "$STATS"
$RPTQ clusters "$STATS" --layer 2 --tap R5 --k 4 > "$STATS.clusters.txt"
head -6 "$STATS.clusters.txt"
echo "..."
$RPTQ compare "$MODEL" --stats "$STATS" --preset W4A8 --data "$STORIES" --seqlen 128
echo
$RPTQ generate "$MODEL" --stats "$STATS" --preset W4A4KV --prompt "Once upon a time" --max-new-tokens 120
echo
GUI=build/app/rptq-workbench
if [ ! -x "$GUI" ]; then
  echo "rptq-workbench was not built (Qt 6 missing?); see the CMake output above"
elif [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  exec "$GUI"
else
  SHOTS=$(mktemp -d)
  for STEP in model explore; do
    QT_QPA_PLATFORM=offscreen "$GUI" --screenshot "$SHOTS/$STEP.png" --step "$STEP" --model resources/models/tiny-opt-16m
  done
  QT_QPA_PLATFORM=offscreen "$GUI" --screenshot "$SHOTS/compare.png" --step compare --model "$MODEL"
  echo "no display: the workbench's steps were rendered to $SHOTS (run $GUI on a desktop to use it)"
fi
