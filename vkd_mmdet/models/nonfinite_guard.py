"""What a training step does when a loss is NaN or Inf.

Stock MMDetection under fp16 AMP (mmengine's ``AmpOptimWrapper``: fp16 autocast
with a ``GradScaler``) survives an occasional non-finite loss: its gradients are
non-finite too, so the scaler skips the optimizer step and lowers the scale.
Without loss scaling nothing skips, and one NaN step puts NaN into every weight.
:class:`NonFiniteGuard` gives the distiller the same policy for the student's
own losses and for the distillation terms:

* under loss scaling, a non-finite step is passed on so that the scaler skips
  it: a NaN term reaches a parameter's gradient, so the scaler skips the step even
  where the non-finite loss itself would not have reached a gradient, and (under
  DDP) the gradients' all-reduce carries it to every rank. The forward pass has
  already folded the step's activations into BatchNorm's running statistics;
  they are put back (:class:`BufferSnapshot`), so a skipped step leaves the
  student, its buffers and an EMA of them (RTMDet's ``EMAHook(update_buffers=True)``)
  as they were. All of this happens on the device, without waiting for the verdict
  on the host: the step is counted, logged, and training stopped after
  ``max_consecutive`` such steps in a row, when the next step starts (by then the
  verdict was read back without a wait);
* without loss scaling, training stops at once, before the weights change: that
  needs the verdict on the host before the optimizer step, one round trip a step.

Under DDP the verdict is all-reduced, so every rank skips or stops together.
"""
import math
from collections import defaultdict
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.dist import all_reduce, get_rank, is_distributed
from mmengine.logging import MMLogger

from ..errors import ConfigError, NonFiniteError

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


class BufferSnapshot:
    """A copy of the buffers a training forward pass updates (the running statistics
    and counters of BatchNorm layers in training mode), put back on the device where a
    flag says so, in a few kernels whatever the number of buffers: one flat tensor per
    dtype. (Other buffers, and those of frozen BatchNorm layers, do not change in a
    forward pass; the latter are saved for the backward pass and must not be written.)"""

    def __init__(self):
        self._buffers: Dict[torch.dtype, List[torch.Tensor]] = {}
        self._saved: Dict[torch.dtype, torch.Tensor] = {}

    def take(self, module: nn.Module) -> None:
        groups = defaultdict(list)
        for layer in module.modules():
            if (isinstance(layer, nn.modules.batchnorm._NormBase) and layer.training
                    and layer.track_running_stats):
                for buf in layer.buffers(recurse=False):
                    groups[buf.dtype].append(buf)
        self._buffers = dict(groups)
        self._saved = {dtype: torch.cat([b.detach().reshape(-1) for b in bufs])
                       for dtype, bufs in groups.items()}

    def restore_where(self, keep_new: torch.Tensor) -> None:
        """Put the saved values back unless ``keep_new`` (a 0-d bool on the buffers'
        device) is true; the new values may be NaN."""
        with torch.no_grad():
            for dtype, bufs in self._buffers.items():
                new = torch.cat([b.reshape(-1) for b in bufs])
                chosen = torch.where(keep_new, new, self._saved[dtype])
                # Through `.data`: autograd saved the running statistics with batch norm's
                # inputs (its backward reads them in eval mode only), and a write through
                # the tensors themselves would fail the backward's version check.
                torch._foreach_copy_([b.data for b in bufs],
                                     [v.view_as(b) for v, b in
                                      zip(chosen.split([b.numel() for b in bufs]), bufs)])
        self._buffers, self._saved = {}, {}


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
            raise ConfigError(f'VkDDistiller: max_nonfinite_steps={max_consecutive}; it '
                              f'must be >= 1 (1 stops at the first non-finite step)')
        self.max_consecutive = int(max_consecutive)
        self.consecutive = 0
        self.skipped = 0
        self.buffers = BufferSnapshot()
        self._pending = None  # the last scaled step's verdict, read when the next starts

    def before_forward(self, model: nn.Module, device_type: str) -> None:
        """Settle the previous step's verdict; under loss scaling, snapshot the
        buffers the student's forward pass is about to update."""
        self.settle()
        if loss_scaling_active(device_type):
            self.buffers.take(model)

    def check(self, student: LossDict, distill: LossDict, model: nn.Module,
              device_type: str, teacher: Optional[LossDict] = None) -> Optional[torch.Tensor]:
        """Under loss scaling: a term to add to the loss, zero when every loss is
        finite and NaN (through one parameter) when not; the buffers are restored
        on a non-finite step. Without: ``None`` when every loss is finite; raises
        ``NonFiniteError`` (a ``FloatingPointError``) when not (and when a scaled
        streak is too long, at the next step). ``teacher``: the teacher's tapped features by name, so that
        a non-finite teacher is named as the cause rather than the distillation term."""
        student_vals, distill_vals = _loss_values(student), _loss_values(distill)
        teacher_vals = {k: list(v) for k, v in (teacher or {}).items()}
        flags = torch.stack([
            _all_finite(student_vals, device_type), _all_finite(distill_vals, device_type),
            _all_finite(teacher_vals, device_type)])
        if is_distributed():
            all_reduce(flags, op='min')  # (NCCL: queued on the device, no host wait)
        if not loss_scaling_active(device_type):
            student_ok, distill_ok, teacher_ok = (bool(f) for f in flags.tolist())
            if not (student_ok and distill_ok and teacher_ok):
                if not teacher_ok:
                    _stop_on_teacher(_nonfinite_counts(teacher_vals))
                self._stop(student_ok, distill_ok, student_vals, distill_vals, scaled=False)
            self.consecutive = 0
            return None
        ok = flags.min() > 0
        self.buffers.restore_where(ok)
        self._pending = _Verdict(flags, student_vals, distill_vals, teacher_vals)
        param = next(p for p in model.parameters() if p.requires_grad)
        return torch.where(ok, 0.0, float('nan')) * param.sum()

    def merged(self, student: LossDict, distill: LossDict, model: nn.Module,
               device_type: str, teacher: Optional[LossDict] = None) -> LossDict:
        """The step's losses after :meth:`check`: the student's, then the distillation
        terms (the first one carrying the check's term, if any), then
        ``vkd_nonfinite_steps`` (a 0-dim float tensor, for the log)."""
        skip = self.check(student, distill, model, device_type, teacher=teacher)
        if skip is not None:
            first = next(iter(distill))
            distill[first] = distill[first] + skip
        losses = dict(student, **distill)
        losses['vkd_nonfinite_steps'] = torch.tensor(float(self.skipped))
        return losses

    def settle(self) -> None:
        """Count (and log, or stop on) the last scaled step's verdict, if any."""
        if self._pending is None:
            return
        verdict, self._pending = self._pending, None
        student_ok, distill_ok, teacher_ok = verdict.read()
        if student_ok and distill_ok and teacher_ok:
            self.consecutive = 0
            return
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            if not teacher_ok:
                _stop_on_teacher(verdict.teacher)
            self._stop(student_ok, distill_ok, verdict.student, verdict.distill, scaled=True)
        self.skipped += 1
        # (an fp16 teacher that overflows on one batch is skipped like any other step)
        cause = '' if teacher_ok else " (because the teacher's features were)"
        MMLogger.get_current_instance().warning(
            f'VkDDistiller: {_which(student_ok, distill_ok)}{cause} were non-finite on some rank '
            f'(rank {get_rank()}: {_bad(verdict.student, verdict.distill)}); under fp16 loss '
            f'scaling the GradScaler skipped that step and lowered its scale, and the '
            f'buffers were restored ({self.consecutive} in a row, {self.skipped} skipped in '
            f'all; training stops at {self.max_consecutive} in a row).')

    def _stop(self, student_ok, distill_ok, student_vals, distill_vals, scaled: bool):
        why = (f'for {self.consecutive} steps in a row under fp16 loss scaling '
               f'(max_nonfinite_steps={self.max_consecutive})' if scaled else
               'and no loss scaling is active to skip the step')
        raise NonFiniteError(
            f"VkDDistiller: {_which(student_ok, distill_ok)} are non-finite on some rank "
            f"{why} (rank {get_rank()}: {_bad(student_vals, distill_vals)}); stopping before "
            f"the weights become NaN. The last checkpoint is intact: lower the learning rate "
            f"(or enable gradient clipping), check the data, and --resume.")


class _Verdict:
    """One step's all-ranks flags, on their way to the host without a wait: on CUDA a
    non-blocking copy into pinned memory and an event, read when the next step starts
    (the GradScaler's own check of that step has waited for them by then)."""

    def __init__(self, flags: torch.Tensor, student, distill, teacher=None):
        self.student = {k: [v.detach() for v in vs] for k, vs in student.items()}
        self.distill = {k: [v.detach() for v in vs] for k, vs in distill.items()}
        # (the teacher's maps themselves are not kept: the message names them and
        # says which rank saw them non-finite)
        self.teacher = _nonfinite_counts(teacher or {})
        self._event = None
        if flags.is_cuda:
            self._host = torch.empty(flags.shape, dtype=flags.dtype, pin_memory=True)
            self._host.copy_(flags, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._host = flags

    def read(self):
        if self._event is not None:
            self._event.synchronize()
        return tuple(bool(f) for f in self._host.tolist())


def _nonfinite_counts(values: Dict[str, list]) -> Dict[str, List[torch.Tensor]]:
    """Per name, each map's count of NaN/Inf values (0-d tensors, on its device)."""
    return {k: [(~torch.isfinite(v.detach())).sum() for v in vs] for k, vs in values.items()}


def _stop_on_teacher(teacher_counts: Dict[str, list]) -> None:
    """The teacher's features hold NaN/Inf (``teacher_counts``: per tap, each level's
    count of them): say so, with the taps and levels."""
    bad = {}
    for name, values in teacher_counts.items():
        counts = [int(v) for v in values]
        levels = [i for i, c in enumerate(counts) if c]
        if levels:
            bad[name] = {f'level {i}': counts[i] for i in levels}
    where = bad or 'all finite here, non-finite on another rank'
    raise NonFiniteError(
        f"VkDDistiller: the teacher's features are non-finite (non-finite values per tap "
        f"and level, rank {get_rank()}: {where}). The teacher, frozen, is the cause, not "
        f"the distillation term: its weights or BatchNorm statistics hold NaN/Inf (a "
        f"diverged or corrupted teacher_ckpt), or it overflows on this input (fp16 "
        f"autocast, or an input scale it was not trained at). Evaluate it with "
        f"tools/check_teacher.py.")


def _which(student_ok: bool, distill_ok: bool) -> str:
    return ' and '.join(name for name, ok in (("the student's own losses", student_ok),
                                              ('the distillation terms', distill_ok)) if not ok)


def _bad(student_vals, distill_vals) -> str:
    local = {k: v for k, v in {**_describe(student_vals), **_describe(distill_vals)}.items()
             if not all(map(math.isfinite, v))}
    return f'{local}' if local else 'all finite here, non-finite on another rank'


def _all_finite(values: Dict[str, List[torch.Tensor]], device_type: str) -> torch.Tensor:
    flat = [v.detach().float().sum() for vs in values.values() for v in vs]
    if not flat:
        return torch.ones((), device=device_type if device_type != 'cpu' else None)
    return torch.isfinite(torch.stack(flat)).all().float()
