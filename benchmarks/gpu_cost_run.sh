#!/usr/bin/env bash
# The GPU cost benchmark in one go on a GPU machine (benchmarks/gpu_session.sh's
# cost phases): gpu_cost.{json,md} for the four shipped configs with the plugin's
# defaults and the profile of one VkD step each, then the RetinaNet config with
# recompute=False.
#   on the CPU machine:  bash benchmarks/facemask_gpu_prepare.sh   (or: bash ../shared/device/fetch.sh .devkit)
#   on the GPU machine:  bash benchmarks/gpu_cost_run.sh
#   bash benchmarks/gpu_cost_run.sh --cpu-check      (on a CPU: the same at toy size)
exec bash "$(dirname "$0")/gpu_session.sh" "$@" cost-retinanet cost-rest cost-recompute
