"""Prediction mimicking: the student's classification logits against the teacher's.

A tap with ``loss='sigmoid_kd'`` on a dense head's classifier (RetinaNet's
``bbox_head.retina_cls``) builds this loss instead of :class:`~.vkd_loss.VkDLoss`:
logits are compared channel for channel, as they are, with no projection and no
normalisation (either would change the probabilities they stand for).
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from mmdet.registry import MODELS

from ..errors import ConfigError
from .loss_options import ALIGNS, align_maps, check_choice, check_loss_weight

PREDICTION_LOSSES = ('sigmoid_kd', )
# Options of feature imitation a tap may carry from `tap_defaults` that have no
# meaning for logits (no projection, no normalisation, no blocks, no boxes).
FEATURE_ONLY_OPTIONS = ('norm_side', 'affine', 'orthogonal_map', 'channel_dim',
                        'chunk_elements', 'background_weight')


def sigmoid_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    beta: float = 1.0) -> torch.Tensor:
    """Classification distillation of sigmoid heads (BCKD, CrossKD): the binary cross-
    entropy of the student's logits against the teacher's probabilities, each element
    weighted by ``|σ(s) - σ(t)|^β`` (a quality-focal weight: agreed elements fade out),
    summed and divided by ``Σ σ(t)``, the teacher's soft count of positives (as the focal
    loss divides by the positive anchors; at least 1). Zero, with zero gradient, when
    the student's logits equal the teacher's. Any shape; float32 inside."""
    s, t = student_logits.float(), teacher_logits.float().detach()
    p_t = t.sigmoid()
    focal = (s.sigmoid() - p_t).abs().pow(beta)
    bce = F.binary_cross_entropy_with_logits(s, p_t, reduction='none')
    return (bce * focal).sum() / p_t.sum().clamp_min(1.0)


@MODELS.register_module()
class PredictionMimicLoss(torch.nn.Module):
    """``loss_weight * sigmoid_kd_loss(student, teacher, kd_beta)`` on one level's logits.

    Args:
        student_channels, teacher_channels: the logits' channels (anchors per
            position x classes); must be equal.
        loss: ``'sigmoid_kd'``.
        loss_weight: multiplies the loss (a finite number >= 0).
        kd_beta: the exponent ``β`` of the focal weight (a finite number >= 0).
        recompute: recompute the loss's intermediates in the backward pass instead of
            keeping them (for big maps of logits). Same values and gradients.
        align: where the two maps differ in size (an odd input at an input scale):
            ``'student_to_teacher'`` (default; bilinear resize of the student's
            logits), ``'teacher_to_student'`` or ``'none'`` (sizes must match).
        norm, projection: must be ``'none'`` (stated in the tap, since the tap
            defaults are those of feature imitation).
        foreground_weight: must be ``None``: the focal weight already weights the
            elements by the teacher's confidence.
        **feature_only: :data:`FEATURE_ONLY_OPTIONS`, accepted from ``tap_defaults``;
            they do not apply to logits.

    Shapes:
        student ``(N, A*K, H_s, W_s)``, teacher ``(N, A*K, H_t, W_t)``; returns a scalar.

    Raises:
        ConfigError: for any option outside the above.
    """

    def __init__(self, student_channels: int, teacher_channels: int, loss: str = 'sigmoid_kd',
                 loss_weight: float = 1.0, kd_beta: float = 1.0, recompute: bool = True,
                 align: str = 'student_to_teacher', norm: str = 'none', projection: str = 'none',
                 foreground_weight: Optional[float] = None, **feature_only):
        super().__init__()
        check_choice('PredictionMimicLoss', 'loss', loss, PREDICTION_LOSSES)
        check_choice('PredictionMimicLoss', 'align', align, ALIGNS)
        self.align = align
        unknown = sorted(set(feature_only) - set(FEATURE_ONLY_OPTIONS))
        if unknown:
            raise ConfigError(f'PredictionMimicLoss: unknown option(s) {unknown}')
        where = f"PredictionMimicLoss: loss='{loss}'"
        if norm != 'none' or projection != 'none':
            raise ConfigError(
                f"{where} compares the two heads' logits as they are, so give norm='none' "
                f"and projection='none' (got norm='{norm}', projection='{projection}'): "
                f"standardising or projecting logits changes the probabilities they stand for")
        if student_channels != teacher_channels:
            raise ConfigError(
                f"{where} compares the student's and the teacher's logits channel for "
                f"channel, and they have {student_channels} and {teacher_channels} "
                f"channels. A dense head's logits have anchors-per-position x classes "
                f"channels: both heads need the same anchors per position and the same classes")
        if foreground_weight is not None:
            raise ConfigError(f"{where} weights its elements by the teacher's confidence "
                              f"already; foreground_weight does not apply to it")
        if isinstance(kd_beta, bool) or not isinstance(kd_beta, (int, float)) or \
                not math.isfinite(kd_beta) or kd_beta < 0:
            raise ConfigError(f'PredictionMimicLoss: kd_beta={kd_beta!r}; it must be a '
                              f'finite number >= 0')
        self.student_channels = self.teacher_channels = student_channels
        self.loss_name = loss
        self.loss_weight = check_loss_weight(loss_weight, 'PredictionMimicLoss')
        self.kd_beta = float(kd_beta)
        self.recompute = bool(recompute)

    def projector_weight(self) -> None:
        """No projection: logits are compared as they are."""
        return None

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weight=None,
                boxes=None) -> torch.Tensor:
        """``weight`` and ``boxes`` are those of feature imitation, unused here."""
        teacher = teacher.detach()
        if student.shape[:2] != teacher.shape[:2]:
            raise ConfigError(f'PredictionMimicLoss: student logits {tuple(student.shape)} '
                              f'and teacher logits {tuple(teacher.shape)} differ in batch '
                              f'or channels')
        if self.recompute and torch.is_grad_enabled() and student.requires_grad:
            term = checkpoint(self._unweighted, student, teacher, use_reentrant=False)
        else:
            term = self._unweighted(student, teacher)
        return self.loss_weight * term

    def _unweighted(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student, teacher = align_maps(student, teacher, self.align, 'PredictionMimicLoss')
        with torch.autocast(student.device.type, enabled=False):
            return sigmoid_kd_loss(student, teacher, self.kd_beta)

    def extra_repr(self) -> str:
        return (f'logits as they are, loss={self.loss_name} (beta {self.kd_beta:g}), '
                f'weight={self.loss_weight}, recompute={self.recompute}')
