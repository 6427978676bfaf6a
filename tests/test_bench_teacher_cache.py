"""The benchmark's teacher feature cache: a distilled step served from disk equals
the live teacher's step, and the teacher runs only for samples it has not seen
(image, flip, shape, batch shape)."""
import copy

import torch

from helpers import data_root, load_benchmark

TEACHER = dict(checkpoint=None, sha256='cd' * 32)


def build_pair(tmp_path):
    """The cpu-hires vkd_pm pair (neck and retina_cls taps: a feature tap and a head
    tap), cached and live, with the same weights; and a loader of face-mask images."""
    from mmdet.registry import MODELS
    import vkd_mmdet  # noqa: F401
    import benchmarks.efficientnet_lite  # noqa: F401
    import benchmarks.teacher_feature_cache  # noqa: F401
    bench = load_benchmark('bench_facemask')
    spec = bench.run_spec('vkd_pm', 0, 'cpu-hires', data_root() / 'facemask', TEACHER)
    cfg = bench.build_config(spec, teacher_cache_dir=str(tmp_path / 'features'))
    assert cfg.model.type == 'CachedTeacherDistiller'
    cfg.model.probe_size = (128, 128)
    torch.manual_seed(0)
    cached = MODELS.build(cfg.model)
    live = MODELS.build({k: v for k, v in dict(cfg.model, type='VkDDistiller').items()
                         if k != 'teacher_cache_dir'})
    live.load_state_dict(cached.state_dict())
    live.teacher.load_state_dict(cached.teacher.state_dict())
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    loader_cfg.batch_size = 3
    loader_cfg.sampler = dict(type='DefaultSampler', shuffle=False)
    loader_cfg.dataset.pipeline[2].scale = (256, 256)  # (fast; still 2x apart)
    flip = loader_cfg.dataset.pipeline[3]
    return cached, live, loader_cfg, flip


def batches(loader_cfg, model, indices, flip_prob):
    from mmengine.runner import Runner
    loader_cfg = copy.deepcopy(loader_cfg)
    loader_cfg.dataset.indices = indices
    loader_cfg.dataset.pipeline[3].prob = flip_prob
    data = next(iter(Runner.build_dataloader(loader_cfg)))
    out = model.data_preprocessor(data, training=True)
    return out['inputs'], out['data_samples']


def teacher_batch_sizes(model):
    """The batch size of every teacher backbone call from now on."""
    sizes = []
    model.teacher.backbone.register_forward_hook(lambda m, args, out: sizes.append(len(args[0])))
    return sizes


def distill_losses(model, inputs, samples):
    torch.manual_seed(0)  # (the student's stochastic depth draws the same layers)
    losses = model.loss(inputs, copy.deepcopy(samples))
    return {k: v.item() for k, v in losses.items() if k.startswith('loss_vkd')}


def close(a, b):
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-5 * (1 + abs(b[k])) for k in a)


def test_cached_teacher_maps_give_the_live_teachers_losses_and_skip_its_forward(tmp_path):
    cached, live, loader_cfg, _ = build_pair(tmp_path)
    calls = teacher_batch_sizes(cached)
    inputs, samples = batches(loader_cfg, cached, [0, 1, 2], flip_prob=0.0)
    want = distill_losses(live, inputs, samples)
    assert set(want) == {'loss_vkd_neck', 'loss_vkd_bbox_head_retina_cls'}
    first = distill_losses(cached, inputs, samples)  # all three new: the teacher runs
    assert calls == [3] and close(first, want), (first, want)
    again = distill_losses(cached, inputs, samples)  # all three from disk
    assert calls == [3] and close(again, want), (again, want)
    assert (cached.cache_hits, cached.cache_misses) == (3, 3)
    assert len(list((tmp_path / 'features' / 'neck').glob('*.pt'))) == 3


def test_only_unseen_samples_reach_the_teacher_flip_and_batch_shape_included(tmp_path):
    cached, live, loader_cfg, _ = build_pair(tmp_path)
    calls = teacher_batch_sizes(cached)
    inputs, samples = batches(loader_cfg, cached, [0, 1, 2], flip_prob=0.0)
    distill_losses(cached, inputs, samples)
    # the same images flipped: other inputs, other keys
    flipped, flipped_samples = batches(loader_cfg, cached, [0, 1, 2], flip_prob=1.0)
    assert close(distill_losses(cached, flipped, flipped_samples),
                 distill_losses(live, flipped, flipped_samples))
    assert calls == [3, 3]
    # the same samples in a batch padded larger: their maps change near the border
    h, w = inputs.shape[-2:]
    padded = torch.nn.functional.pad(inputs, (0, 64, 0, 32))
    padded_samples = copy.deepcopy(samples)
    for s in padded_samples:
        s.set_metainfo(dict(batch_input_shape=(h + 32, w + 64)))
    assert close(distill_losses(cached, padded, padded_samples),
                 distill_losses(live, padded, padded_samples))
    assert calls == [3, 3, 3]
    # one sample seen (index 0, unflipped, first batch's shape) beside two new ones
    # (images 2 and 4 are portrait, so both batches pad to 256 x 256)
    mixed, mixed_samples = batches(loader_cfg, cached, [0, 3, 4], flip_prob=0.0)
    assert tuple(mixed.shape[-2:]) == (h, w) == (256, 256)
    assert close(distill_losses(cached, mixed, mixed_samples),
                 distill_losses(live, mixed, mixed_samples))
    assert calls == [3, 3, 3, 2]


def test_a_benchmark_run_process_builds_the_cached_distiller(tmp_path):
    """A run's own process (a fresh interpreter, as `bench_facemask.py run` starts)
    builds the cpu-hires distilled model: the teacher cache's module is imported
    although nothing but the run's config names it."""
    import json
    import subprocess
    import sys
    from helpers import ROOT
    bench = load_benchmark('bench_facemask')
    spec = bench.run_spec('vkd', 0, 'cpu-hires', data_root() / 'facemask', TEACHER)
    work_dir = tmp_path / spec['key']
    work_dir.mkdir()
    (work_dir / 'spec.json').write_text(json.dumps(spec))
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, 'tests')\n"
        "from helpers import load_benchmark\n"
        "bench = load_benchmark('bench_facemask')\n"
        "work_dir = Path(sys.argv[1])\n"
        "spec = json.loads((work_dir / 'spec.json').read_text())\n"
        "bench.prepare_run_process(spec)\n"
        "runner = bench.build_runner(spec, work_dir)\n"
        "print('model:', type(runner.model).__name__)\n")
    proc = subprocess.run([sys.executable, '-c', script, str(work_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'model: CachedTeacherDistiller' in proc.stdout


def test_the_cached_distillers_student_is_exported_as_a_plain_detector(tmp_path):
    """StudentExportHook's config export accepts a registered subclass of VkDDistiller
    (the cached distiller), not only the name 'VkDDistiller'."""
    import benchmarks.teacher_feature_cache  # noqa: F401
    from vkd_mmdet.export import student_config
    bench = load_benchmark('bench_facemask')
    spec = bench.run_spec('vkd', 0, 'cpu-hires', data_root() / 'facemask', TEACHER)
    cfg = bench.build_config(spec, teacher_cache_dir=str(tmp_path / 'features'))
    assert cfg.model.type == 'CachedTeacherDistiller'
    assert student_config(cfg).model.type == 'RetinaNet'
