"""Training cost on the face-mask pair: student alone, teacher forward, the VkD
distiller (defaults, and the head-tower, foreground-weighted and per-image
variants of the accuracy benchmark), prediction mimicking (alone and with VkD),
MMRazor FpnTeacherDistill + PKDLoss.

Each distiller is set against what it cannot avoid: the student's step plus the
teacher's forward as far as its taps reach (``teacher_forward``: backbone and
neck; ``teacher_forward_head``: the head's towers too, for head taps).

One process, one real batch (8 face-mask images resized as in the accuracy
benchmark, preprocessed once),
interleaved repetitions so that machine noise hits every model alike; the median
of the repetitions is reported. Peak resident memory is measured per model in a
separate child process (``--memory-of NAME``), since one process's peak is the
largest of everything it ever built. Also compares the exported VkD student's
checkpoint with a plain student's.

    python benchmarks/bench_facemask_cost.py [--reps 7] [--batch 8]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from benchmarks.results_io import write_result  # noqa: E402
from benchmarks.timing import interleaved  # noqa: E402
from benchmarks.bench_facemask import (METHODS, PAIR, PROTOCOLS, STUDENT_CFG,  # noqa: E402
                                       TEACHER_CFG, mmrazor_model, peak_rss_mib,
                                       teacher_model)

SCALE = PROTOCOLS['full']['scale']  # the accuracy benchmark's image size

# The distillers, as the accuracy benchmark's methods of the same names define them.
DISTILLERS = ('vkd', 'vkd_head', 'vkd_neck_fg', 'vkd_image_norm', 'pm', 'vkd_pm')
MODELS_UNDER_TEST = ('student', 'teacher_forward', 'teacher_forward_head', *DISTILLERS,
                     'mmrazor_pkd')


def reference(name: str) -> str:
    """The teacher forward a distiller's taps need."""
    taps = METHODS[name].get('taps', ['neck'])
    reach_head = any(str(t.get('module') if isinstance(t, dict) else t).startswith('bbox_head')
                     for t in taps)
    return 'teacher_forward_head' if reach_head else 'teacher_forward'
OUT = ROOT / 'benchmarks' / 'results'


def setup():
    import vkd_mmdet  # noqa: F401
    import benchmarks.efficientnet_lite  # noqa: F401
    from mmdet.utils import register_all_modules
    register_all_modules()
    from benchmarks.mmrazor_shim import import_mmrazor
    import_mmrazor()


def real_batch(data_root: str, batch: int):
    """One preprocessed training batch of real face-mask images."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(STUDENT_CFG))
    cfg.train_dataloader.dataset.data_root = f'{data_root}/'
    cfg.train_dataloader.batch_size = batch
    cfg.train_dataloader.sampler = dict(type='DefaultSampler', shuffle=False)
    cfg.train_dataloader.dataset.pipeline[2].scale = SCALE
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    data = preprocessor(next(iter(loader)), training=True)
    return data['inputs'], data['data_samples']


def build(name: str):
    """(module, step function) for one model under test."""
    from mmengine.config import Config
    from mmdet.registry import MODELS
    student_cfg = Config.fromfile(str(STUDENT_CFG)).model.to_dict()
    if name.startswith('teacher_forward'):
        teacher = MODELS.build(Config.fromfile(str(TEACHER_CFG)).model.to_dict()).eval()
        head = name == 'teacher_forward_head'

        def step(inputs, samples):
            with torch.no_grad():
                feats = teacher.neck(teacher.backbone(inputs))
                if head:
                    teacher.bbox_head(feats)
        return teacher, step
    if name == 'student':
        model = MODELS.build(student_cfg)
    elif name in DISTILLERS:
        method = METHODS[name]
        model = MODELS.build(dict(type='VkDDistiller', student=student_cfg,
                                  teacher=str(TEACHER_CFG), teacher_ckpt=None,
                                  taps=method.get('taps', ['neck']),
                                  tap_defaults=method['tap_defaults'], probe_size=(320, 320)))
    elif name == 'mmrazor_pkd':
        from mmrazor.registry import MODELS as RAZOR_MODELS
        teacher = teacher_model(student_cfg['bbox_head']['num_classes'])
        cfg = mmrazor_model(student_cfg, teacher, None, dict(type='PKDLoss', loss_weight=6))
        model = RAZOR_MODELS.build(cfg)  # its _scope_='mmrazor' selects the registry
    else:
        raise ValueError(name)
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(inputs, samples):
        losses = model(inputs, samples, mode='loss')
        total = sum(v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v)
                    for k, v in losses.items() if 'loss' in k)
        optim.zero_grad()
        total.backward()
        optim.step()
    return model, step


def time_interleaved(data_root, batch, reps, models=MODELS_UNDER_TEST):
    inputs, samples = real_batch(data_root, batch)
    steps = {name: build(name)[1] for name in models}
    return interleaved({name: (lambda step=step: step(inputs, samples))
                        for name, step in steps.items()}, reps, warmup=2)


def memory_of(name, data_root, batch) -> float:
    """Peak RSS (MiB) of a process that builds one model and runs 3 steps."""
    setup()
    inputs, samples = real_batch(data_root, batch)
    _, step = build(name)
    for _ in range(3):
        step(inputs, samples)
    return peak_rss_mib()


def checkpoint_sizes() -> dict:
    """Bytes of the exported VkD student vs a plain student's state dict."""
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from vkd_mmdet.export import save_student
    student_cfg = Config.fromfile(str(STUDENT_CFG))
    plain = MODELS.build(student_cfg.model.to_dict())
    vkd = MODELS.build(dict(type='VkDDistiller', student=student_cfg.model.to_dict(),
                            teacher=str(TEACHER_CFG), teacher_ckpt=None, taps=['neck'],
                            probe_size=(320, 320)))
    with tempfile.TemporaryDirectory() as tmp:
        plain_path = Path(tmp) / 'plain.pth'
        torch.save(dict(state_dict=plain.state_dict()), plain_path)
        vkd_path = Path(tmp) / 'vkd_student.pth'
        save_student(str(vkd_path), vkd.state_dict())
        return dict(plain_student_bytes=plain_path.stat().st_size,
                    vkd_exported_student_bytes=vkd_path.stat().st_size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', default=os.environ.get(
        'VKD_FACEMASK', str(ROOT.parent / 'shared' / 'data' / 'facemask')))
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--reps', type=int, default=7)
    parser.add_argument('--models', nargs='+', choices=MODELS_UNDER_TEST,
                        default=list(MODELS_UNDER_TEST),
                        help='measure these only (default: all); the references a distiller '
                             'is set against are added')
    parser.add_argument('--memory-of', choices=MODELS_UNDER_TEST, help=argparse.SUPPRESS)
    parser.add_argument('--out', default=str(OUT))
    args = parser.parse_args(argv)
    if args.memory_of:
        print(json.dumps(dict(peak_rss_mib=memory_of(args.memory_of, args.data_root, args.batch))))
        return
    setup()
    torch.manual_seed(0)
    wanted = set(args.models) | {'student'}
    wanted |= {reference(n) for n in wanted if n in DISTILLERS}
    models = [n for n in MODELS_UNDER_TEST if n in wanted]
    distillers = [n for n in DISTILLERS if n in wanted]
    times = time_interleaved(args.data_root, args.batch, args.reps, models)
    med = {k: statistics.median(v) for k, v in times.items()}
    memory = {}
    for name in models:
        proc = subprocess.run([sys.executable, __file__, '--memory-of', name, '--data-root',
                               args.data_root, '--batch', str(args.batch)],
                              capture_output=True, text=True, cwd=ROOT, check=True)
        memory[name] = json.loads(proc.stdout.strip().splitlines()[-1])['peak_rss_mib']
    sizes = checkpoint_sizes()
    chosen = '' if models == list(MODELS_UNDER_TEST) else f' --models {" ".join(args.models)}'
    result = dict(
        command=f'python benchmarks/bench_facemask_cost.py --reps {args.reps} '
                f'--batch {args.batch}{chosen}',
        machine=describe(),
        batch=args.batch, image_scale=SCALE, reps=args.reps,
        seconds_per_iter_median=med, seconds_per_iter_all=times, peak_rss_mib=memory,
        overhead_per_distiller={name: med[name] / (med['student'] + med[reference(name)])
                                for name in distillers}, **sizes)
    if 'vkd' in med:
        result['overhead_vs_student_plus_teacher'] = result['overhead_per_distiller']['vkd']
    if 'vkd' in med and 'mmrazor_pkd' in med:
        result['vkd_vs_mmrazor_pkd'] = med['vkd'] / med['mmrazor_pkd']
    lines = ['# Training cost, face-mask benchmark pair', '',
             f'Student: {PAIR["student"]}.', '', f'Teacher: {PAIR["teacher"]}.', '',
             f'Reproduce: `{result["command"]}`', '', f'Machine: {result["machine"]}; '
             f'batch {args.batch} real face-mask images resized to fit {SCALE}; median of {args.reps} '
             f'interleaved repetitions.', '',
             '| model | s / iteration | peak RSS (MiB) |', '|---|---|---|']
    for name in models:
        lines.append(f'| {name} | {med[name]:.3f} | {memory[name]:.0f} |')
    lines += ['', '| distiller | t / (t(student) + t(teacher forward it needs)) |',
              '|---|---|']
    lines += [f'| {name} ({METHODS[name]["label"]}) | {result["overhead_per_distiller"][name]:.3f} '
              f'(against {reference(name)}) |' for name in distillers]
    lines.append('')
    if 'overhead_vs_student_plus_teacher' in result:
        o = result['overhead_vs_student_plus_teacher']
        lines.append(f'- t(VkD) / (t(student) + t(teacher forward)) = **{o:.3f}** '
                     f'(target <= 1.05: {"met" if o <= 1.05 else "missed"})')
    if 'vkd_vs_mmrazor_pkd' in result:
        r = result['vkd_vs_mmrazor_pkd']
        lines.append(f'- t(VkD) / t(MMRazor PKD) = **{r:.3f}** (target <= 1.0: '
                     f'{"met" if r <= 1.0 else "missed"})')
    lines.append(f'- checkpoint: exported VkD student {sizes["vkd_exported_student_bytes"]} '
                 f'bytes, plain student {sizes["plain_student_bytes"]} bytes')
    write_result(args.out, 'facemask_cost', result, lines)


if __name__ == '__main__':
    main()
