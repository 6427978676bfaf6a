"""Cost of the distillation side of a VkD step vs a RetinaNet-R18 training step.

Measures, in one process on this machine:
  * a RetinaNet-R18-FPN training step (batch 4, 320x320, forward+backward+SGD);
  * the distillation side alone (all projectors, normalisation and losses,
    forward+backward; the teacher forward excluded) for taps on all 5 FPN levels
    (256->256) plus a backbone C5 tap 512->2048 (an R18 student, an R50 teacher);
  * each orthogonal map's forward+backward cost for 256x256 and 512->2048.
Repetitions are interleaved; medians are reported.

    .venv/bin/python benchmarks/bench_distill_cost.py [--reps 10]

Writes benchmarks/results/distill_cost.json and .md.
"""
import argparse
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vkd_mmdet  # noqa: E402,F401
from benchmarks.machine import describe  # noqa: E402
from benchmarks.results_io import write_result  # noqa: E402
from benchmarks.timing import interleaved  # noqa: E402
from vkd_mmdet.models import OrthogonalProjector, VkDLoss  # noqa: E402

RESULTS = Path(__file__).resolve().parent / 'results'
B, SIZE = 4, 320
FPN_SIZES = [40, 20, 10, 5, 3]  # RetinaNet P3..P7 at 320 px


def timed(fn, reps, warmup=2):
    return interleaved({'case': fn}, reps, warmup)['case']


def retinanet_r18_step():
    from mmengine.hub import get_config
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.structures import InstanceData
    cfg = get_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py')
    cfg.model.backbone.init_cfg = None
    register_all_modules()
    model = MODELS.build(cfg.model).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(B, 3, SIZE, SIZE, generator=g)
    samples = []
    for _ in range(B):
        s = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE),
                                        batch_input_shape=(SIZE, SIZE), scale_factor=(1., 1.)))
        xy = torch.rand(5, 2, generator=g) * 200
        wh = torch.rand(5, 2, generator=g) * 100 + 10
        s.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1),
                                      labels=torch.randint(0, 80, (5,), generator=g))
        samples.append(s)

    def step():
        losses = model.loss(inputs, samples)
        loss = sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def distill_side(fpn=True, c5=True):
    torch.manual_seed(0)
    pairs = [(VkDLoss(256, 256), (256, s), (256, s)) for s in FPN_SIZES] if fpn else []
    if c5:
        pairs.append((VkDLoss(512, 2048), (512, 10), (2048, 10)))
    feats = [(torch.randn(B, cs, s, s, requires_grad=True), torch.randn(B, ct, s, s))
             for _, (cs, s), (ct, _) in pairs]
    params = [p for m, _, _ in pairs for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=1e-3)

    def step():
        total = sum(m(s, t) for (m, _, _), (s, t) in zip(pairs, feats))
        opt.zero_grad()
        total.backward()
        opt.step()
    return step


def matmul_floor():
    """Only the per-position projections (fwd+bwd): what any projection must pay."""
    shapes = [(256, 256, s) for s in FPN_SIZES] + [(512, 2048, 10)]
    xs = [torch.randn(B, ci, s, s, requires_grad=True) for ci, _, s in shapes]
    ws = [torch.randn(co, ci, requires_grad=True) for ci, co, _ in shapes]

    def step():
        total = sum(torch.nn.functional.conv2d(x, w[:, :, None, None]).square().mean()
                    for x, w in zip(xs, ws))
        total.backward()
    return step


def map_cost(c_in, c_out, orthogonal_map):
    proj = OrthogonalProjector(c_in, c_out, orthogonal_map=orthogonal_map)

    def step():
        w = proj.weight
        w.sum().backward()
    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--reps', type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    step_r18 = retinanet_r18_step()
    step_distill = distill_side()
    t_r18, t_distill = [], []
    for _ in range(args.reps):  # interleaved
        t_r18 += timed(step_r18, 1, warmup=1 if not t_r18 else 0)
        t_distill += timed(step_distill, 3, warmup=1 if not t_distill else 0)
    r18 = statistics.median(t_r18)
    dist = statistics.median(t_distill)
    parts = {
        'FPN taps only (5 x 256->256)': statistics.median(timed(distill_side(c5=False), args.reps)),
        'C5 tap only (512->2048)': statistics.median(timed(distill_side(fpn=False), args.reps)),
        'projection matmuls alone (fwd+bwd, all taps)': statistics.median(timed(matmul_floor(), args.reps)),
    }

    maps = {}
    for shape in [(256, 256), (512, 2048)]:
        for name in ('qr', 'cayley', 'matrix_exp', 'householder'):
            reps = 1 if (name != 'qr' and shape[1] == 2048) else 5
            key = f'{name} {shape[0]}->{shape[1]}'
            maps[key] = statistics.median(timed(map_cost(*shape, name), reps, warmup=1))
            print(f'  map {key}: {maps[key] * 1e3:.1f} ms fwd+bwd', flush=True)

    result = dict(
        command='.venv/bin/python benchmarks/bench_distill_cost.py --reps %d' % args.reps,
        machine=f'{describe()}, {torch.get_num_threads()} threads',
        batch=B, size=SIZE,
        retinanet_r18_step_s=r18, distill_side_s=dist, distill_fraction=dist / r18,
        distill_taps='5 FPN levels 256->256 + backbone C5 512->2048, standardize, smooth-L1, QR map',
        map_fwd_bwd_s=maps, parts_s=parts,
        raw=dict(retinanet_r18_step_s=t_r18, distill_side_s=t_distill))
    lines = [
        '# Distillation-side cost (issue: VkD core)', '',
        f'Command: `{result["command"]}`  ', f'Machine: {result["machine"]}', '',
        '| what | median time | share of R18 step |', '|---|---|---|',
        f'| RetinaNet-R18 training step, B={B}, {SIZE}px | {r18 * 1e3:.0f} ms | 100% |',
        f'| distillation side ({result["distill_taps"]}) | {dist * 1e3:.1f} ms | '
        f'{100 * dist / r18:.2f}% |',
    ] + [f'| {k} | {v * 1e3:.1f} ms | {100 * v / r18:.2f}% |' for k, v in parts.items()] + [
        '',
        '| orthogonal map | forward+backward |', '|---|---|',
    ] + [f'| {k} | {v * 1e3:.1f} ms |' for k, v in maps.items()]
    write_result(RESULTS, 'distill_cost', result, lines)


if __name__ == '__main__':
    main()
