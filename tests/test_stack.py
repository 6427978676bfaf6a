"""The real stack works: compiled mmcv ops, registries, mmdet configs, setuptools pin."""
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_mmcv_ops_run_on_real_tensors():
    from mmcv.ops import batched_nms, nms, roi_align
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    idxs = torch.tensor([0, 0, 0, 1])
    dets, keep = batched_nms(boxes, scores, idxs, dict(type='nms', iou_threshold=0.5))
    # Box 1 overlaps box 0 (IoU 0.68) in the same class and is suppressed;
    # box 3 is identical to box 0 but in another class and survives.
    assert sorted(keep.tolist()) == [0, 2, 3]
    _, keep = nms(boxes[:3], scores[:3], iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feat = torch.arange(16.).view(1, 1, 4, 4)
    out = roi_align(feat, torch.tensor([[0, 0, 0, 4, 4.]]), (2, 2), 1.0, 2, 'avg', True)
    assert out.shape == (1, 1, 2, 2) and torch.isfinite(out).all()


def test_plugin_names_are_found_through_mmdet_registries():
    import vkd_mmdet  # noqa: F401
    from mmdet.registry import HOOKS, MODELS
    for name in ('VkDDistiller', 'VkDLoss', 'OrthogonalProjector'):
        assert MODELS.get(name) is not None, name
    for name in ('DistillWeightScheduleHook', 'StudentExportHook', 'OrthogonalityLoggerHook'):
        assert HOOKS.get(name) is not None, name


def test_stock_retinanet_config_builds_from_mmdet_package():
    from mmengine.hub import get_config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = get_config('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'RetinaNet'
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, 128, 128))
    assert [f.shape[1] for f in feats] == [256] * 5


def test_plugin_config_inherits_mmdet_base_with_custom_imports(tmp_path):
    from mmengine.config import Config
    cfg_file = tmp_path / 'user.py'
    cfg_file.write_text(
        "_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'\n"
        "custom_imports = dict(imports=['vkd_mmdet'], allow_failed_imports=False)\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.type == 'RetinaNet'
    # The plugin's own configs ship inside the package and can be inherited,
    # and the result builds through mmengine's root registry (as a Runner does).
    cfg_file.write_text("_base_ = 'vkd_mmdet::vkd/vkd_gfl_r50.py'\n"
                        "model = dict(teacher_ckpt=None)\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.type == 'VkDDistiller' and cfg.model.student.type == 'GFL'
    from mmengine.registry import HOOKS, MODELS
    cfg.model.student.backbone.init_cfg = None
    assert type(MODELS.build(cfg.model)).__name__ == 'VkDDistiller'
    assert type(HOOKS.build(cfg.custom_hooks[-1])).__name__ == 'StudentExportHook'


def test_setuptools_pin_holds_and_pkg_resources_imports():
    import pkg_resources  # noqa: F401  (mmengine's `mmdet::` resolution needs it)
    import setuptools
    major = int(setuptools.__version__.split('.')[0])
    assert 77 <= major < 82, setuptools.__version__


def test_broken_mmcv_gives_a_clear_message_not_a_deep_traceback(tmp_path):
    # Shadow mmcv with a copy whose compiled extension is missing, as after a
    # `pip install mmcv` without ops, and import the plugin in a fresh process.
    fake = tmp_path / 'mmcv'
    fake.mkdir()
    (fake / '__init__.py').write_text("__version__ = '2.1.0'\n")
    (fake / 'ops.py').write_text("from . import _ext  # noqa\n")
    proc = subprocess.run([sys.executable, '-c', 'import vkd_mmdet'],
                          env={'PYTHONPATH': f'{tmp_path}:{ROOT}', 'PATH': '/usr/bin:/bin'},
                          capture_output=True, text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert 'EnvironmentProblem' in last and 'without working compiled ops' in last
    assert 'MMCV_WITH_OPS=1' in last


def test_readme_conversion_snippet_is_a_working_config(tmp_path):
    """The README's 'turn any config into a VkD config' lines parse and build."""
    from mmengine.config import Config
    from mmengine.registry import MODELS
    from helpers import readme_conversion_snippet
    snippet = readme_conversion_snippet()
    cfg_file = tmp_path / 'from_readme.py'
    cfg_file.write_text(snippet)
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.type == 'VkDDistiller' and cfg.model.student.type == 'RetinaNet'
    assert cfg.model.taps == ['neck']
    cfg.model.teacher_ckpt = None  # the snippet's path is a placeholder
    cfg.model.student.backbone.init_cfg = None
    cfg.model.probe_size = (128, 128)
    model = MODELS.build(cfg.model)
    assert len(model.projectors()) == 5


def test_make_setup_is_idempotent_and_skips_the_mmcv_build_when_ops_work():
    """`make setup` twice: the second run reuses everything, and a run whose
    stack stamp is stale reinstalls the plugin but does not rebuild mmcv."""
    import os
    import pytest
    stamp = Path(sys.prefix) / '.vkd-mmdet-stack'
    if not stamp.is_file():
        pytest.skip('the suite runs outside an environment made by `make setup`')
    env = dict(os.environ, VENV=sys.prefix)
    setup = ['bash', str(ROOT / 'tools' / 'setup_env.sh')]
    wanted = stamp.read_text()
    again = subprocess.run(setup, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f'is up to date (stack {wanted.strip()})' in again.stdout, again.stdout
    stamp.write_text('stale\n')
    try:
        redo = subprocess.run(setup, env=env, capture_output=True, text=True, timeout=600)
    finally:
        if stamp.read_text() == 'stale\n':
            stamp.write_text(wanted)
    assert redo.returncode == 0, (redo.stdout + redo.stderr)[-3000:]
    assert 'with compiled ops already works; skipping the build' in redo.stdout, redo.stdout
    assert 'building mmcv' not in redo.stdout and 'done:' in redo.stdout
    assert stamp.read_text() == wanted
