"""Schedule of the distillation weight: warm-up, optional decay, hard stop."""
import math
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet.registry import HOOKS

from ..errors import ConfigError


@HOOKS.register_module()
class DistillWeightScheduleHook(Hook):
    """Sets ``model.distill_weight`` (multiplies every ``loss_vkd_*``) each iteration.

    ``weight(iter) = warmup(iter) * decay(iter)``, and 0 from ``stop_iter`` or
    ``stop_epoch`` on (student loss only; the teacher is not run). The weight is
    a pure function of the runner's iteration and epoch, so ``--resume``
    restores it exactly.

    Args:
        warmup_iters: linear ramp from ``1/warmup_iters`` to 1 over these iterations.
        decay: ``None``, ``'linear'`` or ``'cosine'``, from 1 at the start to
            ``min_ratio`` at the stop point (or the end of training).
        min_ratio: final weight of the decay.
        stop_iter: switch distillation off from this (0-based) iteration on.
        stop_epoch: switch it off after this many epochs.
    """

    priority = 'NORMAL'

    def __init__(self,
                 warmup_iters: int = 0,
                 decay: Optional[str] = None,
                 min_ratio: float = 0.0,
                 stop_iter: Optional[int] = None,
                 stop_epoch: Optional[int] = None):
        if decay not in (None, 'linear', 'cosine'):
            raise ConfigError(f"DistillWeightScheduleHook: decay must be None, 'linear' "
                              f"or 'cosine', got {decay!r}")
        if warmup_iters < 0:
            raise ConfigError(f'DistillWeightScheduleHook: warmup_iters must be >= 0, '
                              f'got {warmup_iters}')
        self.warmup_iters = warmup_iters
        self.decay = decay
        self.min_ratio = min_ratio
        self.stop_iter = stop_iter
        self.stop_epoch = stop_epoch

    def weight_at(self, cur_iter: int, cur_epoch: int, max_iters: int) -> float:
        """Weight at 0-based iteration ``cur_iter`` of epoch ``cur_epoch``."""
        if self.stop_iter is not None and cur_iter >= self.stop_iter:
            return 0.0
        if self.stop_epoch is not None and cur_epoch >= self.stop_epoch:
            return 0.0
        weight = 1.0
        if self.warmup_iters:
            weight = min(1.0, (cur_iter + 1) / self.warmup_iters)
        if self.decay:
            end = self.stop_iter if self.stop_iter is not None else max_iters
            progress = min(1.0, cur_iter / max(end, 1))
            if self.decay == 'linear':
                factor = 1.0 - (1.0 - self.min_ratio) * progress
            else:
                factor = self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
            weight *= factor
        return weight

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'distill_weight'):
            raise ConfigError(f'DistillWeightScheduleHook needs a VkDDistiller model, '
                              f'got {type(model).__name__}')
        weight = self.weight_at(runner.iter, runner.epoch, runner.max_iters)
        model.distill_weight = weight
        runner.message_hub.update_scalar('train/vkd_weight', weight)
