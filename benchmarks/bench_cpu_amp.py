"""What mixed precision costs on this CPU: bf16 autocast against float32, for one
convolution and for one training iteration of a stock ``*amp*`` drop-in.

    python benchmarks/bench_cpu_amp.py [--out benchmarks/results]

1. One 3x3 convolution, 64 channels, 128x128, forward and backward, one thread: the
   median of 5 in float32 and under bf16 autocast.
2. The README's conversion lines on mmdet's
   ``centernet-update_r18_fpn_8xb8-amp-lsj-200e_coco.py`` (its R50 twin as the teacher,
   random weights), coco128, 2 images of 1024x1024 crops, one iteration through
   ``tools/train.py``'s config handling, once with ``optim_wrapper.bf16='never'``
   (float32) and once with ``'always'`` (bf16), each in its own process, one thread;
   the step's time (forward, backward, update; data loading and set-up excluded).
   ``'auto'`` (the default) picks bf16 only where the CPU has native bf16
   (:func:`vkd_mmdet.optim.cpu_amp_optim_wrapper.cpu_native_bf16`).

Writes ``cpu_amp.json`` and ``cpu_amp.md`` under ``--out``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import describe  # noqa: E402
from benchmarks.results_io import write_result  # noqa: E402

STUDENT = 'mmdet::centernet/centernet-update_r18_fpn_8xb8-amp-lsj-200e_coco.py'
TEACHER = 'mmdet::centernet/centernet-update_r50_fpn_8xb8-amp-lsj-200e_coco.py'
CONFIG = f"""_base_ = '{STUDENT}'
custom_imports = dict(imports=['vkd_mmdet'], allow_failed_imports=False)
model = dict(_delete_=True, type='VkDDistiller', student={{{{_base_.model}}}},
             teacher='{TEACHER}', taps=['neck'], check_teacher=False)
"""


def conv_seconds(dtype: str) -> float:
    import torch
    torch.set_num_threads(1)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(1, 64, 128, 128, requires_grad=True)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bfloat16'):
            y = conv(x)
        y.float().sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def one_iteration(bf16: str) -> dict:
    """Child process: build the drop-in as tools/train.py does, train one iteration."""
    import importlib.util
    coco = ROOT.parent / 'shared' / 'data' / 'coco128'
    spec = importlib.util.spec_from_file_location('train_tool', ROOT / 'tools' / 'train.py')
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / 'amp_drop_in.py'
        config.write_text(CONFIG)
        cfg = train.build_config(train.parse_args([str(config), '--work-dir', tmp]))
        cfg.optim_wrapper.bf16 = bf16
        cfg.model.student.backbone.init_cfg = None  # (random weights: nothing to download)
        dataset = cfg.train_dataloader.dataset
        while 'dataset' in dataset:  # (RepeatDataset)
            dataset.times = 1
            dataset = dataset.dataset
        dataset.update(data_root=f'{coco}/', ann_file='annotations/instances_train2017.json',
                       data_prefix=dict(img='train2017/'), indices=2)
        cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=100)
        cfg.param_scheduler = []
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, by_epoch=False)
        cfg.custom_hooks = [h for h in cfg.custom_hooks if h['type'] != 'StudentExportHook']
        from mmengine.hooks import Hook
        from mmengine.runner import Runner

        class IterationTimer(Hook):  # the step itself: forward, backward, update
            def before_train_iter(self, runner, batch_idx, data_batch=None):
                self.start = time.perf_counter()

            def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
                self.seconds = time.perf_counter() - self.start
        runner = Runner.from_cfg(cfg)
        timer = IterationTimer()
        runner.register_hook(timer, priority='VERY_LOW')
        runner.train()
        return dict(seconds=round(timer.seconds, 1), dtype=str(runner.optim_wrapper.cast_dtype),
                    crop=list(next(s['crop_size'] for s in cfg.train_pipeline
                                   if s['type'] == 'RandomCrop')))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results'))
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print('RESULT ' + json.dumps(one_iteration(args.child)))
        return
    import torch
    from vkd_mmdet.optim.cpu_amp_optim_wrapper import cpu_native_bf16
    native, what = cpu_native_bf16()
    result = dict(machine=describe('cpu'), native_bf16=native, cpu_has=what,
                  conv_seconds={d: round(conv_seconds(d), 4) for d in ('float32', 'bfloat16')},
                  iteration={})
    for bf16 in ('never', 'always'):
        proc = subprocess.run([sys.executable, __file__, '--child', bf16], capture_output=True,
                              text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'))
        line = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
        if proc.returncode != 0 or not line:
            raise SystemExit(f'bench_cpu_amp: the {bf16} run failed:\n{proc.stderr[-3000:]}')
        result['iteration'][bf16] = json.loads(line[0][len('RESULT '):])
    out = Path(args.out)
    conv, it = result['conv_seconds'], result['iteration']
    write_result(out, 'cpu_amp', result, [
        '# Mixed precision on the CPU', '',
        'Reproduce: `python benchmarks/bench_cpu_amp.py`', '',
        f"Machine: {result['machine']}; native bf16: {native} ({what}); torch "
        f'{torch.__version__}; one thread.', '',
        '| what | float32 | bf16 autocast | bf16 / float32 |', '|---|---|---|---|',
        f"| 3x3 conv, 64 channels, 128x128, forward + backward | {1000 * conv['float32']:.0f} ms "
        f"| {1000 * conv['bfloat16']:.0f} ms | {conv['bfloat16'] / conv['float32']:.1f}x |",
        f"| one iteration of the stock `*amp*` CenterNet drop-in, 2 images, "
        f"{it['never']['crop'][0]} px crops | {it['never']['seconds']:.1f} s | "
        f"{it['always']['seconds']:.1f} s | {it['always']['seconds'] / it['never']['seconds']:.1f}x |",
        '', f"`bf16='auto'` (the default) trains this CPU in "
        f"{'bf16' if native else 'float32'}.", ''])


if __name__ == '__main__':
    main()
