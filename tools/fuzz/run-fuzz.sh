#!/usr/bin/env bash
# Seeded mutation fuzzing of every file type rptq opens (tools/fuzz/README.md).
#   tools/fuzz/run-fuzz.sh BUILD_DIR ITERATIONS [OUT_DIR]
# Makes the seeds from the embedded demo model (resources/models/stories260k) with BUILD_DIR's rptq: a statistics
# file and a checkpoint in the current layout and in the layout earlier versions wrote, a Hugging Face export; then
# runs rptq-fuzz ITERATIONS times on each file type. Findings (crash, hang, unnamed, long, internal) are saved under
# OUT_DIR/findings. Exit status 1 when there was any finding. CI runs a small budget (ctest: fuzz_smoke); the long
# run's raw output is committed under bench/results/.
set -euo pipefail
build=$(cd "$1" && pwd)
iterations=$2
out=${3:-$build/fuzz}
src=$(cd "$(dirname "$0")/../.." && pwd)
rptq=$build/app/rptq
fuzz=$build/tools/fuzz/rptq-fuzz
model=$src/resources/models/stories260k
seeds=$out/seeds
rm -rf "$seeds" "$out/findings"
mkdir -p "$seeds" "$out/findings"

"$rptq" calibrate "$model" --data "$src/resources/data/stories.txt" --samples 2 --seqlen 16 --threads 1 \
  --out "$seeds/stats.h5" > /dev/null
RPTQ_HDF5_LEGACY_LAYOUT=1 "$rptq" calibrate "$model" --data "$src/resources/data/stories.txt" --samples 2 \
  --seqlen 16 --threads 1 --out "$seeds/stats-legacy.h5" > /dev/null
"$rptq" export "$model" --stats "$seeds/stats.h5" --preset W4A8 --threads 1 --out "$seeds/checkpoint.h5" > /dev/null
RPTQ_HDF5_LEGACY_LAYOUT=1 "$rptq" export "$model" --stats "$seeds/stats.h5" --preset W4A8 --threads 1 \
  --out "$seeds/checkpoint-legacy.h5" > /dev/null
"$rptq" export "$model" --stats "$seeds/stats.h5" --preset W4A8 --threads 1 --format safetensors \
  --out "$seeds/hf-export" > /dev/null
# The OPT tokenizer's files, without the weights (the tokenizer kind loads only the tokenizer).
mkdir -p "$seeds/opt-tokenizer"
for f in vocab.json merges.txt tokenizer_config.json special_tokens_map.json config.json; do
  cp "$src/resources/models/tiny-opt-16m/$f" "$seeds/opt-tokenizer/"
done

echo "# rptq-fuzz, $iterations mutations per file, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "# machine: $(nproc) CPUs, $(uname -m), $(. /etc/os-release && echo "$PRETTY_NAME"); libhdf5 $(dpkg-query -W -f '${Version}' libhdf5-dev 2>/dev/null || echo '?')"
status=0
run() {  # KIND SEED_PATH [MODEL]
  local kind=$1 path=$2 dir=${3:-}
  local args=(--kind "$kind" --seed-path "$path" --iterations "$iterations" --seed 1 --timeout 60
              --work "$out/work" --save "$out/findings")
  [ -n "$dir" ] && args+=(--model "$dir")
  "$fuzz" "${args[@]}" || status=1
}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
run stats "$seeds/stats.h5"
run stats "$seeds/stats-legacy.h5"
run checkpoint "$seeds/checkpoint.h5"
run checkpoint "$seeds/checkpoint-legacy.h5"
run safetensors "$model/model.safetensors" "$model"
run config "$model/config.json" "$model"
run tokenizer "$model/tokenizer.json" "$model"
run tokenizer "$seeds/opt-tokenizer/vocab.json" "$seeds/opt-tokenizer"
run tokenizer "$seeds/opt-tokenizer/merges.txt" "$seeds/opt-tokenizer"
run tokenizer "$seeds/opt-tokenizer/tokenizer_config.json" "$seeds/opt-tokenizer"
run hf-export "$seeds/hf-export/model.safetensors" "$seeds/hf-export"
run config "$seeds/hf-export/config.json" "$seeds/hf-export"
for t in basic protocol4 shared_storage shard-00001-of-00002; do
  run torch "$src/tests/data/torch/$t.bin"
done
# The command line's side: the same kinds of mutation through the rptq binary itself, which must exit 0, or 2 with
# one line naming the file (a twentieth of the iterations, at least 10: each run is a whole process).
cli_iterations=$(( iterations / 20 > 10 ? iterations / 20 : 10 ))
cli() { "$src/tools/fuzz/cli_fuzz.py" "$rptq" "$@" || status=1; }
cli stats "$seeds/stats.h5" "$cli_iterations" "$out/work-cli"
cli stats "$seeds/stats-legacy.h5" "$cli_iterations" "$out/work-cli"
cli checkpoint "$seeds/checkpoint.h5" "$cli_iterations" "$out/work-cli"
cli checkpoint "$seeds/checkpoint-legacy.h5" "$cli_iterations" "$out/work-cli"
cli model "$model/model.safetensors" "$cli_iterations" "$out/work-cli" "$model"
cli model "$model/config.json" "$cli_iterations" "$out/work-cli" "$model"
cli model "$model/tokenizer.json" "$cli_iterations" "$out/work-cli" "$model"
rm -rf "$out/work"
exit $status
