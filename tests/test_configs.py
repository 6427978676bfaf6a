"""Every shipped config builds and trains two iterations on coco128 through the CLI."""
import subprocess
import sys

import pytest
from mmengine.config import Config

from helpers import ROOT, read_scalars, cfg_options_argv, coco128_options, resize_options

CONFIGS = ['vkd_retinanet_r50.py', 'vkd_faster-rcnn_r50.py', 'vkd_fcos_r50.py',
           'vkd_gfl_r50.py']


@pytest.mark.parametrize('name', CONFIGS)
def test_config_trains_two_iterations_via_cli(name, tmp_path):
    config = ROOT / 'configs' / name
    cfg = Config.fromfile(str(config))
    assert cfg.model.type == 'VkDDistiller' and cfg.model.teacher_ckpt.startswith('https://')
    # No download here: a randomly initialised teacher stands in for the zoo one.
    options = {**coco128_options(batch=1, images=2), **resize_options(cfg, 224),
               'model.teacher_ckpt': None, 'model.student.backbone.init_cfg': None}
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'train.py'), str(config),
         '--work-dir', str(tmp_path), '--cfg-options', *cfg_options_argv(options)],
        capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_scalars(tmp_path)
    train = [r for r in records if 'loss_vkd_neck' in r]
    assert [r['iter'] for r in train] == [1, 2]
    for r in train:
        # The optimised total is the student's losses plus the distillation term.
        parts = sum(v for k, v in r.items() if k.startswith('loss_'))
        assert abs(r['loss'] - parts) <= 1e-3 * abs(r['loss']) + 1e-4, r
        # Defaults: 4 x smooth-L1 of standardised features, averaged over the
        # levels. Random student and teacher features put each level near
        # 4 x 0.7; a sum over the 5 levels or unnormalised features would not.
        per_unit_weight = r['loss_vkd_neck'] / r.get('vkd_weight', 1.0)
        assert 1.0 < per_unit_weight < 5.0, r
    assert (tmp_path / 'student' / 'student_final.pth').is_file()
