#!/usr/bin/env bash
# Sets up a fresh Debian machine (packages), builds, and runs RPTQ Workbench's main job on the embedded demo model:
# a description of the model, a generated story, and the model's perplexity on the bundled stories.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
MODEL=resources/models/stories260k
build/app/rptq inspect "$MODEL"
echo
build/app/rptq generate "$MODEL" --prompt "Once upon a time" --max-new-tokens 120
echo
build/app/rptq eval "$MODEL" --data resources/data/stories.txt --seqlen 128
