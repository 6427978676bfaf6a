#!/usr/bin/env bash
# Issue #14, step 2, on the H200 GPU machine as one device call (after
# benchmarks/facemask_gpu_prepare.sh here):
#   run(command="bash benchmarks/facemask_gpu_run.sh", carry=[".devkit", ".devdata"], timeout_s=590)
# Installs the kit, trains the teacher and the six main methods with seeds 0 and 1
# (benchmarks/bench_facemask.py --protocol gpu: runs in parallel, plain students
# beside the teacher), and writes into $OUT (what comes back) the per-run JSON, the
# report, its plots and the log. The benchmark stops at 8 minutes so that whatever
# finished comes back with its report; a rerun of the same call on the same warm
# machine continues from its cache. Commit $OUT/facemask under
# benchmarks/results/facemask/ with the machine it names.
#   bash benchmarks/facemask_gpu_run.sh --cpu-check   (here: the same steps at toy size)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/facemask_gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
start=$(date +%s)
if [ "${1:-}" = "--cpu-check" ]; then
  PY=${PY:-.venv/bin/python}; protocol=gpu-toy; limit=${LIMIT_S:-600}
  methods=(none vkd mmrazor_pkd); seeds=(0)
else
  source .devkit/install.sh
  PY=python3; protocol=gpu; limit=${LIMIT_S:-480}
  methods=(none vkd pkd fitnet mmrazor_pkd mmrazor_cwd); seeds=(0 1)
fi
bench=(benchmarks/bench_facemask.py --protocol "$protocol" --data-root .devdata/facemask
       --lite-weights .devkit/lite_weights --cache /tmp/bench_facemask_cache --out "$OUT/facemask")
rc=0
timeout --signal=INT "$limit" "$PY" "${bench[@]}" --methods "${methods[@]}" --seeds "${seeds[@]}" \
  2>&1 | tee "$OUT/facemask_gpu.log" || rc=$?
"$PY" "${bench[@]}" report > /dev/null
echo "facemask_gpu_run: benchmark exit $rc, wall $(( $(date +%s) - start )) s (kit install included)" \
  | tee -a "$OUT/facemask_gpu.log"
ls -l "$OUT" "$OUT/facemask"
