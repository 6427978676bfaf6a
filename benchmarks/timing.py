"""One timing loop for every benchmark: repetitions interleaved across cases.

Interleaving (case A, B, C, A, B, C, ...) spreads slow drifts of the machine
(thermal state, other processes, allocator warm-up) over all cases alike, so
their ratios stay fair. On a GPU the clock is a pair of CUDA events around the
call, with the device synchronised before and after; on a CPU, perf_counter.
"""
import statistics
import time
from typing import Callable, Dict, List

import torch


def elapsed_seconds(fn: Callable[[], object], device: str = 'cpu') -> float:
    """Wall time of one call of ``fn``, device work included."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(cases: Dict[str, Callable[[], object]], reps: int, warmup: int = 2,
                device: str = 'cpu') -> Dict[str, List[float]]:
    """Seconds of every repetition of every case, after ``warmup`` untimed calls each."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            times[name].append(elapsed_seconds(fn, device))
    return times


def medians(times: Dict[str, List[float]]) -> Dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}
