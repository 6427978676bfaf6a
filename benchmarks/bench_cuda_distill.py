"""VkD's distillation side on a CUDA GPU: correctness under AMP, and its cost.

CI and the development machines have no GPU, so this script is where the CUDA
path is checked. On the GPU it

* checks (PASS/FAIL lines, exit status 1 on any failure):
  - the QR orthogonal map is orthonormal to float32 precision for square,
    tall (64->128, 512->2048) and wide (128->64) maps;
  - :class:`VkDLoss` under ``torch.autocast`` in float16 and bfloat16 returns a
    finite float32 loss within a few percent of the float32 loss, with finite
    gradients in the student and the projector;
  - an optimisation loop with ``torch.amp.GradScaler`` (float16) lowers the loss;
  - every feature normalisation accepts half-precision input and returns
    finite float32 (whitening: identity covariance);
  - the orthogonal maps computed ahead on a side stream (maps_ahead.py), and big
    maps compared in blocks (``chunk_elements``), give the loss and gradients of
    the plain path under float16 autocast;
* measures (CUDA events, medians of interleaved repetitions):
  - forward+backward of each orthogonal map (qr, matrix_exp, cayley,
    householder) for 256x256 and 512->2048;
  - the distillation side of a RetinaNet FPN tap (5 levels, 256->256, batch 16,
    800x1333 inputs) and of a C5 tap 512->2048, in float32 and under AMP;
  - as the yardstick, a torchvision RetinaNet-R50-FPN training step (same batch
    and size, AMP) and a ResNet-101-FPN teacher forward without gradients.

    python benchmarks/bench_cuda_distill.py [--out DIR] [--small] [--device cpu] [--checks-only]

``--loss-modules-only`` imports only ``vkd_mmdet.models.{feature_norm,
orthogonal_projector, vkd_loss}`` (they need ``mmdet.registry``, not mmcv's
compiled ops), for a GPU machine without a CUDA build of mmcv. ``--small`` and
``--device cpu`` make a quick dry run of the script itself.
Writes ``cuda_distill.json`` and ``cuda_distill.md`` to ``--out``
(default benchmarks/results).
"""
import argparse
import importlib
import platform
import sys
import traceback
import types
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.timing import interleaved, medians  # noqa: E402
from benchmarks.results_io import write_result  # noqa: E402

FPN_SHAPES = [(100, 167), (50, 84), (25, 42), (13, 21), (7, 11)]  # 800x1333, P3-P7


def import_plugin(loss_modules_only: bool):
    """(OrthogonalProjector, VkDLoss, normalize) from vkd_mmdet."""
    if loss_modules_only:
        # Skip the package __init__ (environment check, distiller, hooks),
        # which imports mmdet.models and so mmcv's compiled ops.
        for name, path in (('vkd_mmdet', ROOT / 'vkd_mmdet'),
                           ('vkd_mmdet.models', ROOT / 'vkd_mmdet' / 'models')):
            module = types.ModuleType(name)
            module.__path__ = [str(path)]
            sys.modules[name] = module
        loss = importlib.import_module('vkd_mmdet.models.vkd_loss')
        proj = importlib.import_module('vkd_mmdet.models.orthogonal_projector')
        norm = importlib.import_module('vkd_mmdet.models.feature_norm')
        return proj.OrthogonalProjector, loss.VkDLoss, norm.normalize
    import vkd_mmdet  # noqa: F401
    from vkd_mmdet.models import OrthogonalProjector, VkDLoss, normalize
    return OrthogonalProjector, VkDLoss, normalize


def interleaved_ms(cases: dict, device, reps: int, warmup: int = 2) -> dict:
    """Median milliseconds of each case, repetitions interleaved across cases."""
    return {name: round(1e3 * t, 3)
            for name, t in medians(interleaved(cases, reps, warmup, str(device))).items()}


# ------------------------------------------------------------------ checks
class Checks:
    def __init__(self):
        self.results = []

    def __call__(self, name, ok, detail=''):
        self.results.append(dict(check=name, ok=bool(ok), detail=detail))
        print(f'{"PASS" if ok else "FAIL"}  {name}  {detail}', flush=True)

    def run(self, name, fn):
        try:
            fn()
        except Exception as exc:  # a crash is a failed check, with its reason
            self(name, False, f'raised {type(exc).__name__}: {exc}')
            traceback.print_exc()

    @property
    def failed(self):
        return [r for r in self.results if not r['ok']]


def formula_standardize(x):
    """Per-channel standardisation of a 4-D map written out: the reference."""
    from vkd_mmdet.models.feature_norm import STANDARDIZE_EPS
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0, keepdim=True)
    return (x - mean) * torch.rsqrt(var + STANDARDIZE_EPS)


def correctness(check: Checks, device, OrthogonalProjector, VkDLoss, normalize):
    def orthonormal():
        for cin, cout in ((256, 256), (64, 128), (512, 2048), (128, 64)):
            proj = OrthogonalProjector(cin, cout).to(device)
            with torch.no_grad():  # move off the initial point, as training does
                proj.linear.parametrizations.weight.original.add_(
                    0.5 * torch.randn_like(proj.linear.parametrizations.weight.original))
            err = proj.orthogonality_error()
            check(f'qr map {cin}->{cout} orthonormal on {device.type}', err < 1e-4,
                  f'max|gram - I| = {err:.2e}')

    def autocast_loss(dtype, tol):
        torch.manual_seed(0)
        conv = nn.Conv2d(64, 64, 3, padding=1).to(device)
        loss_fn = VkDLoss(64, 128, loss_weight=4.0).to(device)
        x = torch.randn(4, 64, 40, 40, device=device)
        teacher = torch.randn(4, 128, 40, 40, device=device) * 3 + 1
        ref = loss_fn(conv(x), teacher)
        with torch.autocast(device.type, dtype=dtype):
            student = conv(x)
            loss = loss_fn(student, teacher.to(dtype))
        loss.backward()
        raw = loss_fn.projector.linear.parametrizations.weight.original
        rel = abs(loss.item() - ref.item()) / abs(ref.item())
        name = str(dtype).replace('torch.', '')
        check(f'VkDLoss under autocast {name}: student feature is {name}',
              student.dtype == dtype, str(student.dtype))
        check(f'VkDLoss under autocast {name}: float32, finite, within {tol:.0%} of fp32',
              loss.dtype == torch.float32 and torch.isfinite(loss) and rel < tol,
              f'loss {loss.item():.5f} vs fp32 {ref.item():.5f} (rel {rel:.1e}), {loss.dtype}')
        finite = all(torch.isfinite(g).all() for g in (conv.weight.grad, raw.grad))
        check(f'VkDLoss under autocast {name}: finite gradients in student and projector',
              finite and raw.grad.abs().sum() > 0)

    def grad_scaler_loop():
        torch.manual_seed(0)
        conv = nn.Conv2d(64, 64, 3, padding=1).to(device)
        loss_fn = VkDLoss(64, 128).to(device)
        opt = torch.optim.AdamW(list(conv.parameters()) + list(loss_fn.parameters()), lr=1e-3)
        scaler = torch.amp.GradScaler(device.type, enabled=device.type == 'cuda')
        x = torch.randn(4, 64, 40, 40, device=device)
        teacher = nn.Conv2d(64, 128, 1).to(device)(x).detach()  # learnable target
        losses = []
        for _ in range(30):
            opt.zero_grad()
            with torch.autocast(device.type, dtype=torch.float16 if device.type == 'cuda'
                                else torch.bfloat16):
                loss = loss_fn(conv(x), teacher)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(loss.item())
        err = loss_fn.projector.orthogonality_error()
        check('GradScaler fp16 loop: loss falls, projector stays orthonormal',
              losses[-1] < 0.7 * losses[0] and err < 1e-4,
              f'loss {losses[0]:.4f} -> {losses[-1]:.4f}, max|WᵀW - I| {err:.1e}')

    def norms():
        x = (torch.randn(8, 64, 20, 20, device=device) * 5 + 2).half()
        for norm in ('standardize', 'layernorm', 'whiten', 'none'):
            with torch.autocast(device.type, dtype=torch.float16):
                y = normalize(x, norm, 1)
            ok = y.dtype == torch.float32 and torch.isfinite(y).all()
            detail = str(y.dtype)
            if norm == 'whiten':
                rows = y.movedim(1, -1).reshape(-1, 64)
                cov = rows.t() @ rows / rows.shape[0]
                cov_err = (cov - torch.eye(64, device=device)).abs().max().item()
                ok = ok and cov_err < 1e-2
                detail += f', max|cov - I| {cov_err:.1e}'
            check(f'normalize({norm}) on half input under autocast', ok, detail)

    def standardize_is_the_formula():
        # standardisation runs as one batch-norm kernel each way (on CUDA the native one:
        # cuDNN's needs eps >= 1e-5); it must be the formula, in value and gradient
        x = (torch.randn(8, 64, 20, 20, device=device) * 5 + 2).requires_grad_()
        weights = torch.randn_like(x)
        results = []
        for fn in (lambda v: normalize(v, 'standardize', 1), formula_standardize):
            x.grad = None
            y = fn(x)
            (y * weights).sum().backward()
            results.append((y.detach(), x.grad.clone()))
        err = max(((a - b).abs().max() / b.abs().max()).item()
                  for a, b in zip(results[0], results[1]))
        check(f'standardize (batch-norm kernels) is the formula on {device.type}', err < 1e-5,
              f'max relative difference {err:.1e}')

    def maps_ahead():
        from vkd_mmdet.models.maps_ahead import MapsAhead
        torch.manual_seed(0)
        losses = nn.ModuleDict({'neck': nn.ModuleList(
            [VkDLoss(64, 128), VkDLoss(64, 128)])}).to(device)
        x = [torch.randn(4, 64, 40, 40, device=device, requires_grad=True) for _ in range(2)]
        teacher = [torch.randn(4, 128, 40, 40, device=device).half() for _ in range(2)]
        results = []
        for ahead in (False, True):
            losses.zero_grad()
            for t in x:
                t.grad = None
            with torch.autocast(device.type, dtype=torch.float16):
                maps = MapsAhead(losses, device)['neck'] if ahead else [None, None]
                loss = sum(fn(s.half(), t, weight=w)
                           for fn, s, t, w in zip(losses['neck'], x, teacher, maps))
            loss.backward()
            results.append([loss.detach()] + [t.grad for t in x]
                           + [p.grad.clone() for p in losses.parameters()])
        err = max(((a - b).abs().max() / b.abs().max()).item()
                  for a, b in zip(results[1], results[0]))
        check(f'orthogonal maps ahead (side stream on {device.type}): same loss and gradients',
              err < 1e-5, f'max relative difference {err:.1e}')

    def blocks():
        from vkd_mmdet.models.blockwise_compare import block_count
        torch.manual_seed(0)
        whole = VkDLoss(64, 128, chunk_elements=None).to(device)
        in_blocks = VkDLoss(64, 128, chunk_elements=128 * 40 * 40).to(device)
        in_blocks.load_state_dict(whole.state_dict())
        x = torch.randn(4, 64, 40, 40, device=device, requires_grad=True)
        teacher = torch.randn(4, 128, 40, 40, device=device).half() * 3 + 1
        results = []
        for fn in (whole, in_blocks):
            x.grad = None
            with torch.autocast(device.type, dtype=torch.float16):
                loss = fn(x.half(), teacher)
            # scaled as a GradScaler would: unscaled, the feature's gradients (~1e-6)
            # are fp16 subnormals, whose spacing (6e-8) is all the two paths differ by
            (loss * 2.0 ** 12).backward()
            results.append([loss.detach(), x.grad] + [p.grad for p in fn.parameters()])
        err = max(((a - b).abs().max() / b.abs().max()).item()
                  for a, b in zip(results[1], results[0]))
        check(f'maps compared in 4 blocks: the whole map\'s loss and gradients on {device.type}',
              block_count(in_blocks, x, teacher) == 4 and err < 2e-3,  # fp16 rounding: 1e-3
              f'max relative difference {err:.1e}')

    check.run('orthonormal maps', orthonormal)
    check.run('maps ahead', maps_ahead)
    check.run('blocks', blocks)
    check.run('autocast float16', lambda: autocast_loss(torch.float16, 0.03))
    check.run('autocast bfloat16', lambda: autocast_loss(torch.bfloat16, 0.05))
    check.run('GradScaler loop', grad_scaler_loop)
    check.run('normalisations', norms)
    check.run('standardize', standardize_is_the_formula)


# ------------------------------------------------------------------ timings
def map_costs(device, reps, OrthogonalProjector, small):
    """Forward+backward of each orthogonal map (no features: the map alone)."""
    shapes = [(64, 64), (64, 256)] if small else [(256, 256), (512, 2048)]
    out = []
    for cin, cout in shapes:
        cases = {}
        for map_name in ('qr', 'matrix_exp', 'cayley', 'householder'):
            if map_name in ('matrix_exp', 'cayley') and cin != cout:
                continue  # torch's maps for non-square weights are all Householder
            proj = OrthogonalProjector(cin, cout, orthogonal_map=map_name).to(device)

            def step(proj=proj):
                proj.weight.sum().backward()
            cases[map_name] = step
        # householder on 512->2048 is slow: time it alone with few repetitions
        slow = {k: cases.pop(k) for k in ('householder',) if cin != cout and k in cases}
        res = interleaved_ms(cases, device, reps)
        res.update(interleaved_ms(slow, device, min(reps, 3), warmup=1))
        for name, ms in res.items():
            out.append(dict(map=name, shape=f'{cin}->{cout}', ms=ms))
            print(f'map {name:12s} {cin}->{cout}: {ms:.3f} ms', flush=True)
    return out


def side_costs(device, reps, VkDLoss, small):
    """The distillation side alone (projectors, norms, losses; fwd+bwd)."""
    batch = 2 if small else 16
    shapes = [(h // 4, w // 4) for h, w in FPN_SHAPES] if small else FPN_SHAPES
    fpn_losses = [VkDLoss(256, 256, loss_weight=4.0).to(device) for _ in shapes]
    fpn_student = [torch.randn(batch, 256, h, w, device=device) for h, w in shapes]
    fpn_teacher = [torch.randn(batch, 256, h, w, device=device) for h, w in shapes]
    c5 = shapes[2]
    c5_loss = VkDLoss(512, 2048, loss_weight=4.0).to(device)
    c5_student = torch.randn(batch, 512, *c5, device=device)
    c5_teacher = torch.randn(batch, 2048, *c5, device=device)

    def fpn(amp):
        def step():
            feats = [s.clone().requires_grad_() for s in fpn_student]
            with torch.autocast(device.type, enabled=amp, dtype=torch.float16):
                loss = sum(f(s.half() if amp else s, t.half() if amp else t)
                           for f, s, t in zip(fpn_losses, feats, fpn_teacher))
            loss.backward()
        return step

    def c5_step(amp):
        def step():
            s = c5_student.clone().requires_grad_()
            with torch.autocast(device.type, enabled=amp, dtype=torch.float16):
                loss = c5_loss(s.half() if amp else s, c5_teacher.half() if amp else c5_teacher)
            loss.backward()
        return step

    cases = {'fpn 5 levels 256->256, fp32': fpn(False)}
    if device.type == 'cuda':
        cases['fpn 5 levels 256->256, amp fp16'] = fpn(True)
    cases['C5 512->2048, fp32'] = c5_step(False)
    if device.type == 'cuda':
        cases['C5 512->2048, amp fp16'] = c5_step(True)
    res = interleaved_ms(cases, device, reps)
    for name, ms in res.items():
        print(f'side {name}: {ms:.3f} ms', flush=True)
    return dict(batch=batch, fpn_shapes=shapes, ms=res)


def detector_costs(device, reps, small):
    """torchvision RetinaNet-R50-FPN training step and an R101-FPN teacher forward."""
    from torchvision.models.detection import retinanet_resnet50_fpn
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    batch, (h, w) = (2, (200, 336)) if small else (16, (800, 1333))
    torch.manual_seed(0)
    model = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=80,
                                   min_size=h, max_size=w).to(device).train()
    teacher = resnet_fpn_backbone(backbone_name='resnet101', weights=None,
                                  trainable_layers=0).to(device).eval()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    amp = device.type == 'cuda'
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    images = [torch.rand(3, h, w, device=device) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(6, 2, device=device) * torch.tensor([w * 0.7, h * 0.7], device=device)
        wh = torch.rand(6, 2, device=device) * torch.tensor([w * 0.3, h * 0.3], device=device) + 8
        targets.append(dict(boxes=torch.cat([xy, xy + wh], 1),
                            labels=torch.randint(1, 80, (6,), device=device)))
    stacked = torch.stack(images)

    def student_step():
        opt.zero_grad()
        with torch.autocast(device.type, enabled=amp, dtype=torch.float16):
            losses = model(images, targets)
            loss = sum(losses.values())
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def teacher_forward():
        with torch.no_grad(), torch.autocast(device.type, enabled=amp, dtype=torch.float16):
            teacher(stacked)

    res = interleaved_ms({'RetinaNet-R50-FPN train step (student)': student_step,
                          'R101-FPN forward, no grad (teacher)': teacher_forward}, device, reps)
    for name, ms in res.items():
        print(f'{name}: {ms:.1f} ms', flush=True)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == 'cuda' else None
    return dict(batch=batch, size=[h, w], amp=amp, ms=res, peak_alloc_mib=peak)


def write(out_dir: Path, result: dict):
    lines = ['# VkD distillation side on CUDA', '',
             f'Machine: {result["machine"]}. Command: `{result["command"]}`.', '',
             '## Checks', '', '| check | result | detail |', '|---|---|---|']
    lines += [f'| {c["check"]} | {"PASS" if c["ok"] else "FAIL"} | {c["detail"]} |'
              for c in result['checks']]
    lines += ['', '## Orthogonal maps, forward+backward of the map alone (ms, median)', '',
              '| map | shape | ms |', '|---|---|---|']
    lines += [f'| {m["map"]} | {m["shape"]} | {m["ms"]:.3f} |' for m in result.get('maps', [])]
    side, det = result.get('side'), result.get('detector')
    if side:
        lines += ['', f'## Distillation side, forward+backward (batch {side["batch"]}; '
                  f'FPN levels {side["fpn_shapes"]})', '', '| case | ms |', '|---|---|']
        lines += [f'| {k} | {v:.3f} |' for k, v in side['ms'].items()]
    if det:
        lines += ['', f'## Yardstick: torchvision detectors (batch {det["batch"]}, '
                  f'{det["size"][0]}x{det["size"][1]}, AMP {det["amp"]})', '',
                  '| model | ms |', '|---|---|']
        lines += [f'| {k} | {v:.1f} |' for k, v in det['ms'].items()]
    if side and det:
        student = det['ms']['RetinaNet-R50-FPN train step (student)']
        teacher = det['ms']['R101-FPN forward, no grad (teacher)']
        key = 'fpn 5 levels 256->256, amp fp16' if det['amp'] else 'fpn 5 levels 256->256, fp32'
        fpn = side['ms'][key]
        lines += ['', f'FPN tap ({key}) as a share of the student step: '
                  f'**{100 * fpn / student:.2f}%**; (student + teacher + side) / '
                  f'(student + teacher) = **{(student + teacher + fpn) / (student + teacher):.3f}** '
                  f'(derived from the separate timings, not one end-to-end run).']
    write_result(out_dir, 'cuda_distill', result, lines, echo=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results'))
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--reps', type=int, default=10)
    parser.add_argument('--small', action='store_true', help='tiny shapes: a dry run')
    parser.add_argument('--loss-modules-only', action='store_true')
    parser.add_argument('--checks-only', action='store_true',
                        help='the correctness checks alone (seconds), no timings')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('bench_cuda_distill: no CUDA device; pass --device cpu for a dry run')
    OrthogonalProjector, VkDLoss, normalize = import_plugin(args.loss_modules_only)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor()
    result = dict(machine=f'{name}, torch {torch.__version__}', command=' '.join(
        ['python benchmarks/bench_cuda_distill.py'] + (argv if argv is not None else sys.argv[1:])))
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 in the checks
    check = Checks()
    correctness(check, device, OrthogonalProjector, VkDLoss, normalize)
    result['checks'] = check.results
    parts = () if args.checks_only else (
        ('maps', lambda: map_costs(device, args.reps, OrthogonalProjector, args.small)),
        ('side', lambda: side_costs(device, args.reps, VkDLoss, args.small)),
        ('detector', lambda: detector_costs(device, args.reps, args.small)))
    write(Path(args.out), result)
    for key, fn in parts:
        try:
            result[key] = fn()
        except Exception as exc:
            traceback.print_exc()
            result[f'{key}_error'] = f'{type(exc).__name__}: {exc}'
        write(Path(args.out), result)  # after each part: a timeout keeps what finished
    print(f'bench_cuda_distill: {len(check.failed)} failed check(s); '
          f'wrote {args.out}/cuda_distill.{{json,md}}')
    return 1 if check.failed or any(k.endswith('_error') for k in result) else 0


if __name__ == '__main__':
    sys.exit(main())
