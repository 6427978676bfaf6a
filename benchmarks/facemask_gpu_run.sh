#!/usr/bin/env bash
# The face-mask GPU protocol in one go on a GPU machine (benchmarks/gpu_session.sh's
# facemask phase), after benchmarks/facemask_gpu_prepare.sh on the CPU machine and with
# its .devkit and .devdata beside the code:
#   bash benchmarks/facemask_gpu_run.sh
# Installs the kit, trains the teacher and the six main methods with seeds 0 and 1
# (benchmarks/bench_facemask.py --protocol gpu: runs in parallel, plain students beside
# the teacher) and returns facemask_gpu.tar.gz: per-run JSON, report, plots and every
# run's log. The benchmark stops at the deadline so that whatever finished comes back
# with its report; a rerun on the same warm machine continues from its cache.
#   bash benchmarks/facemask_gpu_run.sh --cpu-check   (on a CPU: the same steps at toy size)
exec bash "$(dirname "$0")/gpu_session.sh" "$@" facemask
