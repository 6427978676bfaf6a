"""Hooks inside a real mmengine Runner on coco128."""
import pytest
import torch
from mmengine.runner import Runner

from helpers import ROOT, load_tool, read_scalars, small_vkd_runner_cfg
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


def test_schedule_stops_distillation_in_a_real_run(tmp_path):
    cfg = small_vkd_runner_cfg(tmp_path, batch=1, images=3)
    cfg.custom_hooks = [dict(type='DistillWeightScheduleHook', warmup_iters=2, stop_iter=2),
                        dict(type='OrthogonalityLoggerHook')]
    Runner.from_cfg(cfg).train()
    records = read_scalars(tmp_path)
    train = [r for r in records if 'loss_vkd_neck' in r]
    assert [r['vkd_weight'] for r in train] == [0.5, 1.0, 0.0]
    assert train[0]['loss_vkd_neck'] > 0 and train[1]['loss_vkd_neck'] > 0
    assert train[2]['loss_vkd_neck'] == 0.0
    assert all(r['vkd_orth_err_neck'] < 1e-5 for r in train)


def test_amp_on_cpu_runs_the_student_in_bf16_and_vkd_in_float32(tmp_path):
    train = load_tool('train')
    args = train.parse_args([str(ROOT / 'configs' / 'vkd_retinanet_r50.py'), '--amp',
                             '--auto-scale-lr', '--work-dir', str(tmp_path)])
    cfg = train.build_config(args)
    assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper'
    small = small_vkd_runner_cfg(tmp_path, images=4, taps=['backbone', 'neck'])
    for key in small:  # all but what the command line set: AMP, LR scaling, weight decay
        if key not in ('optim_wrapper', 'auto_scale_lr', 'work_dir'):
            cfg[key] = small[key]
    runner = Runner.from_cfg(cfg)
    dtypes = {'student neck': set(), 'projector': set(), 'VkD loss': set()}
    model = runner.model
    model.student.neck.register_forward_hook(  # training steps only (not the final val)
        lambda m, a, out: dtypes['student neck'].update(o.dtype for o in out) if m.training else None)
    vkd = model.distill_losses['neck'][0]
    vkd.projector.register_forward_hook(lambda m, a, out: dtypes['projector'].add(out.dtype))
    vkd.register_forward_hook(lambda m, a, out: dtypes['VkD loss'].add(out.dtype))
    runner.train()
    assert dtypes == {'student neck': {torch.bfloat16}, 'projector': {torch.float32},
                      'VkD loss': {torch.float32}}
    records = [r for r in read_scalars(tmp_path) if 'loss' in r]
    assert len(records) == 2
    for r in records:
        assert all(v == v and abs(v) < 1e6 for k, v in r.items() if k.startswith('loss'))
    for proj in model.projectors().values():
        assert proj.orthogonality_error() < 1e-5
    # --auto-scale-lr: mmdet's lr 0.01 is for 16 images a step; this run has 2.
    groups = runner.optim_wrapper.optimizer.param_groups
    assert all(g['initial_lr'] == pytest.approx(0.01 * 2 / 16) for g in groups)
    # tools/train.py keeps weight decay off the projectors' raw parameters.
    projector_ids = {id(p) for p in model.distill_losses.parameters()}
    for g in groups:
        is_projector = {id(p) in projector_ids for p in g['params']}
        assert is_projector in ({True}, {False})
        assert g['weight_decay'] == (0.0 if is_projector == {True} else 1e-4)
