"""`make demo`: a short, offline VkD distillation smoke run on real COCO images.

Until the full demo (teacher vs plain student vs VkD student with mAP table and
plots) lands, this runs the real training path — configs/vkd_retinanet_r50.py
through mmengine's Runner — with a small RetinaNet R18 student and an R50 teacher
on ../shared/data/coco128 (or $VKD_DATA_ROOT/coco128), for a few iterations on
the CPU, and exports the student. No download: the student trains from scratch
and the teacher is randomly initialised, so the numbers show the mechanics, not
accuracy.

    python tools/demo.py [--iters-images N] [--work-dir work_dirs/demo]
"""
import argparse
import os
import os.path as osp
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import vkd_mmdet  # noqa: E402,F401
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from vkd_mmdet.demo import small_retinanet  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=16, help='coco128 images to train on')
    parser.add_argument('--work-dir', default=str(ROOT / 'work_dirs' / 'demo'))
    parser.add_argument('--quick', action='store_true', help='4 images only')
    args = parser.parse_args(argv)
    data = Path(os.environ.get('VKD_DATA_ROOT', ROOT.parent / 'shared' / 'data')) / 'coco128'
    if not (data / 'annotations' / 'instances_train2017.json').is_file():
        raise SystemExit(f'demo: coco128 not found at {data}; set VKD_DATA_ROOT to the '
                         f'folder holding coco128/')
    images = 4 if args.quick else args.images

    cfg = Config.fromfile(str(ROOT / 'configs' / 'vkd_retinanet_r50.py'))
    cfg.model = dict(type='VkDDistiller', student=small_retinanet(18, 64, stacked_convs=2),
                     teacher=small_retinanet(50, 128, stacked_convs=2), teacher_ckpt=None,
                     taps=['backbone', 'neck'], probe_size=(256, 256))
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[split].dataset
        ds.update(data_root=f'{data}/', ann_file='annotations/instances_train2017.json',
                  data_prefix=dict(img='train2017/'), indices=images)
        for step in ds.pipeline:
            if step.type == 'Resize':
                step.scale = (320, 320)
        cfg[split].update(num_workers=0, persistent_workers=False)
    cfg.train_dataloader.batch_size = 4
    for ev in ('val_evaluator', 'test_evaluator'):
        cfg[ev].ann_file = f'{data}/annotations/instances_train2017.json'
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.default_hooks.logger.interval = 1
    cfg.custom_hooks = [dict(type='DistillWeightScheduleHook', warmup_iters=2),
                        dict(type='OrthogonalityLoggerHook'),
                        dict(type='StudentExportHook')]
    cfg.work_dir = args.work_dir
    print(f'demo: VkD smoke run, {images} coco128 images, R50/FPN-128 teacher -> '
          f'R18/FPN-64 student, work dir {args.work_dir}', flush=True)
    Runner.from_cfg(cfg).train()
    student = osp.join(args.work_dir, 'student')
    print(f'demo: done. Plain MMDetection student: {student}/student_final.pth with '
          f'{student}/student_config.py; logs in {args.work_dir}.')


if __name__ == '__main__':
    main()
