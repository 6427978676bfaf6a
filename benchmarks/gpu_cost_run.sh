#!/usr/bin/env bash
# Issue #13 on the H200 GPU machine as one device call (benchmarks/gpu_session.sh's
# cost phases): gpu_cost.{json,md} for the four shipped configs with the plugin's
# defaults and the profile of one VkD step each, then the RetinaNet config with
# recompute=False.
#   here:  bash benchmarks/facemask_gpu_prepare.sh   (or: bash ../shared/device/fetch.sh .devkit)
#   then:  run(command="bash benchmarks/gpu_cost_run.sh", carry=[".devkit"], timeout_s=590)
#   bash benchmarks/gpu_cost_run.sh --cpu-check      (here: the same at toy size)
exec bash "$(dirname "$0")/gpu_session.sh" "$@" cost-retinanet cost-rest cost-recompute
