"""`make demo`: the whole VkD story offline, on a detection set generated here.

1. generate the shapes set (COCO format, deterministic from --seed) under
   <work-dir>/shapes, or reuse it;
2. train the teacher (configs/demo/shapes_teacher_r34_fpn64.py), or reuse the one
   cached under <work-dir>/teacher_<config hash>;
3. train the student without distillation (configs/demo/shapes_student_r18_fpn32.py);
4. train the same student, same seed and budget, with VkD
   (configs/demo/vkd_shapes_r34_to_r18.py);
5. print the table (bbox mAP, mAP50, training time), write results.{json,md}, a
   PNG plot and the exported plain-MMDetection student into <work-dir>.

Every run goes through tools/train.py's own config handling and mmengine's Runner,
with mmdet's CocoDataset and CocoMetric: the same code path as real training.

    python tools/demo.py [--quick] [--seed 0] [--work-dir work_dirs/demo]
"""
import argparse
import hashlib
import itertools
import json
import os.path as osp
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tools'))

import vkd_mmdet  # noqa: E402,F401
from mmengine.runner import Runner  # noqa: E402

import train as train_tool  # noqa: E402  (tools/train.py)
from vkd_mmdet.demo import make_shapes_coco  # noqa: E402
from vkd_mmdet.scalars import read_scalars  # noqa: E402

CONFIGS = ROOT / 'configs' / 'demo'
TEACHER_CFG = CONFIGS / 'shapes_teacher_r34_fpn64.py'
STUDENT_CFG = CONFIGS / 'shapes_student_r18_fpn32.py'
VKD_CFG = CONFIGS / 'vkd_shapes_r34_to_r18.py'

# (train images, val images, teacher epochs, student epochs). The default fits in
# about 10 minutes on 2 CPU cores including the teacher; --quick in about 3.
PROTOCOLS = {'default': (400, 100, 6, 3), 'quick': (96, 48, 2, 2)}


_RUNS = itertools.count()


def log(msg: str) -> None:
    print(f'demo: {msg}', flush=True)


def fmt_time(seconds: float) -> str:
    return f'{int(seconds // 60)}m{seconds % 60:04.1f}s'


def train(config: Path, work_dir: Path, name: str, data: Path, epochs: int, seed: int,
          extra=()) -> dict:
    """Train ``config`` through tools/train.py's config handling; return its metrics."""
    ann = data / 'annotations'
    options = [f'train_dataloader.dataset.data_root={data}/',
               f'val_dataloader.dataset.data_root={data}/',
               f'test_dataloader.dataset.data_root={data}/',
               f'val_evaluator.ann_file={ann}/val.json',
               f'test_evaluator.ann_file={ann}/val.json',
               f'max_epochs={epochs}', f'train_cfg.max_epochs={epochs}',
               f'train_cfg.val_interval={epochs}', f'default_hooks.checkpoint.interval={epochs}',
               f'param_scheduler.1.end={epochs}', f'param_scheduler.1.T_max={epochs}',
               f'randomness.seed={seed}',
               # mmdet's visualizer is a process-wide instance per name
               f'visualizer.name=demo_{name}_{next(_RUNS)}', *extra]
    cfg = train_tool.build_config(train_tool.parse_args(
        [str(config), '--work-dir', str(work_dir), '--cfg-options', *options]))
    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    seconds = time.time() - start
    metrics = {k.split('/')[-1]: float(v.current())
               for k, v in runner.message_hub.log_scalars.items() if k.startswith('val/coco/')}
    note = None
    if 'bbox_mAP' not in metrics:
        # mmdet's CocoMetric returns nothing when no box passes the score
        # threshold (an undertrained model, e.g. in --quick): that is mAP 0.
        note = 'no detections above the score threshold: mAP counted as 0'
        log(f'the {name} run made {note} (log in {work_dir})')
        metrics = dict(bbox_mAP=0.0, bbox_mAP_50=0.0)
    return dict(bbox_mAP=metrics['bbox_mAP'], bbox_mAP_50=metrics['bbox_mAP_50'], note=note,
                train_seconds=round(seconds, 1), work_dir=str(work_dir),
                checkpoint=str(work_dir / f'epoch_{epochs}.pth'),
                scalars=str(next(work_dir.glob(f'{runner.timestamp}/vis_data/scalars.json'))))


def teacher(work_root: Path, data: Path, data_params: dict, epochs: int, seed: int) -> dict:
    """Train the teacher, or reuse the one cached for the same config, data and seed."""
    key = hashlib.sha256(TEACHER_CFG.read_bytes() + (CONFIGS / '_shapes_retinanet.py').read_bytes()
                         + json.dumps([data_params, epochs, seed]).encode()).hexdigest()[:10]
    work_dir = work_root / f'teacher_{key}'
    record = work_dir / 'teacher.json'
    if record.is_file():
        result = json.loads(record.read_text())
        if osp.isfile(result['checkpoint']):
            log(f'[2/4] teacher: reusing {result["checkpoint"]} (cached for this config)')
            return dict(result, cached=True)
    if work_dir.exists():
        shutil.rmtree(work_dir)  # an interrupted run: start it again
    log(f'[2/4] teacher: training RetinaNet-R34/FPN-64 for {epochs} epochs into {work_dir}')
    result = train(TEACHER_CFG, work_dir, 'teacher', data, epochs, seed)
    record.write_text(json.dumps(result, indent=1))
    return dict(result, cached=False)


def loss_curve(scalars: str, keys) -> tuple:
    """(iterations, sum of ``keys``) from a LocalVisBackend scalars.json."""
    records = [r for r in read_scalars(scalars) if all(k in r for k in keys)]
    return [r['step'] for r in records], [sum(r[k] for k in keys) for r in records]


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(results)
    x = range(len(names))
    bars.bar([i - 0.2 for i in x], [100 * results[n]['bbox_mAP'] for n in names], 0.4,
             label='bbox mAP')
    bars.bar([i + 0.2 for i in x], [100 * results[n]['bbox_mAP_50'] for n in names], 0.4,
             label='mAP50')
    bars.set_xticks(list(x), names)
    bars.set_ylabel('val (%)')
    bars.set_title('Validation accuracy')
    bars.legend()
    for n in names:
        steps, values = loss_curve(results[n]['scalars'], ('loss_cls', 'loss_bbox'))
        curves.plot(steps, values, label=f'{n}: detection loss')
    steps, values = loss_curve(results['VkD student']['scalars'], ('loss',))
    curves.plot(steps, values, '--', label='VkD student: total (with distillation)')
    curves.set_xlabel('iteration')
    curves.set_ylabel('training loss')
    curves.set_title('Training loss')
    curves.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(results: dict, protocol: str, seed: int, total: float) -> str:
    lines = [f'VkD demo ({protocol} protocol, seed {seed}), val split of the generated '
             f'shapes set, total {fmt_time(total)}', '',
             '| model | bbox mAP | mAP50 | training time |', '|---|---|---|---|']
    for name, r in results.items():
        note = ' (cached)' if r.get('cached') else ''
        lines.append(f'| {name} | {100 * r["bbox_mAP"]:.1f} | {100 * r["bbox_mAP_50"]:.1f} | '
                     f'{fmt_time(r["train_seconds"])}{note} |')
    gain = 100 * (results['VkD student']['bbox_mAP'] - results['plain student']['bbox_mAP'])
    lines += ['', f'VkD - plain student: {gain:+.1f} bbox mAP']
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='smaller set and shorter schedules (a smoke run, ~3 min)')
    parser.add_argument('--seed', type=int, default=0, help='data and training seed')
    parser.add_argument('--work-dir', default=str(ROOT / 'work_dirs' / 'demo'))
    args = parser.parse_args(argv)
    protocol = 'quick' if args.quick else 'default'
    n_train, n_val, teacher_epochs, epochs = PROTOCOLS[protocol]
    work_root = Path(args.work_dir).resolve() / protocol
    start = time.time()

    data_params = dict(num_train=n_train, num_val=n_val, size=128, seed=args.seed)
    data = work_root / 'shapes'
    make_shapes_coco(str(data), **data_params)
    log(f'[1/4] data: {n_train} train / {n_val} val generated images (5 shape classes) in {data}')

    results = {'teacher': teacher(work_root, data, data_params, teacher_epochs, args.seed)}
    # where configs/demo/vkd_shapes_r34_to_r18.py looks for it when run on its own
    shutil.copyfile(results['teacher']['checkpoint'], work_root / 'teacher.pth')
    log(f'[2/4] teacher: bbox mAP {100 * results["teacher"]["bbox_mAP"]:.1f}')

    log(f'[3/4] plain student: RetinaNet-R18/FPN-32, {epochs} epochs, no distillation')
    results['plain student'] = train(STUDENT_CFG, work_root / 'student_plain', 'plain', data,
                                     epochs, args.seed)
    log(f'[3/4] plain student: bbox mAP {100 * results["plain student"]["bbox_mAP"]:.1f} '
        f'in {fmt_time(results["plain student"]["train_seconds"])}')

    log('[4/4] VkD student: same student, seed and budget, distilled from the teacher')
    results['VkD student'] = train(
        VKD_CFG, work_root / 'student_vkd', 'vkd', data, epochs, args.seed,
        extra=[f'model.teacher={TEACHER_CFG}',
               f'model.teacher_ckpt={results["teacher"]["checkpoint"]}'])
    log(f'[4/4] VkD student: bbox mAP {100 * results["VkD student"]["bbox_mAP"]:.1f} '
        f'in {fmt_time(results["VkD student"]["train_seconds"])}')

    exported = work_root / 'student_vkd' / 'student'
    shutil.copyfile(exported / 'student_final.pth', work_root / 'vkd_student.pth')
    shutil.copyfile(exported / 'student_config.py', work_root / 'vkd_student_config.py')
    total = time.time() - start
    text = report(results, protocol, args.seed, total)
    (work_root / 'results.md').write_text(text + '\n')
    (work_root / 'results.json').write_text(json.dumps(
        dict(protocol=protocol, seed=args.seed, total_seconds=round(total, 1),
             runs=results), indent=1))
    plot(results, work_root / 'demo.png')
    print('\n' + text + '\n')
    log(f'results: {work_root}/results.md and results.json; plot: {work_root}/demo.png')
    log(f'distilled student, loadable by stock MMDetection: {work_root}/vkd_student.pth '
        f'with {work_root}/vkd_student_config.py')


if __name__ == '__main__':
    main()
