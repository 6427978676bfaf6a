"""The README's lines on a stock mmdet config nobody here wrote, trained through
tools/train.py on coco128: the base config's own hooks survive."""
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import EMAHook
from mmengine.runner import Runner

from helpers import (ROOT, cfg_options_argv, coco128_options, load_tool, read_scalars,
                     readme_conversion_snippet, resize_options)


def readme_config(tmp_path, base: str, teacher: str):
    """The README's conversion snippet with another base config and teacher."""
    snippet = readme_conversion_snippet()
    snippet = re.sub(r"_base_ = '[^']*'", f"_base_ = '{base}'", snippet, count=1)
    snippet = re.sub(r"teacher='[^']*'", f"teacher='{teacher}'", snippet, count=1)
    path = tmp_path / 'drop_in.py'
    path.write_text(snippet)
    return path


def train_in_process(tmp_path, config, options: dict, edit=None) -> Runner:
    """tools/train.py's config handling, then mmengine's Runner in this process."""
    train = load_tool('train')
    cfg = train.build_config(train.parse_args(
        [str(config), '--work-dir', str(tmp_path / 'work'), '--cfg-options',
         *cfg_options_argv({**coco128_options(batch=2, images=4), **options})]))
    if edit is not None:
        edit(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_rtmdet_keeps_ema_and_pipeline_switch_and_exports_the_ema_student(tmp_path):
    # (the shipped RTMDet config runs its whole schedule in test_drop_in_schedules.py)
    config = readme_config(tmp_path, 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
                           'mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py')
    small = {  # RTMDet's 640 px pipeline at 160 px
        'train_dataloader.dataset.pipeline.2.img_scale': (160, 160),
        'train_dataloader.dataset.pipeline.3.scale': (320, 320),
        'train_dataloader.dataset.pipeline.4.crop_size': (160, 160),
        'train_dataloader.dataset.pipeline.7.size': (160, 160),
        'train_dataloader.dataset.pipeline.8.img_scale': (160, 160),
        'val_dataloader.dataset.pipeline.1.scale': (160, 160),
        'val_dataloader.dataset.pipeline.2.size': (160, 160),
        'test_dataloader.dataset.pipeline.1.scale': (160, 160),
        'test_dataloader.dataset.pipeline.2.size': (160, 160),
        'model.teacher_ckpt': None, 'model.student.backbone.init_cfg': None,
        'model.probe_size': (128, 128)}
    runner = train_in_process(tmp_path, config, small)
    hooks = [type(h).__name__ for h in runner.hooks]
    for name in ('EMAHook', 'PipelineSwitchHook', 'OrthogonalityLoggerHook', 'StudentExportHook'):
        assert name in hooks, hooks
    model = runner.model
    assert [p.student_strides for p in model.level_pairings.values()] == [[8, 16, 32]]
    assert [(p.in_channels, p.out_channels) for p in model.projectors().values()] == [(96, 128)] * 3

    # The exported student is the EMA student, as RTMDet evaluates and deploys it.
    ema = next(h for h in runner.hooks if isinstance(h, EMAHook)).ema_model.module.state_dict()
    exported = torch.load(tmp_path / 'work' / 'student' / 'student_final.pth',
                          weights_only=True)['state_dict']
    raw = model.state_dict()
    assert exported.keys() == {k[len('student.'):] for k in raw if k.startswith('student.')}
    for key, value in exported.items():
        assert torch.equal(value, ema[f'student.{key}']), key
    assert any(not torch.equal(value, raw[f'student.{key}']) for key, value in exported.items())


def test_dino_student_from_a_swin_teacher_pairs_the_levels_both_have(tmp_path):
    """configs/vkd_dino_r50.py: DETR-family student, Swin-L teacher with one more level."""
    def at_160_px(cfg):
        cfg.train_dataloader.dataset.pipeline = [
            dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale=(160, 160), keep_ratio=True),
            dict(type='RandomFlip', prob=0.5), dict(type='PackDetInputs')]
        for split in ('val_dataloader', 'test_dataloader'):
            cfg[split].dataset.pipeline[1].scale = (160, 160)

    runner = train_in_process(tmp_path, ROOT / 'configs' / 'vkd_dino_r50.py', {
        'model.teacher_ckpt': None, 'model.student.backbone.init_cfg': None,
        'model.probe_size': (128, 128),
        # a 160 px image has about 530 tokens: fewer than DINO's 900 queries
        'model.student.num_queries': 100}, edit=at_160_px)
    model = runner.model
    assert type(model.student).__name__ == 'DINO' and \
        type(model.teacher.backbone).__name__ == 'SwinTransformer'
    pairing = model.level_pairings['neck']
    assert (pairing.student_strides, pairing.teacher_strides) == ([8, 16, 32, 64], [4, 8, 16, 32, 64])
    assert (pairing.student, pairing.teacher) == ([0, 1, 2, 3], [1, 2, 3, 4])
    records = [r for r in read_scalars(tmp_path / 'work') if 'loss_vkd_neck' in r]
    assert len(records) == 2 and all(r['loss_vkd_neck'] > 0 for r in records)
    assert (tmp_path / 'work' / 'student' / 'student_final.pth').is_file()


def test_two_stage_student_from_a_cascade_teacher_on_backbone_and_neck(tmp_path):
    """The README's lines on Faster R-CNN R50 with a Cascade R-CNN R101 teacher."""
    config = readme_config(tmp_path, 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                           'mmdet::cascade_rcnn/cascade-rcnn_r101_fpn_1x_coco.py')
    runner = train_in_process(tmp_path, config, {
        **resize_options(Config.fromfile(str(config)), 160),
        'model.teacher_ckpt': None, 'model.student.backbone.init_cfg': None,
        'model.probe_size': (128, 128), 'model.taps': ['backbone', 'neck']})
    model = runner.model
    assert type(model.teacher).__name__ == 'CascadeRCNN'
    shapes = [(p.in_channels, p.out_channels) for p in model.projectors().values()]
    assert shapes == [(256, 256), (512, 512), (1024, 1024), (2048, 2048)] + [(256, 256)] * 5
    records = [r for r in read_scalars(tmp_path / 'work') if 'loss_vkd_neck' in r]
    assert len(records) == 2 and all(r['loss_vkd_backbone'] > 0 for r in records)


@pytest.mark.parametrize('source', ['readme', 'shipped'])
def test_retinanet_student_from_an_mmpretrain_convnext_teacher(tmp_path, source):
    """A teacher whose backbone is mmpretrain's ConvNeXt (its config imports
    `mmpretrain.models`): P2-P6 against the student's P3-P7, paired by stride."""
    teacher = 'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'
    config = (readme_config(tmp_path, 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', teacher)
              if source == 'readme' else ROOT / 'configs' / 'vkd_retinanet_r50_convnext-t.py')
    runner = train_in_process(tmp_path, config, {
        **resize_options(Config.fromfile(str(config)), 160),
        'model.teacher_ckpt': None, 'model.student.backbone.init_cfg': None,
        'model.probe_size': (128, 128)})
    model = runner.model
    backbone = type(model.teacher.backbone)
    assert (backbone.__name__, backbone.__module__.split('.')[0]) == ('ConvNeXt', 'mmpretrain')
    assert type(model.teacher).__name__ == 'MaskRCNN'
    pairing = model.level_pairings['neck']
    assert (pairing.student_strides, pairing.teacher_strides) == ([8, 16, 32, 64, 128],
                                                                  [4, 8, 16, 32, 64])
    assert (pairing.student, pairing.teacher) == ([0, 1, 2, 3], [1, 2, 3, 4])
    records = [r for r in read_scalars(tmp_path / 'work') if 'loss_vkd_neck' in r]
    assert len(records) == 2 and all(r['loss_vkd_neck'] > 0 for r in records)
