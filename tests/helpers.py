"""Test helpers: real data from ../shared/data and small real detectors."""
import itertools
import os
from pathlib import Path

import pytest
import torch

from vkd_mmdet.scalars import read_scalars  # noqa: F401  (re-exported for the tests)

ROOT = Path(__file__).resolve().parents[1]
_RUN_IDS = itertools.count()


def data_root() -> Path:
    root = Path(os.environ.get('VKD_DATA_ROOT', ROOT.parent / 'shared' / 'data'))
    if not (root / 'coco128').is_dir():
        pytest.fail(f'real test data not found at {root} (expected coco128/ and '
                    f'facemask/); set VKD_DATA_ROOT to the shared data folder')
    return root


def readme_conversion_snippet() -> str:
    """The config lines under the README's 'Turning any MMDetection config into a VkD
    config' heading: the snippet users paste, read from one place by every test."""
    import re
    readme = (ROOT / 'README.md').read_text()
    heading = '## Turning any MMDetection config into a VkD config'
    if heading not in readme:
        raise AssertionError(f'README.md has no heading {heading!r}')
    section = readme.split(heading, 1)[1]
    return re.search(r'```python\n(.*?)```', section, re.S).group(1)



def visualizer_name() -> str:
    """A name no other run of this process has: mmdet's visualizer is a process-wide
    instance by name, and a second run under the same name logs into the first one's
    folder."""
    return f'visualizer-{next(_RUN_IDS)}'


def coco128_options(size=256, batch=2, images=4, val_images=4, teacher_check=False):
    """--cfg-options that point a stock COCO config at coco128, small and fast. The
    teacher's val pass before training (``model.check_teacher``) stays off unless
    ``teacher_check``: only the tests of that check need it."""
    coco = f'{data_root() / "coco128"}/'
    opts = {
        'train_dataloader.dataset.data_root': coco,
        'train_dataloader.dataset.indices': images,
        'train_dataloader.batch_size': batch,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.dataset.data_root': coco,
        'val_dataloader.dataset.ann_file': 'annotations/instances_train2017.json',
        'val_dataloader.dataset.data_prefix.img': 'train2017/',
        'val_dataloader.dataset.indices': val_images,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'val_evaluator.ann_file': f'{coco}annotations/instances_train2017.json',
        'test_dataloader.dataset.data_root': coco,
        'test_dataloader.dataset.ann_file': 'annotations/instances_train2017.json',
        'test_dataloader.dataset.data_prefix.img': 'train2017/',
        'test_dataloader.dataset.indices': val_images,
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
        'test_evaluator.ann_file': f'{coco}annotations/instances_train2017.json',
        'train_cfg.max_epochs': 1,
        'train_cfg.val_interval': 100,
        'default_hooks.logger.interval': 1,
        'default_hooks.checkpoint.interval': 1,
        'env_cfg.cudnn_benchmark': False,
        'randomness.seed': 0,
        # mmdet names its visualizer 'visualizer', a process-wide instance: a second
        # Runner in the same process would log into the first one's folder.
        'visualizer.name': visualizer_name(),
    }
    if not teacher_check:
        opts['model.check_teacher'] = False
    return opts


def small_vkd_runner_cfg(work_dir, size=128, batch=2, images=4, taps=('neck', ), **model):
    """An in-process Runner config: the shipped RetinaNet VkD config with the
    small pair, ``images`` coco128 images at ``size`` px, no checkpoints, no
    custom hooks, every iteration logged."""
    import copy
    from mmengine.config import Config
    student, teacher = small_pair()
    cfg = Config.fromfile(str(ROOT / 'configs' / 'vkd_retinanet_r50.py'))
    cfg.merge_from_dict({**coco128_options(batch=batch, images=images),
                         **resize_options(cfg, size)})
    cfg.model = dict(type='VkDDistiller', student=copy.deepcopy(student),
                     teacher=copy.deepcopy(teacher), taps=list(taps),
                     probe_size=(128, 128), **model)
    cfg.custom_hooks = []
    cfg.work_dir = str(work_dir)
    cfg.log_processor.window_size = 1  # log each iteration's values, not a running mean
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, save_last=False)
    return cfg


def resize_options(cfg, size):
    """Options setting every Resize in the train/val pipelines to ``size``."""
    opts = {}
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for i, step in enumerate(cfg[split]['dataset']['pipeline']):
            if step['type'] == 'Resize':
                opts[f'{split}.dataset.pipeline.{i}.scale'] = (size, size)
    return opts


# Output channels of ResNet stages C2..C5: basic blocks (18/34) vs bottlenecks.
_STAGE_CHANNELS = {False: [64, 128, 256, 512], True: [256, 512, 1024, 2048]}


def small_retinanet(depth: int = 18, fpn: int = 64, stacked_convs: int = 1,
                    num_classes: int = 80) -> dict:
    """mmdet's RetinaNet with a ResNet-``depth`` backbone, an ``fpn``-channel neck
    and head, and no pretrained initialisation (nothing to download)."""
    from mmengine.hub import get_config
    model = get_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py').model
    model.backbone.update(depth=depth, init_cfg=None)
    model.neck.update(in_channels=_STAGE_CHANNELS[depth >= 50], out_channels=fpn)
    model.bbox_head.update(in_channels=fpn, feat_channels=fpn,
                           stacked_convs=stacked_convs, num_classes=num_classes)
    return model.to_dict()


def small_pair():
    """(student, teacher) configs: RetinaNet R18/FPN-64 and R50/FPN-128."""
    return small_retinanet(18, fpn=64), small_retinanet(50, fpn=128)


def detection_batch(model, n=2, size=128, seed=0):
    """A preprocessed batch with real boxes, through the model's data_preprocessor."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append((torch.rand(3, size, size, generator=g) * 255).to(torch.uint8))
        s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                        scale_factor=(1.0, 1.0)))
        xy = torch.rand(3, 2, generator=g) * size * 0.6
        wh = torch.rand(3, 2, generator=g) * size * 0.3 + 8
        s.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1),
                                      labels=torch.randint(0, 80, (3,), generator=g))
        samples.append(s)
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    return data['inputs'], data['data_samples']


def save_mmengine_style_checkpoint(model, path):
    """Save ``model`` the way mmengine's Runner does: weights plus a message hub
    with HistoryBuffers and numpy values in ``meta`` (what trips weights_only)."""
    import numpy as np
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu
    hub = MessageHub.get_instance(f'ckpt-{path}')
    hub.update_scalar('train/loss', 1.25)
    hub.update_info('iter', 3)
    save_checkpoint({'meta': {'seed': np.int64(0), 'epoch': 1, 'iter': 3,
                              'lr': np.array([0.01, 0.001])},
                     'state_dict': weights_to_cpu(model.state_dict()),
                     'message_hub': hub.state_dict()}, str(path))


def _load_script(folder: str, name: str, module_name: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(module_name, ROOT / folder / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_tool(name):
    """Import tools/<name>.py as a module (the tools are scripts, not a package)."""
    return _load_script('tools', name, f'tool_{name}')


def load_benchmark(name):
    """Import benchmarks/<name>.py as a module, run as a script would be."""
    return _load_script('benchmarks', name, name)


def small_vkd_config_file(path, taps=('neck', ), extra: str = '', **model) -> str:
    """A VkD config file of the small pair, as a user writes one: the shipped RetinaNet
    config with the model replaced (``model``: more VkDDistiller arguments, or
    ``teacher=`` another teacher) and ``extra`` lines after it."""
    student, teacher = small_pair()
    teacher = model.pop('teacher', teacher)
    Path(path).write_text(
        f"_base_ = '{ROOT / 'configs' / 'vkd_retinanet_r50.py'}'\n"
        f"model = dict(_delete_=True, type='VkDDistiller', student={student!r},\n"
        f"             teacher={teacher!r}, taps={list(taps)!r}, probe_size=(128, 128),\n"
        f"             **{model!r})\n{extra}")
    return str(path)


def subclassed_distiller_config(tmp_path) -> tuple:
    """A user's registered subclass of VkDDistiller (``MyDistiller``, in a module of
    ``tmp_path`` that the config imports) and a config of the small pair that builds
    it: (config path, environment whose PYTHONPATH finds the module)."""
    import os
    (tmp_path / 'my_distiller.py').write_text(
        "from mmdet.registry import MODELS\n"
        "from vkd_mmdet.models import VkDDistiller\n\n\n"
        "@MODELS.register_module()\n"
        "class MyDistiller(VkDDistiller):\n"
        "    \"\"\"A user's distiller: VkD with something of their own.\"\"\"\n")
    config = small_vkd_config_file(
        tmp_path / 'my_distiller_cfg.py',
        extra="custom_imports = dict(imports=['vkd_mmdet', 'my_distiller'], "
              "allow_failed_imports=False)\nmodel['type'] = 'MyDistiller'\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), os.environ.get('PYTHONPATH', '')]))
    return config, env


def dist_train(tmp_path, hook_module: str, hook_source: str, custom_hooks: str, taps,
               options: dict, port: int):
    """tools/dist_train.sh, 2 processes over gloo, on the small pair with ``taps``;
    ``hook_source`` is importable as ``hook_module`` and ``custom_hooks`` is the
    config's line. Returns the finished process (output captured)."""
    import subprocess
    import sys
    (tmp_path / f'{hook_module}.py').write_text(hook_source)
    small_vkd_config_file(
        tmp_path / 'dist_cfg.py', taps,
        extra=f"custom_imports = dict(imports=['vkd_mmdet', '{hook_module}'], "
              f"allow_failed_imports=False)\ncustom_hooks = {custom_hooks}\n")
    # As the README writes it: no PYTHON, the script finds the project's environment
    # (.venv, or the VENV that `make VENV=... test` made, which make does not export).
    env = dict(os.environ, PORT=str(port), OMP_NUM_THREADS='1',
               PYTHONPATH=f'{tmp_path}:{ROOT}')
    env.pop('PYTHON', None)
    if not (ROOT / '.venv' / 'bin' / 'python').exists():
        env['VENV'] = sys.prefix
    return subprocess.run(['bash', str(ROOT / 'tools' / 'dist_train.sh'), str(tmp_path / 'dist_cfg.py'),
                           '2', '--work-dir', str(tmp_path / 'work'),
                           '--cfg-options', *cfg_options_argv(options)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)


def cfg_options_argv(options):
    """``{'a.b': 1}`` -> ``['a.b=1', ...]`` for --cfg-options."""
    def fmt(v):
        if isinstance(v, tuple):
            return '(' + ','.join(str(x) for x in v) + ')'
        return str(v)
    return [f'{k}={fmt(v)}' for k, v in options.items()]
