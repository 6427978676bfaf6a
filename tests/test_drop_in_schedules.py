"""The README's lines on stock configs whose hooks and wrappers act on the schedule,
through whole (tiny) schedules on coco128: every epoch-driven hook fires, then
tools/test.py evaluates the checkpoint and stock MMDetection, without the plugin,
runs the exported student.

- YOLOX: MultiImageMixDataset (Mosaic, MixUp), YOLOXModeSwitchHook (sets
  `model.bbox_head.use_l1` and drops the mixing transforms for the last epochs),
  SyncNormHook, EMAHook;
- RTMDet: PipelineSwitchHook, EMAHook with buffers;
- an `*amp*` config (AmpOptimWrapper, RepeatDataset, large-scale jitter) on a CPU;
- Mask R-CNN: boxes and masks evaluated.
"""
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from helpers import ROOT, cfg_options_argv, data_root, load_tool, read_scalars, visualizer_name
from test_drop_in import readme_config

SIZE = 128  # pixels: every image scale, crop and pad of the pipelines
EPOCHS = 3

STOCK_PREDICT = r'''
import sys
from mmdet.apis import init_detector, inference_detector
model = init_detector(sys.argv[1], sys.argv[2], device='cpu')
assert 'vkd_mmdet' not in sys.modules, 'the plugin must not be needed'
result = inference_detector(model, sys.argv[3])
print('boxes', len(result.pred_instances))
'''


def coco128(dataset: dict, images: int) -> None:
    """Point the innermost dataset of a (wrapped) dataset config at coco128 (a
    RepeatDataset wrapper stays, repeating once)."""
    while 'dataset' in dataset:
        if 'times' in dataset:
            dataset['times'] = 1
        dataset = dataset['dataset']
    dataset.update(data_root=f'{data_root() / "coco128"}/',
                   ann_file='annotations/instances_train2017.json',
                   data_prefix=dict(img='train2017/'), indices=images)


def shrink_pipeline(pipeline) -> None:
    for step in pipeline or []:
        for key in ('img_scale', 'scale', 'size', 'crop_size'):
            if key in step:
                step[key] = (SIZE, SIZE)
        if 'border' in step:
            step['border'] = (-SIZE // 2, -SIZE // 2)


def pipelines(cfg):
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[split]['dataset']
        while True:
            yield dataset.get('pipeline')
            if 'dataset' not in dataset:
                break
            dataset = dataset['dataset']
    for hook in cfg.get('custom_hooks', []):
        yield hook.get('switch_pipeline')


def tiny_schedule(cfg, epochs: int = EPOCHS) -> None:
    """The config's own schedule, hooks and pipelines, shrunk: ``epochs`` epochs of 2
    coco128 images at SIZE px, epoch boundaries of the schedule scaled to match."""
    old_epochs = cfg.train_cfg.max_epochs
    cfg.train_cfg.update(max_epochs=epochs, val_interval=epochs)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].update(batch_size=2, num_workers=0, persistent_workers=False)
        coco128(cfg[split]['dataset'], 2)
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = f'{data_root() / "coco128"}/annotations/instances_train2017.json'
    for pipeline in pipelines(cfg):
        shrink_pipeline(pipeline)
    for augment in cfg.model.student.data_preprocessor.get('batch_augments') or []:
        for key in ('size', 'random_size_range'):
            if key in augment:
                augment[key] = (SIZE, SIZE)
    for scheduler in cfg.param_scheduler:
        if scheduler.get('by_epoch', True):
            for key in ('begin', 'end', 'T_max'):
                if key in scheduler:
                    scheduler[key] = min(epochs, round(scheduler[key] * epochs / old_epochs))
            begin = scheduler['begin'] = min(scheduler.get('begin', 0), epochs - 1)
            if 'end' in scheduler:
                scheduler['end'] = max(scheduler['end'], begin + 1)
            if 'milestones' in scheduler:
                scheduler['milestones'] = [max(1, epochs - 1)]
        elif 'end' in scheduler:
            scheduler['end'] = min(scheduler['end'], 2)
    for hook in cfg.get('custom_hooks', []):
        if hook['type'] == 'YOLOXModeSwitchHook':
            hook['num_last_epochs'] = 1
        if hook['type'] == 'PipelineSwitchHook':
            hook['switch_epoch'] = epochs - 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=epochs)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    # (mmdet's visualizer is a process-wide instance by name: one per run)
    cfg.visualizer.name = visualizer_name()
    cfg.model.update(teacher_ckpt=None, probe_size=(SIZE, SIZE))
    cfg.model.student.backbone.init_cfg = None
    # an untrained student's scores are all low, and CocoMetric returns nothing
    # without a box: keep every box (two-stage detectors: the RoI head's threshold)
    for test_cfg in (cfg.model.student.get('test_cfg') or {},
                     (cfg.model.student.get('test_cfg') or {}).get('rcnn') or {}):
        if 'score_thr' in test_cfg:
            test_cfg['score_thr'] = 0.0


def train_test_and_deploy(tmp_path, config, epochs: int = EPOCHS, edit=None):
    """tools/train.py's config handling and a whole tiny schedule, then tools/test.py
    on the last checkpoint and the exported student in a process without the plugin.
    Returns the runner, the test metrics and the training log's records."""
    train = load_tool('train')
    work = tmp_path / 'work'
    cfg = train.build_config(train.parse_args([str(config), '--work-dir', str(work)]))
    tiny_schedule(cfg, epochs)
    if edit is not None:
        edit(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    records = read_scalars(work)
    assert [r['epoch'] for r in records if 'loss' in r][-1] == epochs

    dumped = work / 'train_config.py'
    cfg.dump(str(dumped))
    metrics = load_tool('test').main([str(dumped), str(work / f'epoch_{epochs}.pth'),
                                      '--work-dir', str(tmp_path / 'test')])
    assert 'coco/bbox_mAP' in metrics, metrics

    student = work / 'student'
    image = next((data_root() / 'coco128' / 'train2017').glob('*.jpg'))
    proc = subprocess.run([sys.executable, '-c', STOCK_PREDICT, str(student / 'student_config.py'),
                           str(student / 'student_final.pth'), str(image)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0 and 'boxes' in proc.stdout, proc.stderr[-3000:]
    return runner, metrics, records


def test_yolox_mode_switch_reaches_the_students_head(tmp_path):
    config = readme_config(tmp_path, 'mmdet::yolox/yolox_tiny_8xb8-300e_coco.py',
                           'mmdet::yolox/yolox_s_8xb8-300e_coco.py')
    runner, _, records = train_test_and_deploy(tmp_path, config)
    hooks = [type(h).__name__ for h in runner.hooks]
    for name in ('YOLOXModeSwitchHook', 'SyncNormHook', 'EMAHook', 'StudentExportHook'):
        assert name in hooks, hooks
    # the switch fired at the last epoch: L1 loss on, mixing transforms off
    assert runner.model.student.bbox_head.use_l1 is True
    losses = {r['epoch']: r for r in records if 'loss' in r}
    assert 'loss_l1' in losses[EPOCHS] and 'loss_l1' not in losses[1]
    assert all(r['loss_vkd_neck'] > 0 for r in losses.values())


def test_rtmdet_pipeline_switch_and_buffer_ema_through_the_schedule(tmp_path):
    runner, _, records = train_test_and_deploy(tmp_path, ROOT / 'configs' / 'vkd_rtmdet_tiny.py',
                                               epochs=2)
    switch = next(h for h in runner.hooks if type(h).__name__ == 'PipelineSwitchHook')
    assert switch._has_switched
    # the switched pipeline: large-scale jitter without Mosaic and MixUp
    steps = [type(t).__name__ for t in runner.train_dataloader.dataset.pipeline.transforms]
    assert 'RandomResize' in steps and not {'CachedMosaic', 'CachedMixUp'} & set(steps), steps


def test_a_stock_amp_config_trains_on_a_cpu(tmp_path, capsys):
    config = readme_config(tmp_path,
                           'mmdet::centernet/centernet-update_r18_fpn_8xb8-amp-lsj-200e_coco.py',
                           'mmdet::centernet/centernet-update_r50_fpn_8xb8-amp-lsj-200e_coco.py')
    runner, _, _ = train_test_and_deploy(tmp_path, config, epochs=1)
    assert type(runner.optim_wrapper).__name__ == 'CPUAmpOptimWrapper'
    assert "the config's AmpOptimWrapper needs a GPU, and there is none: using " \
           "CPUAmpOptimWrapper (bfloat16 autocast where the CPU computes bf16 natively, " \
           "else float32) instead" in capsys.readouterr().out
    assert type(runner.train_dataloader.dataset).__name__ == 'RepeatDataset'


def test_mask_rcnn_boxes_and_masks(tmp_path):
    config = readme_config(tmp_path, 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
                           'mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py')
    # (no epoch-driven hook: one epoch)
    _, metrics, _ = train_test_and_deploy(tmp_path, config, epochs=1)
    assert 'coco/segm_mAP' in metrics


@pytest.mark.parametrize('dtype, want', [(None, 'bfloat16'), ('float16', 'float16')])
def test_tools_train_swaps_a_configs_amp_wrapper_for_the_cpu_one(tmp_path, dtype, want):
    base = 'mmdet::centernet/centernet-update_r18_fpn_8xb8-amp-lsj-200e_coco.py'
    config = tmp_path / 'amp.py'
    config.write_text(f"_base_ = '{base}'\n" + (f"optim_wrapper = dict(dtype='{dtype}')\n"
                                                if dtype else ''))
    train = load_tool('train')
    cfg = train.build_config(train.parse_args([str(config)]))
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == ('CPUAmpOptimWrapper', want)
