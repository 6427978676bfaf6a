#!/usr/bin/env bash
# The GPU measurements (cost of the shipped configs, the face-mask GPU protocol) on a
# GPU machine without network access, in phases that share one kit install and one
# deadline, so that a short stay on the machine goes to measuring:
#   on the CPU machine, once:  bash benchmarks/facemask_gpu_prepare.sh  (.devkit, .devdata)
#   on the GPU machine, with .devkit and .devdata copied beside the code:
#                              bash benchmarks/gpu_session.sh PHASE ...
# Phases, in the order given:
#   checks          bench_cuda_distill.py --checks-only: the plugin's tensor code on CUDA
#                   (maps ahead on a side stream, blocks against whole maps), in seconds
#   cost-retinanet  bench_gpu_cost.py on configs/vkd_retinanet_r50.py, with the profile
#   cost-rest       the same for the other three shipped configs
#   cost-recompute  the RetinaNet config with recompute=False (what recomputation buys)
#   cost-whole      the RetinaNet config with chunk_elements=None (what comparing big maps
#                   in blocks buys: memory, and at what time)
#   facemask        bench_facemask.py --protocol gpu: teacher and six methods, seeds 0 1
#   fewlabels       bench_facemask.py --protocol gpu-fewlabels: the teacher on the labelled
#                   quarter, then none, VkD and prediction mimicking on labelled + unlabelled
#                   images and pseudo-labels, seeds 0 1 2 (whole comparisons seed by seed)
# Each phase stops at the deadline (DEADLINE_S after the start, default 560 s, less
# RESERVE_S for the last copies), keeping what it finished: bench_gpu_cost.py writes
# after every config, bench_facemask.py keeps finished runs. What a phase made is kept
# in /tmp/vkd_gpu_session, so a second call on the same warm machine continues it
# (--append; the face-mask cache). Into $OUT (what comes back, at most 8 files):
#   session.log, gpu_cost.tar.gz (gpu_cost{,_profiles}.{json,md,txt} and gpu_cost_<tap
#   options>.{json,md} for the variants; the .md files also beside it),
#   facemask_gpu.tar.gz (results, report, plots and every run's log and scalars),
#   fewlabels_gpu.tar.gz (the same for the few-labels protocol).
# Commit them under benchmarks/results/ with the machine they name.
#   bash benchmarks/gpu_session.sh --cpu-check PHASE ...   (on a CPU: the same at toy size)
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
OUT=${OUT:-/tmp/gpu_session_out}
KEEP=${KEEP:-/tmp/vkd_gpu_session}
DEADLINE_S=${DEADLINE_S:-560}
RESERVE_S=${RESERVE_S:-30}
mkdir -p "$OUT" "$KEEP/cost" "$KEEP/facemask"
export PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/session.log") 2>&1

if [ "${1:-}" = "--cpu-check" ]; then
  shift
  PY=${PY:-.venv/bin/python}; cost_opts=(--tiny); check_opts=(--device cpu); protocol=gpu-toy
  methods=(none vkd mmrazor_pkd); seeds=(0); fewlabels_protocol=fewlabels-toy; fewlabels_seeds=(0)
else
  source .devkit/install.sh || exit $?
  PY=python3; cost_opts=(); check_opts=(); protocol=gpu
  methods=(none vkd pkd fitnet mmrazor_pkd mmrazor_cwd); seeds=(0 1)
  fewlabels_protocol=gpu-fewlabels; fewlabels_seeds=(0 1 2)
fi

remaining() { echo $(( DEADLINE_S - RESERVE_S - ($(date +%s) - start) )); }

# timed CAP CMD...: CMD under a SIGINT at min(CAP, time left); false if none is left
timed() {
  local cap=$1 left; shift
  left=$(remaining)
  if [ "$left" -le 10 ]; then echo "gpu_session: no time left for: $*"; return 1; fi
  [ "$cap" -lt "$left" ] || cap=$left
  echo "gpu_session: [$(( $(date +%s) - start )) s] $* (at most $cap s)"
  timeout --signal=INT --kill-after=15 "$cap" "$@"
}

cost() {  # cost CAP OPTIONS...: bench_gpu_cost.py into $KEEP/cost, appending
  local cap=$1; shift
  timed "$cap" "$PY" benchmarks/bench_gpu_cost.py --out "$KEEP/cost" --append "${cost_opts[@]}" "$@"
}

# Processes sharing the GPU take turns by time slices: the first GPU run (2026-11-30) found
# three runs at once as slow as one after the other, since every mmdet iteration waits on
# the GPU many times. NVIDIA's MPS lets them run at once. Start it if the machine has it and
# a CUDA process then works; otherwise run two at a time (no slower in all, and runs end in
# the benchmark's priority order, so a deadline leaves whole comparisons).
MPS_CTL=
start_mps() {
  local ctl
  ctl=$(command -v nvidia-cuda-mps-control || ls /usr/local/nvidia/bin/nvidia-cuda-mps-control 2>/dev/null)
  if [ -z "$ctl" ]; then echo "gpu_session: no nvidia-cuda-mps-control here: no MPS"; return 1; fi
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/vkd_mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/vkd_mps/log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if "$ctl" -d && timeout 60 "$PY" -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
    echo "gpu_session: MPS on ($ctl)"; MPS_CTL=$ctl; return 0
  fi
  echo "gpu_session: MPS did not start or a CUDA process failed under it: no MPS"
  echo quit | "$ctl" 2>/dev/null
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  return 1
}

checks() {  # the plugin's tensor code on CUDA, new paths against plain ones (seconds)
  timed 120 "$PY" benchmarks/bench_cuda_distill.py --checks-only --out "$KEEP/checks" \
    "${check_opts[@]}"
  local rc=$?
  cp "$KEEP/checks/cuda_distill.md" "$OUT/"
  return $rc
}

# bench_phase NAME PROTOCOL OPTIONS...: bench_facemask.py on PROTOCOL, cached in
# $KEEP/NAME_cache (a second call continues it), results and report in $KEEP/NAME, with
# every run's log and scalars, finished or not (how far the others got, and how fast);
# all of it as $OUT/NAME_gpu.tar.gz. Returns the benchmark's exit status (124: stopped
# at the deadline).
bench_phase() {
  local name=$1 proto=$2 data=.devdata/facemask jobs=() rc=0
  shift 2
  [ -d "$data" ] || data=${VKD_FACEMASK:-../shared/data/facemask}
  local bench=(benchmarks/bench_facemask.py --protocol "$proto" --data-root "$data"
               --cache "$KEEP/${name}_cache" --out "$KEEP/$name/results")
  case $proto in
    *toy) ;;
    *) bench+=(--lite-weights .devkit/lite_weights); start_mps || jobs=(--jobs 2) ;;
  esac
  timed 600 "$PY" "${bench[@]}" "${jobs[@]}" "$@" || rc=$?
  [ -z "$MPS_CTL" ] || { echo quit | "$MPS_CTL"; MPS_CTL=; }
  "$PY" "${bench[@]}" report > /dev/null
  (cd "$KEEP/${name}_cache" 2>/dev/null && find . \( -name run.log -o -name scalars.json \) \
     -exec cp --parents {} "$KEEP/$name/" \;)
  tar czf "$OUT/${name}_gpu.tar.gz" -C "$KEEP" "$name"
  return $rc
}

for phase in "$@"; do
  case $phase in
    checks) checks ;;
    cost-retinanet) cost 200 --configs vkd_retinanet_r50 --profile ;;
    cost-rest) cost 400 --configs vkd_faster-rcnn_r50 vkd_fcos_r50 vkd_gfl_r50 --profile ;;
    cost-recompute) cost 150 --configs vkd_retinanet_r50 --tap-options recompute=False ;;
    cost-whole) cost 150 --configs vkd_retinanet_r50 --tap-options chunk_elements=None ;;
    # FACEMASK_METHODS / FACEMASK_SEEDS: a second call that completes chosen runs
    facemask) bench_phase facemask "$protocol" --methods ${FACEMASK_METHODS:-${methods[@]}} \
                --seeds ${FACEMASK_SEEDS:-${seeds[@]}} ;;
    # (the methods on unlabelled images are the protocol's ablations: --ablation-seeds)
    fewlabels) bench_phase fewlabels "$fewlabels_protocol" --methods none vkd_lu pm_lu \
                 pseudo_labels --seeds "${fewlabels_seeds[@]}" \
                 --ablation-seeds "${fewlabels_seeds[@]}" ;;
    *) echo "gpu_session: unknown phase '$phase' (checks, cost-retinanet, cost-rest, cost-recompute, cost-whole, facemask, fewlabels)"
       exit 2 ;;
  esac
  echo "gpu_session: phase $phase exit $?, $(( $(date +%s) - start )) s since the start"
  # (at most 8 files come back: the cost results as one archive, plus the main table)
  if [ -n "$(ls -A "$KEEP/cost")" ]; then
    tar czf "$OUT/gpu_cost.tar.gz" -C "$KEEP" cost
    cp "$KEEP"/cost/gpu_cost*.md "$OUT"/
  fi
done
echo "gpu_session: done in $(( $(date +%s) - start )) s"
ls -l "$OUT"
