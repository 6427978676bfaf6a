"""The README's lines on a stock mmdet config nobody here wrote, trained through
tools/train.py on coco128: the base config's own hooks survive."""
import re

import torch
from mmengine.hooks import EMAHook
from mmengine.runner import Runner

from helpers import ROOT, cfg_options_argv, coco128_options, load_tool


def readme_config(tmp_path, base: str, teacher: str):
    """The README's conversion snippet with another base config and teacher."""
    readme = (ROOT / 'README.md').read_text()
    section = readme.split('### Turning any MMDetection config into a VkD config', 1)[1]
    snippet = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    snippet = re.sub(r"_base_ = '[^']*'", f"_base_ = '{base}'", snippet, count=1)
    snippet = re.sub(r"teacher='[^']*'", f"teacher='{teacher}'", snippet, count=1)
    path = tmp_path / 'drop_in.py'
    path.write_text(snippet)
    return path


def test_rtmdet_keeps_ema_and_pipeline_switch_and_exports_the_ema_student(tmp_path):
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
    train = load_tool('train')
    cfg = train.build_config(train.parse_args(
        [str(config), '--work-dir', str(tmp_path / 'work'), '--cfg-options',
         *cfg_options_argv({**coco128_options(batch=2, images=4), **small})]))
    runner = Runner.from_cfg(cfg)
    runner.train()
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
