"""What a training step does when a loss is NaN or Inf.

Stock MMDetection under fp16 AMP (mmengine's ``AmpOptimWrapper``: fp16 autocast
with a ``GradScaler``) survives an occasional non-finite loss: its gradients are
non-finite too, so the scaler skips the optimizer step and lowers the scale.
Without loss scaling nothing skips, and one NaN step puts NaN into every weight.
:class:`NonFiniteGuard` gives the distiller the same policy for the student's
own losses and for the distillation terms:

* under loss scaling, a non-finite step is passed on so that the scaler skips
  it (its gradient is made non-finite on every parameter, so no weight moves
  even where the NaN would not have reached a gradient), counted and logged;
  training stops only after ``max_consecutive`` such steps in a row;
* without loss scaling, training stops at once, before the weights change.

Under DDP the verdict is all-reduced, so every rank skips or stops together.
"""
import math
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.dist import all_reduce, get_rank, is_distributed
from mmengine.logging import MMLogger

LossDict = Dict[str, object]


def loss_scaling_active(device_type: str) -> bool:
    """Whether the forward runs under fp16 autocast, i.e. (in mmengine) inside an
    ``AmpOptimWrapper``, whose fp16 mode always pairs autocast with a ``GradScaler``
    (or inside ``CPUAmpOptimWrapper(dtype='float16')``, which does the same).
    bf16 autocast keeps fp32's range and is not treated as scaled."""
    return (torch.is_autocast_enabled(device_type)
            and torch.get_autocast_dtype(device_type) == torch.float16)


def _loss_values(losses: LossDict) -> Dict[str, List[torch.Tensor]]:
    # mmdet heads return a tensor or a list of per-level tensors per key.
    return {k: list(v) if isinstance(v, (list, tuple)) else [v]
            for k, v in losses.items() if 'loss' in k and v is not None}


def _describe(losses: Dict[str, List[torch.Tensor]]) -> Dict[str, List[float]]:
    return {k: [round(float(v.detach().float().sum()), 4) for v in vs]
            for k, vs in losses.items()}


class NonFiniteGuard:
    """Decides, once per step and for all ranks, whether a step with a
    non-finite loss is skipped (under loss scaling) or stops training.

    Args:
        max_consecutive: stop after this many non-finite steps in a row, even
            under loss scaling (a NaN that the scaler cannot fix, e.g. from a
            corrupt image or a diverged model, should not burn the schedule).
    """

    def __init__(self, max_consecutive: int = 10):
        if int(max_consecutive) < 1:
            raise ValueError(f'VkDDistiller: max_nonfinite_steps={max_consecutive}; it '
                             f'must be >= 1 (1 stops at the first non-finite step)')
        self.max_consecutive = int(max_consecutive)
        self.consecutive = 0
        self.skipped = 0

    def check(self, student: LossDict, distill: LossDict, model: nn.Module,
              device_type: str) -> Optional[torch.Tensor]:
        """``None`` when every loss is finite; on a step to skip, a NaN term that
        reaches every trainable parameter of ``model`` (add it to the loss).
        Raises ``FloatingPointError`` when training must stop."""
        student_vals, distill_vals = _loss_values(student), _loss_values(distill)
        flags = torch.stack([
            _all_finite(student_vals, device_type), _all_finite(distill_vals, device_type)])
        if is_distributed():
            all_reduce(flags, op='min')
        student_ok, distill_ok = (bool(f) for f in flags.tolist())
        if student_ok and distill_ok:
            self.consecutive = 0
            return None

        self.consecutive += 1
        which = ' and '.join(name for name, ok in (("the student's own losses", student_ok),
                                                  ('the distillation terms', distill_ok))
                             if not ok)
        local = {k: v for k, v in {**_describe(student_vals), **_describe(distill_vals)}.items()
                 if not all(map(math.isfinite, v))}
        bad = f'{local}' if local else 'all finite here, non-finite on another rank'
        scaled = loss_scaling_active(device_type)
        if not scaled or self.consecutive >= self.max_consecutive:
            why = (f'for {self.consecutive} steps in a row under fp16 loss scaling '
                   f'(max_nonfinite_steps={self.max_consecutive})' if scaled else
                   'and no loss scaling is active to skip the step')
            raise FloatingPointError(
                f"VkDDistiller: {which} are non-finite on some rank {why} (rank "
                f"{get_rank()}: {bad}); stopping before the weights become NaN. The last "
                f"checkpoint is intact: lower the learning rate (or enable gradient "
                f"clipping), check the data, and --resume.")
        self.skipped += 1
        MMLogger.get_current_instance().warning(
            f'VkDDistiller: {which} are non-finite on some rank (rank {get_rank()}: '
            f'{bad}); under fp16 loss scaling the GradScaler skips this step and lowers '
            f'its scale ({self.consecutive} in a row, {self.skipped} skipped in all; '
            f'training stops at {self.max_consecutive} in a row).')
        # Every gradient becomes NaN, so the scaler skips the whole step for sure.
        return _nan_through(model)


def _all_finite(values: Dict[str, List[torch.Tensor]], device_type: str) -> torch.Tensor:
    flat = [v.detach().float().sum() for vs in values.values() for v in vs]
    if not flat:
        return torch.ones((), device=device_type if device_type != 'cpu' else None)
    return torch.isfinite(torch.stack(flat)).all().float()


def _nan_through(model: nn.Module) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    return sum(p.sum() for p in params) * float('nan')
