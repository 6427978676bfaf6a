"""A NaN/Inf loss: skipped under fp16 loss scaling (as stock MMDetection does),
a stop before the weights change without it or when it persists, on every rank."""
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from helpers import (coco128_options, detection_batch, dist_train, read_scalars, small_pair,
                     small_vkd_runner_cfg)
from vkd_mmdet.models import VkDDistiller


def poison_inputs(module, value=float('inf')):
    """Multiply what ``module`` receives by ``value`` (its outputs become Inf/NaN)."""
    return module.register_forward_pre_hook(lambda m, args: (tuple(x * value for x in args[0]), ))


class InjectAndWatch(Hook):
    """Poisons the student's neck inputs at the given iterations and records, per
    iteration, whether any trainable parameter changed and the loss scale."""

    priority = 'VERY_HIGH'

    def __init__(self, iters):
        self.iters = set(iters)
        self.changed, self.scales = {}, {}
        self.before = self.handle = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        if runner.iter in self.iters:
            self.handle = poison_inputs(model.student.neck)

    def params_changed(self, model):
        return any(not torch.equal(self.before[n], p) for n, p in model.named_parameters())

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        it = runner.iter  # mmengine counts the iteration up after this hook
        self.changed[it] = self.params_changed(runner.model)
        scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
        self.scales[it] = scaler.get_scale() if scaler is not None else None


def fp16_cfg(tmp_path, images=4, **model):
    # fp16 convolutions are slow on a CPU: one small image per iteration.
    cfg = small_vkd_runner_cfg(tmp_path, size=96, batch=1, images=images, **model)
    cfg.optim_wrapper.update(type='CPUAmpOptimWrapper', dtype='float16',
                             loss_scale=dict(init_scale=64.0))
    return cfg


def test_fp16_loss_scaling_skips_nonfinite_steps_and_trains_on(tmp_path):
    runner = Runner.from_cfg(fp16_cfg(tmp_path))
    watch = InjectAndWatch(iters=[1, 2])
    runner.register_hook(watch)
    runner.train()
    # The poisoned steps moved no weight; the others did.
    assert watch.changed == {0: True, 1: False, 2: False, 3: True}
    # The scaler saw the non-finite gradients and halved its scale each time.
    assert watch.scales[1] == watch.scales[0] / 2 and watch.scales[2] == watch.scales[0] / 4
    assert watch.scales[3] == watch.scales[2]
    # counted when the next step starts: no host round trip within the step
    records = [r for r in read_scalars(tmp_path) if 'loss' in r]
    assert [r['vkd_nonfinite_steps'] for r in records] == [0, 0, 1, 2]
    assert runner.model.nonfinite.skipped == 2
    for proj in runner.model.projectors().values():
        assert torch.isfinite(proj.weight).all() and proj.orthogonality_error() < 1e-5


def test_a_skipped_fp16_step_leaves_batchnorm_buffers_and_the_ema_model_as_they_were(tmp_path):
    """RTMDet's BatchNorm layers train (their running statistics move every forward
    pass) and its EMAHook averages buffers too: a poisoned step must reach neither."""
    from mmengine.hub import get_config
    from mmengine.hooks import EMAHook
    cfg = fp16_cfg(tmp_path, images=3)
    tiny = get_config('mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py').model
    tiny.backbone.init_cfg = None
    tiny.data_preprocessor.pad_size_divisor = 32  # (its own pipeline pads to 640x640)
    cfg.model['student'], cfg.model['teacher'] = tiny.to_dict(), tiny.to_dict()
    cfg.custom_hooks = [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002,
                             update_buffers=True, priority=49)]
    runner = Runner.from_cfg(cfg)
    watch = InjectAndWatch(iters=[1])
    buffers = {}

    class Buffers(Hook):
        priority = 'VERY_HIGH'

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            buffers['before'] = {n: b.clone() for n, b in runner.model.named_buffers()}

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            buffers[runner.iter] = all(torch.equal(buffers['before'][n], b)
                                       for n, b in runner.model.named_buffers())

    runner.register_hook(watch)
    runner.register_hook(Buffers())
    runner.train()
    assert watch.changed == {0: True, 1: False, 2: True}
    assert buffers[0] is False and buffers[1] is True and buffers[2] is False
    ema = next(h for h in runner.hooks if isinstance(h, EMAHook)).ema_model
    assert all(torch.isfinite(b).all() for b in ema.module.buffers())
    assert all(torch.isfinite(p).all() for p in ema.module.parameters())
    model = ema.module.eval()
    inputs, samples = detection_batch(model, size=96)
    with torch.no_grad():
        outs = model._forward(inputs)
    assert all(torch.isfinite(t).all() for level in outs for t in level)


def test_fp16_loss_scaling_stops_when_nonfinite_steps_persist(tmp_path):
    runner = Runner.from_cfg(fp16_cfg(tmp_path, images=4, max_nonfinite_steps=2))
    watch = InjectAndWatch(iters=[1, 2, 3])
    runner.register_hook(watch)
    with pytest.raises(FloatingPointError, match=r'for 2 steps in a row under fp16 loss '
                                                 r'scaling \(max_nonfinite_steps=2\)'):
        runner.train()
    # steps 1 and 2 were skipped; the stop comes when step 3 starts, before it
    # changes anything
    assert watch.changed == {0: True, 1: False, 2: False}
    assert not watch.params_changed(runner.model)


def test_without_loss_scaling_the_first_nonfinite_step_stops_before_any_weight_changes(tmp_path):
    runner = Runner.from_cfg(small_vkd_runner_cfg(tmp_path, images=8))
    watch = InjectAndWatch(iters=[1])
    runner.register_hook(watch)
    with pytest.raises(FloatingPointError,
                       match=r"student's own losses and the distillation terms are non-finite"
                             r".*no loss scaling is active.*--resume"):
        runner.train()
    assert watch.changed == {0: True}  # iteration 0 did train: the check can see changes
    assert not watch.params_changed(runner.model)
    with pytest.raises(ValueError, match='max_nonfinite_steps=0'):
        VkDDistiller(*small_pair(), taps=['neck'], max_nonfinite_steps=0)


def test_a_nonfinite_distillation_term_alone_follows_the_same_policy():
    model = VkDDistiller(*small_pair(), taps=['neck'], probe_size=(128, 128)).train()
    inputs, samples = detection_batch(model, size=64)
    handle = poison_inputs(model.teacher.neck, float('nan'))
    # (without loss scaling: stopped at once, and the teacher named as the cause)
    with pytest.raises(FloatingPointError, match=r"VkDDistiller: the teacher's features are "
                                                 r"non-finite .*\{\"tap 'neck'\": \{'level 0'"):
        model.loss(inputs, samples)
    with torch.autocast('cpu', dtype=torch.float16):  # as inside an fp16 AmpOptimWrapper
        losses = model.loss(inputs, samples)
    handle.remove()
    assert all(torch.isfinite(v).all() for v in losses['loss_cls'])
    total = sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items() if 'loss' in k)
    total.backward()
    # A gradient is non-finite, so a GradScaler skips the whole step.
    assert not all(torch.isfinite(p.grad).all() for p in model.parameters()
                   if p.grad is not None)
    model.zero_grad()
    with torch.autocast('cpu', dtype=torch.float16):  # finite again: the streak is over
        losses = model.loss(inputs, samples)
    # the skipped step is counted when the next one starts, an fp16 teacher's overflow
    # like any other non-finite step (a streak of them stops, naming the teacher)
    assert model.nonfinite.skipped == 1 and losses['vkd_nonfinite_steps'].item() == 1
    total = sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.loss(inputs, samples)
    assert model.nonfinite.consecutive == 0


POISON_ON_RANK1 = '''
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmdet.registry import HOOKS


@HOOKS.register_module()
class PoisonRank1Hook(Hook):
    """At iteration 1, rank 1's student neck receives Inf."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == 1 and get_rank() == 1:
            model = runner.model.module
            model.student.neck.register_forward_pre_hook(
                lambda m, args: (tuple(x * float('inf') for x in args[0]), ))
'''


def test_two_process_gloo_stop_is_decided_by_all_ranks_together(tmp_path):
    options = {**coco128_options(batch=1, images=8),
               'train_dataloader.dataset.pipeline.2.scale': (128, 128)}
    proc = dist_train(tmp_path, 'poison_rank1', POISON_ON_RANK1,
                      "[dict(type='PoisonRank1Hook')]", ['neck'], options, port=29533)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    # Both ranks stopped with the message (rank 0's own losses were finite).
    assert log.count('are non-finite on some rank and no loss scaling is active') >= 2, log[-4000:]
    assert 'rank 0: all finite here, non-finite on another rank' in log, log[-4000:]
    assert "(rank 1: {'loss_cls'" in log, log[-4000:]


def test_a_streak_of_nonfinite_teacher_features_under_loss_scaling_names_the_teacher():
    model = VkDDistiller(*small_pair(), taps=['neck'], probe_size=(128, 128),
                         max_nonfinite_steps=2).train()
    inputs, samples = detection_batch(model, size=64)
    poison_inputs(model.teacher.neck, float('nan'))
    with torch.autocast('cpu', dtype=torch.float16):
        model.loss(inputs, samples)  # skipped
        model.loss(inputs, samples)  # skipped: the first one is counted as this starts
        with pytest.raises(FloatingPointError, match=r"the teacher's features are non-finite"):
            model.loss(inputs, samples)
