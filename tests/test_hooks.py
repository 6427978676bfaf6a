"""Hooks inside a real mmengine Runner on coco128."""
import copy

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from helpers import ROOT, read_scalars, coco128_options, resize_options
from vkd_mmdet.hooks import DistillWeightScheduleHook


def test_weight_schedule_values():
    hook = DistillWeightScheduleHook(warmup_iters=4, decay='linear', min_ratio=0.5,
                                     stop_iter=10)
    weights = [hook.weight_at(i, 0, 100) for i in range(12)]
    assert weights[:4] == pytest.approx([0.25 * 1.0, 0.5 * 0.95, 0.75 * 0.9, 1.0 * 0.85])
    assert weights[9] == pytest.approx(1 - 0.5 * 0.9)
    assert weights[10:] == [0.0, 0.0]
    cosine = DistillWeightScheduleHook(decay='cosine')
    assert cosine.weight_at(0, 0, 100) == 1.0 and cosine.weight_at(100, 0, 100) == pytest.approx(0.0)
    assert DistillWeightScheduleHook(stop_epoch=2).weight_at(50, 2, 100) == 0.0
    with pytest.raises(ValueError, match="decay must be"):
        DistillWeightScheduleHook(decay='step')


def test_schedule_stops_distillation_in_a_real_run(small_pair, tmp_path):
    student, teacher = small_pair
    cfg = Config.fromfile(str(ROOT / 'configs' / 'vkd_retinanet_r50.py'))
    cfg.merge_from_dict({**coco128_options(batch=1, images=3), **resize_options(cfg, 128)})
    cfg.model = dict(type='VkDDistiller', student=copy.deepcopy(student),
                     teacher=copy.deepcopy(teacher), taps=['neck'], probe_size=(128, 128))
    cfg.custom_hooks = [dict(type='DistillWeightScheduleHook', warmup_iters=2, stop_iter=2),
                        dict(type='OrthogonalityLoggerHook')]
    cfg.work_dir = str(tmp_path)
    cfg.log_processor.window_size = 1  # log each iteration's loss, not a running mean
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, save_last=False)
    Runner.from_cfg(cfg).train()
    records = read_scalars(tmp_path)
    train = [r for r in records if 'loss_vkd_neck' in r]
    assert [r['vkd_weight'] for r in train] == [0.5, 1.0, 0.0]
    assert train[0]['loss_vkd_neck'] > 0 and train[1]['loss_vkd_neck'] > 0
    assert train[2]['loss_vkd_neck'] == 0.0
    assert all(r['vkd_orth_err_neck'] < 1e-5 for r in train)


def test_amp_on_cpu_trains_with_finite_losses_and_orthogonal_projectors(small_pair, tmp_path):
    from helpers import load_tool
    student, teacher = small_pair
    train = load_tool('train')
    args = train.parse_args([str(ROOT / 'configs' / 'vkd_retinanet_r50.py'), '--amp',
                             '--work-dir', str(tmp_path)])
    cfg = train.build_config(args)
    assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper'
    cfg.merge_from_dict({**coco128_options(batch=2, images=4), **resize_options(cfg, 128)})
    cfg.model = dict(type='VkDDistiller', student=copy.deepcopy(student),
                     teacher=copy.deepcopy(teacher), taps=['backbone', 'neck'],
                     probe_size=(128, 128))
    cfg.log_processor.window_size = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, save_last=False)
    runner = Runner.from_cfg(cfg)
    runner.train()
    records = read_scalars(tmp_path)
    train_recs = [r for r in records if 'loss' in r]
    assert len(train_recs) == 2
    for r in train_recs:
        assert all(v == v and abs(v) < 1e6 for k, v in r.items() if k.startswith('loss'))
    for proj in runner.model.projectors().values():
        assert proj.orthogonality_error() < 1e-4
