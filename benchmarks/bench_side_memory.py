"""Peak memory of one VkD tap level's float32 side, whole map against blocks, on the CPU.

One ``VkDLoss`` forward and backward on a half-precision map (as under AMP), for each
``chunk_elements`` setting, each in a fresh process: the peak resident memory above
the process's state before the step (``VmHWM`` after resetting it through
``/proc/self/clear_refs``). Maps above 32 MiB are allocated and freed through mmap, so
the peak follows the tensors alive at once. The default shape is half of a stride-4
ResNet stage at 800x1344 with batch 8 (8x256x200x336); its GPU counterpart is
``bench_gpu_cost.py --tap-options chunk_elements=None``.

    python benchmarks/bench_side_memory.py [--shape N C H W] [--settings None 16777216 ...]
        [--repeats 3] [--out benchmarks/results]

Settings are run in turn, ``--repeats`` rounds (single runs on this machine vary by
about a second); the table gives the median time and its range.

Writes ``<out>/side_memory.{json,md}``.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_facemask import proc_status_mib  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from benchmarks.results_io import write_result  # noqa: E402


def one(shape, chunk_elements) -> dict:
    """In this process: the peak above the start of one forward+backward."""
    import torch
    from vkd_mmdet.models.blockwise_compare import block_count
    from vkd_mmdet.models.vkd_loss import VkDLoss
    torch.manual_seed(0)
    n, c, h, w = shape
    student = torch.randn(n, c, h, w).half().requires_grad_()
    teacher = torch.randn(n, c, h, w).half()
    loss = VkDLoss(c, c, chunk_elements=chunk_elements)
    with torch.no_grad():
        loss.projector_weight()  # the QR's workspace is not the side's
    start = proc_status_mib('VmRSS')
    Path('/proc/self/clear_refs').write_text('5')  # reset VmHWM to the current RSS
    began = time.perf_counter()
    loss(student, teacher).backward()
    blocks = len(student.chunk(block_count(loss, student, teacher)))
    return dict(chunk_elements=chunk_elements, blocks=blocks,
                peak_above_start_mib=round(proc_status_mib('VmHWM') - start, 1),
                seconds=round(time.perf_counter() - began, 2))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--shape', type=int, nargs=4, default=(8, 256, 200, 168),
                        metavar=('N', 'C', 'H', 'W'))
    parser.add_argument('--settings', nargs='+', default=['None', str(2 ** 24), str(256 * 200 * 168)],
                        help="chunk_elements values ('None': the whole map)")
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--one', help=argparse.SUPPRESS)
    parser.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results'))
    args = parser.parse_args(argv)
    parse = (lambda v: None if v == 'None' else int(v))
    if args.one is not None:
        print(json.dumps(one(args.shape, parse(args.one))))
        return None
    rounds = {setting: [] for setting in args.settings}
    for _ in range(args.repeats):  # interleaved, so that drift hits every setting alike
        for setting in args.settings:
            proc = subprocess.run([sys.executable, __file__, '--one', setting, '--shape',
                                   *map(str, args.shape)], capture_output=True, text=True,
                                  cwd=ROOT, check=True)
            rounds[setting].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rounds[setting][-1], flush=True)
    runs = []
    for setting, reps in rounds.items():
        seconds = sorted(r['seconds'] for r in reps)
        runs.append(dict(reps[0], seconds=statistics.median(seconds),
                         seconds_range=[seconds[0], seconds[-1]],
                         peak_above_start_mib=max(r['peak_above_start_mib'] for r in reps)))
    n, c, h, w = args.shape
    map_mib = n * c * h * w * 4 / 2 ** 20
    result = dict(machine=describe(), shape=list(args.shape), float32_map_mib=round(map_mib, 1),
                  command='python benchmarks/bench_side_memory.py ' + ' '.join(
                      argv if argv is not None else sys.argv[1:]), runs=runs)
    lines = ['# One tap level\'s float32 side: peak memory, whole map against blocks (CPU)', '',
             f'Machine: {result["machine"]}. Command: `{result["command"]}`.', '',
             f'Half-precision maps {tuple(args.shape)} on both sides, one forward and backward '
             f'of `VkDLoss` (standardise both sides, smooth-L1); one float32 copy of the map is '
             f'{map_mib:.0f} MiB.', '',
             f'Median of {args.repeats} runs of each setting, each in a fresh process '
             f'(the range in brackets); the peak is the largest of them.', '',
             '| chunk_elements | blocks | peak above start (MiB) | in float32 maps | seconds |',
             '|---|---|---|---|---|']
    lines += [f'| {r["chunk_elements"]} | {r["blocks"]} | {r["peak_above_start_mib"]:.0f} | '
              f'{r["peak_above_start_mib"] / map_mib:.1f} | {r["seconds"]} '
              f'({r["seconds_range"][0]}-{r["seconds_range"][1]}) |' for r in runs]
    write_result(args.out, 'side_memory', result, lines)
    return result


if __name__ == '__main__':
    main()
