#!/usr/bin/env bash
# Issue #13 on the H200 GPU machine, as one device call (about 5 of its 9 minutes):
#   here:  bash ../shared/device/fetch.sh .devkit
#   then:  run(command="bash benchmarks/gpu_cost_run.sh", carry=[".devkit"], timeout_s=540)
# Writes into $OUT (what comes back): gpu_cost.{json,md} for the four shipped configs
# with the plugin's defaults (recompute on) and the profile of one VkD step each, then
# the RetinaNet config with recompute=False, to show what recomputation buys and costs.
# Commit the files under benchmarks/results/ with the machine they name.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_cost_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ "${1:-}" != "--cpu-check" ]; then
  source .devkit/install.sh
  extra=()
else
  extra=(--tiny)  # here, without a GPU: the same commands at toy size
fi
python3 benchmarks/bench_gpu_cost.py --out "$OUT" --profile "${extra[@]}" 2>&1 | tee "$OUT/gpu_cost.log"
python3 benchmarks/bench_gpu_cost.py --out "$OUT" --configs vkd_retinanet_r50 \
  --tap-options recompute=False "${extra[@]}"
# 6 files come back (8 at most): gpu_cost.{json,md,log}, gpu_cost_profiles.txt,
# gpu_cost_recompute-False.{json,md}.
ls -l "$OUT"
