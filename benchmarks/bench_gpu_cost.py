"""What a VkD step costs on a GPU against the student's step plus the teacher's forward.

For each shipped config (``configs/<name>.py``) and its neck-only variant, on one
batch of random images with random boxes, with the config's optimizer:

* ``student``: the student's own training step (forward, backward, optimizer step);
* ``teacher``: the teacher's feature forward (``extract_feat``), no gradients;
* ``vkd``: the distiller's training step with the config's taps;
* ``vkd_neck``: the same with ``taps=['neck']``.

Times are medians of interleaved repetitions in one process (``benchmarks/timing.py``).
Peak memory (``torch.cuda.max_memory_allocated``) is measured per case in a phase
of its own, with only that case's model and optimizer on the device, so each
figure is that case's weights, optimizer state and activations.

Targets: ``t(vkd) / (t(student) + t(teacher)) <= 1.05`` (neck only
``<= 1.02``) and ``peak(vkd) <= 1.15 x (peak(student) + teacher weights)``.
Weights are random (no download here); the student is initialised as in
training (``init_weights``), so its losses are finite.

    python benchmarks/bench_gpu_cost.py [--device cuda] [--amp fp16|bf16|none]
        [--batch 8] [--size 800 1344] [--reps 10] [--configs NAME ...] [--profile]
        [--tap-options recompute=False ...] [--out benchmarks/results]
    python benchmarks/bench_gpu_cost.py --tiny     # CPU smoke run, as in the tests

Writes ``<out>/gpu_cost.json`` and ``gpu_cost.md`` (``--tiny``: ``gpu_cost_tiny.*``;
with ``--tap-options``, their values in the name), and with ``--profile``
``gpu_cost_profiles.txt``: the torch profiler's table of one VkD step per config.
"""
import argparse
import contextlib
import gc
import json
import sys
from pathlib import Path

import torch
from mmengine.config import DictAction

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import describe  # noqa: E402
from benchmarks.results_io import write_result  # noqa: E402
from benchmarks.timing import interleaved, medians  # noqa: E402

CONFIGS = ('vkd_retinanet_r50', 'vkd_faster-rcnn_r50', 'vkd_fcos_r50', 'vkd_gfl_r50')
CASES = ('student', 'teacher', 'vkd', 'vkd_neck')
TARGETS = dict(ratio=1.05, ratio_neck=1.02, memory_ratio=1.15)
AMP_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16, 'none': None}


def setup():
    import vkd_mmdet  # noqa: F401  (registers the plugin)
    from mmdet.utils import register_all_modules
    register_all_modules()


def model_config(name: str, taps=None, tap_options=None) -> dict:
    """The config's ``VkDDistiller`` settings with random, download-free weights,
    and ``tap_options`` (e.g. ``recompute=False``) added to its ``tap_defaults``."""
    from mmengine.config import Config
    from vkd_mmdet.models.teacher_model import build_teacher_config
    model = Config.fromfile(str(ROOT / 'configs' / f'{name}.py')).model.to_dict()
    model['teacher'] = build_teacher_config(model['teacher'])
    for side in (model['student'], model['teacher']):
        side['backbone']['init_cfg'] = None
    model['teacher_ckpt'] = None
    if taps is not None:
        model['taps'] = taps
    if tap_options:
        model['tap_defaults'] = dict(model.get('tap_defaults') or {}, **tap_options)
    return model


def optim_config(name: str, amp: str, device: str, distiller: bool) -> dict:
    """The config's optim_wrapper, with the AMP wrapper ``tools/train.py --amp``
    would pick, and the projectors kept out of weight decay as it does."""
    from mmengine.config import Config
    from vkd_mmdet.optim import exclude_projectors_from_weight_decay
    cfg = Config(dict(optim_wrapper=Config.fromfile(
        str(ROOT / 'configs' / f'{name}.py')).optim_wrapper.to_dict()))
    if distiller:
        exclude_projectors_from_weight_decay(cfg)
    wrapper = cfg.optim_wrapper.to_dict()
    if amp != 'none':
        if torch.device(device).type == 'cuda':
            wrapper.update(type='AmpOptimWrapper', loss_scale='dynamic',
                           dtype='float16' if amp == 'fp16' else 'bfloat16')
        else:
            wrapper.update(type='CPUAmpOptimWrapper',
                           dtype='float16' if amp == 'fp16' else 'bfloat16')
    return wrapper


def random_batch(model, batch: int, size, num_classes: int, seed: int = 0):
    """``batch`` random images of ``size`` with 6 random boxes each, preprocessed
    by ``model``'s data_preprocessor (on the model's device)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    h, w = size
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append((torch.rand(3, h, w, generator=g) * 255).to(torch.uint8))
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0)))
        xy = torch.rand(6, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = torch.rand(6, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3]) + 8
        sample.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1),
                                           labels=torch.randint(0, num_classes, (6,), generator=g))
        samples.append(sample)
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    return data['inputs'], data['data_samples']


def num_classes(model_cfg: dict) -> int:
    for key in ('bbox_head', 'roi_head'):
        head = model_cfg['student'].get(key)
        if head:
            return head.get('num_classes') or head['bbox_head']['num_classes']
    raise KeyError('no bbox_head/roi_head in the student config')


class Case:
    """One measured step: its models on the device and a zero-argument step."""

    def __init__(self, kind: str, name: str, args, batch_cache: dict):
        from mmdet.registry import MODELS
        from mmengine.config import ConfigDict
        from mmengine.optim import build_optim_wrapper
        taps = ['neck'] if kind == 'vkd_neck' else None
        cfg = model_config(name, taps, args.tap_options)
        device, amp = args.device, args.amp
        if kind == 'student':
            self.model = MODELS.build(ConfigDict(cfg['student'])).to(device)
            self.model.init_weights()
        elif kind == 'teacher':
            self.model = MODELS.build(ConfigDict(cfg['teacher'])).to(device).eval()
            self.model.init_weights()
            self.model.requires_grad_(False)
        else:
            self.model = MODELS.build(cfg).to(device)
            self.model.init_weights()
            self.model.teacher.init_weights()
        self.wrapper = None if kind == 'teacher' else build_optim_wrapper(
            self.model, optim_config(name, amp, device, distiller=kind.startswith('vkd')))
        key = (name, str(device))
        if key not in batch_cache:
            batch_cache[key] = random_batch(self.model, args.batch, args.size, num_classes(cfg))
        self.inputs, self.samples = batch_cache[key]
        self.autocast = torch.autocast(torch.device(device).type, dtype=AMP_DTYPES[amp],
                                       enabled=amp != 'none')
        self.kind = kind

    def step(self):
        if self.kind == 'teacher':
            with torch.no_grad(), self.autocast:
                self.model.extract_feat(self.inputs)
            return
        self.model.train()
        with self.wrapper.optim_context(self.model):
            losses = self.model.loss(self.inputs, self.samples)
        parsed, _ = self.model.parse_losses(losses)
        self.wrapper.update_params(parsed)

    def weight_bytes(self) -> int:
        model = self.model.teacher if self.kind.startswith('vkd') else self.model
        return sum(t.numel() * t.element_size()
                   for t in list(model.parameters()) + list(model.buffers()))


def free():
    """Return what unreferenced cases held to the device."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_memory_mib(kind: str, name: str, args, batch_cache: dict) -> dict:
    """Peak allocated memory of ``kind``'s third step, only its objects on the device."""
    if torch.device(args.device).type != 'cuda':
        return dict(peak_mib=None)
    free()
    base = torch.cuda.memory_allocated()
    case = Case(kind, name, args, batch_cache)
    case.step()
    case.step()  # optimizer state allocated, allocator warm
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    case.step()
    torch.cuda.synchronize()
    result = dict(peak_mib=(torch.cuda.max_memory_allocated() - base) / 2**20,
                  weights_mib=case.weight_bytes() / 2**20)
    del case
    free()
    return result


def profile_vkd(case: 'Case', path: Path, name: str) -> Path:
    """Append the torch profiler's table of one VkD step (after two warm-up steps)
    to ``path``."""
    from torch.profiler import ProfilerActivity, profile
    cuda = torch.device(case.inputs.device).type == 'cuda'
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    case.step()
    case.step()
    with profile(activities=activities, profile_memory=True) as prof:
        case.step()
        if cuda:
            torch.cuda.synchronize()
    sort = 'self_cuda_time_total' if cuda else 'self_cpu_time_total'
    averages = prof.key_averages()
    # The distiller's own ranges (vkd_distiller.py, maps_ahead.py), always listed: by
    # self time they can fall out of the 40 rows below (their time is their children's).
    parts = ['| part | CPU total ms | device total ms |', '|---|---|---|'] + [
        f'| {e.key} | {e.cpu_time_total / 1e3:.1f} | '
        f'{getattr(e, "device_time_total", 0) / 1e3:.1f} |'
        for e in sorted(averages, key=lambda e: e.key) if e.key.startswith('vkd:')]
    with open(path, 'a') as f:
        f.write(f'# {name}: one VkD training step\n\n' + '\n'.join(parts) + '\n\n'
                f'Sorted by {sort}:\n\n' + averages.table(sort_by=sort, row_limit=40) + '\n\n')
    return path


def measure(name: str, args, batch_cache: dict, profile_path: Path = None) -> dict:
    memory = {kind: peak_memory_mib(kind, name, args, batch_cache) for kind in CASES}
    cases = {kind: Case(kind, name, args, batch_cache) for kind in CASES if kind != 'teacher'}
    # The teacher forward is the distiller's own teacher (same weights, same batch).
    teacher = cases['vkd'].model.teacher
    autocast = cases['vkd'].autocast
    inputs = cases['vkd'].inputs

    def teacher_forward():
        with torch.no_grad(), autocast:
            teacher.extract_feat(inputs)

    steps = {'student': cases['student'].step, 'teacher': teacher_forward,
             'vkd': cases['vkd'].step, 'vkd_neck': cases['vkd_neck'].step}
    ms = {k: 1e3 * v for k, v in medians(interleaved(steps, args.reps, args.warmup,
                                                     args.device)).items()}
    result = dict(ms=ms, memory=memory,
                  ratio=ms['vkd'] / (ms['student'] + ms['teacher']),
                  ratio_neck=ms['vkd_neck'] / (ms['student'] + ms['teacher']))
    if memory['student']['peak_mib'] is not None:
        limit = memory['student']['peak_mib'] + memory['teacher']['weights_mib']
        result['memory_ratio'] = memory['vkd']['peak_mib'] / limit
        result['memory_ratio_neck'] = memory['vkd_neck']['peak_mib'] / limit
    if profile_path is not None:
        result['profile'] = str(profile_vkd(cases['vkd'], profile_path, name))
    del cases, steps  # (the teacher goes with the VkD case)
    free()
    return result


def report(result: dict) -> str:
    lines = ['# VkD on the GPU: cost against the student step plus the teacher forward', '',
             f'Machine: {result["machine"]}.', f'Command: `{result["command"]}`.', '',
             f'Batch {result["batch"]} at {result["size"][0]}x{result["size"][1]}, AMP '
             f'{result["amp"]}, median of {result["reps"]} interleaved repetitions '
             f'after {result["warmup"]} warm-up steps; random weights. Targets: ratio <= '
             f'{TARGETS["ratio"]} (neck only <= {TARGETS["ratio_neck"]}), memory <= '
             f'{TARGETS["memory_ratio"]}x (student peak + teacher weights). Tap options: '
             f'{result["tap_options"] or "as in the configs"}.', '',
             '| config | student ms | teacher ms | VkD ms | ratio | VkD neck-only ms | ratio '
             '| student peak MiB | teacher weights MiB | VkD peak MiB | memory ratio '
             '| neck-only peak MiB | memory ratio |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|']

    def num(value, fmt='.1f'):
        return '–' if value is None else format(value, fmt)

    for name, r in result['configs'].items():
        if 'error' in r:
            lines.append(f'| {name} | failed: {r["error"]} |' + ' |' * 11)
            continue
        ms, mem = r['ms'], r['memory']
        lines.append(
            f'| {name} | {ms["student"]:.1f} | {ms["teacher"]:.1f} | {ms["vkd"]:.1f} | '
            f'{r["ratio"]:.3f} | {ms["vkd_neck"]:.1f} | {r["ratio_neck"]:.3f} | '
            f'{num(mem["student"]["peak_mib"], ".0f")} | '
            f'{num(mem["teacher"].get("weights_mib"), ".0f")} | '
            f'{num(mem["vkd"]["peak_mib"], ".0f")} | {num(r.get("memory_ratio"), ".3f")} | '
            f'{num(mem["vkd_neck"]["peak_mib"], ".0f")} | '
            f'{num(r.get("memory_ratio_neck"), ".3f")} |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', choices=list(AMP_DTYPES), default='fp16')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1344), metavar=('H', 'W'))
    parser.add_argument('--reps', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--configs', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument('--tap-options', nargs='+', action=DictAction, default={},
                        help='tap options for every tap, e.g. recompute=False')
    parser.add_argument('--profile', action='store_true',
                        help='also write the torch profiler table of one VkD step per config')
    parser.add_argument('--tiny', action='store_true',
                        help='CPU smoke run: batch 2 at 128x128, 1 repetition, no AMP')
    parser.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results'))
    parser.add_argument('--append', action='store_true',
                        help='keep the configs an earlier run with the same settings wrote '
                             'to --out (a measurement split over several runs)')
    args = parser.parse_args(argv)
    if args.tiny:
        args.device, args.amp, args.batch, args.size = 'cpu', 'none', 2, (128, 128)
        args.reps, args.warmup = 1, 1
    if torch.device(args.device).type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('bench_gpu_cost: --device cuda, but torch sees no GPU; use --tiny on a CPU')
    args.size = tuple(args.size)
    setup()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = dict(machine=describe(args.device),
                  command='python benchmarks/bench_gpu_cost.py ' + ' '.join(
                      argv if argv is not None else sys.argv[1:]),
                  device=str(args.device), amp=args.amp, batch=args.batch, size=list(args.size),
                  tap_options=dict(args.tap_options),
                  reps=args.reps, warmup=args.warmup, targets=TARGETS, configs={})
    stem = 'gpu_cost_tiny' if args.tiny else 'gpu_cost'
    if args.tap_options:
        stem += '_' + '_'.join(f'{k}-{v}' for k, v in sorted(args.tap_options.items()))
    profile_path = out / f'{stem}_profiles.txt' if args.profile else None
    earlier = out / f'{stem}.json'
    if args.append and earlier.is_file():
        previous = json.loads(earlier.read_text())
        settings = ('device', 'amp', 'batch', 'size', 'tap_options', 'reps', 'warmup')
        differ = [k for k in settings if previous.get(k) != result[k]]
        if differ:
            raise SystemExit(f'bench_gpu_cost: --append to {earlier}, which was measured with '
                             f'other settings: ' + ', '.join(
                                 f'{k} {previous.get(k)} (now {result[k]})' for k in differ))
        result['configs'] = {k: v for k, v in previous['configs'].items()
                             if k not in args.configs}
        result['command'] = f'{previous["command"]}`, then `{result["command"]}'
    elif profile_path is not None and profile_path.exists():
        profile_path.unlink()
    batch_cache = {}
    for name in args.configs:
        print(f'bench_gpu_cost: {name}', flush=True)
        try:
            result['configs'][name] = measure(name, args, batch_cache, profile_path)
        except torch.cuda.OutOfMemoryError as exc:  # one config must not sink the others
            result['configs'][name] = dict(error=f'out of memory: {exc}'.splitlines()[0])
        batch_cache.clear()
        print(json.dumps(result['configs'][name], indent=1, default=str), flush=True)
        # after every config, so a run stopped at a time limit keeps what it measured
        write_result(out, stem, result, report(result), echo=False)
    print(report(result))
    return result


if __name__ == '__main__':
    with contextlib.suppress(BrokenPipeError):
        main()
