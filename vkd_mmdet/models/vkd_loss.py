"""VkD feature loss for one student/teacher feature pair."""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from mmdet.registry import MODELS

from .channel_moments import channel_moments, standardizing_stats
from .feature_norm import NORMS, default_channel_dim, normalize
from .foreground_weights import GroundTruthBoxes, position_weights
from .orthogonal_projector import OrthogonalProjector

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


LOSSES = {
    'smooth_l1': F.smooth_l1_loss,
    'mse': F.mse_loss,
    'l1': F.l1_loss,
}
# Losses on predictions rather than features: logits compared as they are.
PREDICTION_LOSSES = ('sigmoid_kd', )
# Maps with more elements than this are compared in blocks of whole images (see
# `chunk_elements`): 2**24 float32 elements are 64 MiB.
CHUNK_ELEMENTS = 2 ** 24
PROJECTIONS = ('orthogonal', 'linear', 'none')
NORM_SIDES = ('both', 'teacher', 'student')
ALIGNS = ('student_to_teacher', 'teacher_to_student', 'none')


@MODELS.register_module()
class VkDLoss(nn.Module):
    """Project the student feature, normalise both sides, compare.

    ``loss = loss_weight * criterion(norm(P(s)), norm(t))`` with ``P`` an
    :class:`OrthogonalProjector` by default.

    Args:
        student_channels: ``C_s``.
        teacher_channels: ``C_t``.
        norm: one of ``'standardize'`` (per channel over batch and positions; the
            detection default), ``'standardize_image'`` (per channel over each
            image's positions), ``'layernorm'``, ``'whiten'``, ``'none'``.
        norm_side: ``'both'`` (default), ``'teacher'`` (the classification
            setting) or ``'student'``.
        loss: ``'smooth_l1'`` (default), ``'mse'`` or ``'l1'``; mean over elements.
            ``'sigmoid_kd'``: prediction mimicking of a sigmoid classifier's logits
            (e.g. RetinaNet's ``bbox_head.retina_cls``): see :func:`sigmoid_kd_loss`;
            needs ``projection='none'`` and ``norm='none'`` (the logits are compared
            channel for channel, anchors x classes).
        kd_beta: the exponent ``β`` of ``'sigmoid_kd'``'s weight (default 1).
        loss_weight: multiplies the loss.
        projection: ``'orthogonal'`` (VkD), ``'linear'`` (an unconstrained 1x1
            map, as in FitNet) or ``'none'`` (needs ``C_s == C_t``).
        affine: learnable per-channel scale and bias after the projection. Off by
            default: neither official recipe has one where the student side is
            not standardised (DeiT: none; ViDT: one that standardisation cancels),
            and it breaks the projection's isometry. Under per-channel
            standardisation of the student side it would be cancelled exactly.
        orthogonal_map: see :class:`OrthogonalProjector`.
        align: how to match spatial sizes of 4-D features:
            ``'student_to_teacher'`` (default; bilinear resize of the student),
            ``'teacher_to_student'``, or ``'none'`` (sizes must match).
        channel_dim: where the channels are, for features that are not
            ``(N, C, H, W)`` maps, e.g. ``-1`` for a DETR decoder's stacked
            queries ``(layers, N, queries, C)``. Both sides are then flattened to
            ``(M, C)`` rows (as the official code does for tokens), and must agree
            on every other dim. ``None``: dim 1 of 4-D maps, the last dim of
            ``(N, L, C)`` tokens and ``(N, C)`` vectors.
        recompute: keep only the inputs for the backward pass and recompute
            the float32 side (alignment, projection, normalisation, loss) there,
            instead of keeping its intermediates: for a stride-4 tap of 256
            channels at 800x1333 that is about 330 MiB per image less, for one
            more forward of the side. The orthogonal map itself is not
            recomputed. Same values and gradients either way.
        chunk_elements: with ``recompute``, a 4-D map with more elements than this
            (default 2**24, 64 MiB in float32) under ``norm`` ``'standardize'``,
            ``'standardize_image'`` or ``'none'`` is compared a few images at a time, each block recomputed
            on its own in the backward pass: no full-size float32 intermediate
            exists, only one block's (the channel statistics are gathered over
            all blocks first). Same value and gradients to float32 rounding.
            ``None``: never.
        foreground_weight: ``None`` (default): every position of a map weighs the
            same. A number: positions inside ground-truth boxes are weighted so that
            every box counts equally (FGD's ``1 / area`` mask), the background in a
            term of its own weighted ``background_weight``; the loss is then
            ``loss_weight * (foreground_weight * fg + background_weight * bg)``, both
            weighted means (see :mod:`.foreground_weights`). Normalisation statistics
            stay over all positions. 4-D maps only; the boxes come from the batch.
        background_weight: the background term's weight under ``foreground_weight``.

    Shapes:
        student ``(N, C_s, H_s, W_s)``, teacher ``(N, C_t, H_t, W_t)`` (or token
        ``(N, L, C)`` / pooled ``(N, C)`` features, or any layout with
        ``channel_dim``); returns a scalar.
    """

    def __init__(self,
                 student_channels: int,
                 teacher_channels: int,
                 norm: str = 'standardize',
                 norm_side: str = 'both',
                 loss: str = 'smooth_l1',
                 loss_weight: float = 1.0,
                 projection: str = 'orthogonal',
                 affine: bool = False,
                 orthogonal_map: str = 'qr',
                 align: str = 'student_to_teacher',
                 recompute: bool = True,
                 channel_dim: Optional[int] = None,
                 chunk_elements: Optional[int] = CHUNK_ELEMENTS,
                 foreground_weight: Optional[float] = None,
                 background_weight: float = 0.5,
                 kd_beta: float = 1.0):
        super().__init__()
        _check_choice('norm', norm, NORMS)
        _check_choice('norm_side', norm_side, NORM_SIDES)
        if loss in PREDICTION_LOSSES:
            _check_prediction_loss(loss, norm, projection, foreground_weight,
                                   student_channels, teacher_channels)
        if isinstance(kd_beta, bool) or not isinstance(kd_beta, (int, float)) or \
                not math.isfinite(kd_beta) or kd_beta < 0:
            raise ValueError(f'VkDLoss: kd_beta={kd_beta!r}; it must be a finite number >= 0')
        self.kd_beta = float(kd_beta)
        _check_choice('loss', loss, tuple(LOSSES) + PREDICTION_LOSSES)
        _check_choice('projection', projection, PROJECTIONS)
        _check_choice('align', align, ALIGNS)
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.norm = norm
        self.norm_side = norm_side
        self.loss_name = loss
        self.loss_weight = check_loss_weight(loss_weight, 'VkDLoss')
        self.align = align
        self.recompute = bool(recompute)
        self.channel_dim = channel_dim
        if chunk_elements is not None and (
                isinstance(chunk_elements, bool) or not isinstance(chunk_elements, int)
                or chunk_elements < 1):
            raise ValueError(f'VkDLoss: chunk_elements={chunk_elements!r}; give a positive '
                             f'element count (a whole number such as 2**24), or None to '
                             f'compare every map whole')
        self.chunk_elements = chunk_elements
        if foreground_weight is not None:
            foreground_weight = check_loss_weight(foreground_weight, 'VkDLoss: foreground_weight')
            if channel_dim is not None:
                raise ValueError('VkDLoss: foreground_weight weights the positions of '
                                 '(N, C, H, W) maps by ground-truth boxes; it does not apply '
                                 'to features with channel_dim set (tokens, queries)')
        self.foreground_weight = foreground_weight
        if norm == 'standardize_image' and channel_dim is not None:
            raise ValueError("VkDLoss: norm='standardize_image' standardises each image's "
                             "positions; with channel_dim set the features are compared as "
                             "rows without images. Use norm='standardize'")
        self.background_weight = check_loss_weight(background_weight,
                                                   'VkDLoss: background_weight')

        if projection == 'orthogonal':
            self.projector = OrthogonalProjector(
                student_channels, teacher_channels, affine=affine,
                orthogonal_map=orthogonal_map)
        elif projection == 'linear':
            self.projector = nn.Conv2d(student_channels, teacher_channels, 1, bias=bool(affine))
        else:
            if student_channels != teacher_channels:
                raise ValueError(
                    f"VkDLoss: projection='none' needs equal channel counts, got "
                    f"student {student_channels} and teacher {teacher_channels}")
            self.projector = nn.Identity()

    def _aligned(self, student: torch.Tensor, teacher: torch.Tensor):
        if student.dim() != 4 or student.shape[-2:] == teacher.shape[-2:]:
            return student, teacher
        if self.align == 'student_to_teacher':
            student = F.interpolate(student, size=teacher.shape[-2:], mode='bilinear',
                                    align_corners=False)
        elif self.align == 'teacher_to_student':
            teacher = F.interpolate(teacher, size=student.shape[-2:], mode='bilinear',
                                    align_corners=False)
        else:
            raise ValueError(f"VkDLoss: student feature {tuple(student.shape)} and "
                             f"teacher feature {tuple(teacher.shape)} differ in size "
                             f"and align='none'")
        return student, teacher

    def _aligned_teacher(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The teacher's side of :meth:`_aligned` alone (the student's is not needed,
        e.g. for the teacher's statistics: resizing it would be wasted work)."""
        if self.align != 'teacher_to_student' or student.shape[-2:] == teacher.shape[-2:]:
            return teacher
        return self._aligned(student, teacher)[1]

    def _as_rows(self, student: torch.Tensor, teacher: torch.Tensor):
        """Both sides as ``(M, C)`` rows, channels last (``channel_dim`` given)."""
        student = student.movedim(self.channel_dim, -1)
        teacher = teacher.movedim(self.channel_dim, -1)
        if student.shape[:-1] != teacher.shape[:-1]:
            raise ValueError(f'VkDLoss: with channel_dim={self.channel_dim}, student '
                             f'{tuple(student.shape)} and teacher {tuple(teacher.shape)} '
                             f'(channels last) must agree on every other dim')
        return student.reshape(-1, student.shape[-1]), teacher.reshape(-1, teacher.shape[-1])

    def projector_weight(self) -> Optional[torch.Tensor]:
        """The orthogonal projection's matrix in float32, ``(C_t, C_s)``: its map (a
        QR) runs here. ``None`` for a linear or no projection."""
        if not isinstance(self.projector, OrthogonalProjector):
            return None
        device_type = self.projector.linear.parametrizations.weight.original.device.type
        with torch.autocast(device_type, enabled=False):
            return self.projector.weight.float()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                boxes: Optional[GroundTruthBoxes] = None) -> torch.Tensor:
        """``weight``: :meth:`projector_weight`, if the caller computed it already
        (the distiller does, ahead of the forward passes). ``boxes``: the batch's
        ground-truth boxes, needed with ``foreground_weight``."""
        teacher = teacher.detach()
        if self.channel_dim is not None:
            student, teacher = self._as_rows(student, teacher)
        if student.shape[0] != teacher.shape[0]:
            raise ValueError(f'VkDLoss: batch sizes differ, student {tuple(student.shape)} '
                             f'vs teacher {tuple(teacher.shape)}')
        if weight is None:
            # The orthogonal map (a QR) runs once per step, outside the recomputed part.
            weight = self.projector_weight()
        positions = self._position_weights(student, teacher, boxes)
        if self.recompute and torch.is_grad_enabled() and (
                student.requires_grad or any(p.requires_grad for p in self.parameters())):
            blocks = self._blocks(student, teacher)
            if blocks > 1:
                return self._compare_in_blocks(student, teacher, weight, blocks, positions)
            return checkpoint(self._compare, student, teacher, weight, positions,
                              use_reentrant=False)
        return self._compare(student, teacher, weight, positions)

    def _position_weights(self, student: torch.Tensor, teacher: torch.Tensor,
                          boxes: Optional[GroundTruthBoxes]) -> Optional[torch.Tensor]:
        """``(N, 1, h, w)`` weights of the compared positions under
        ``foreground_weight``, ``loss_weight`` and the channel mean folded in; else
        ``None`` (a plain mean)."""
        if self.foreground_weight is None:
            return None
        if student.dim() != 4:
            raise ValueError(f'VkDLoss: foreground_weight needs (N, C, H, W) maps, got '
                             f'student {tuple(student.shape)}')
        if boxes is None:
            raise ValueError('VkDLoss: foreground_weight is set, and no ground-truth '
                             'boxes were passed (the distiller passes the batch\'s)')
        if len(boxes.boxes) != student.shape[0]:
            raise ValueError(f'VkDLoss: {len(boxes.boxes)} images of boxes for a batch of '
                             f'{student.shape[0]} maps')
        compared = (student if self.align == 'teacher_to_student' else teacher).shape[-2:]
        return self.loss_weight * position_weights(
            boxes, tuple(compared), self.teacher_channels, self.foreground_weight,
            self.background_weight, device=student.device)

    def _blocks(self, student: torch.Tensor, teacher: torch.Tensor) -> int:
        """How many blocks of images to compare a pair of maps in (1: whole)."""
        if (self.chunk_elements is None or self.channel_dim is not None
                or self.loss_name in PREDICTION_LOSSES
                or student.dim() != 4
                or self.norm not in ('standardize', 'standardize_image', 'none')):
            return 1
        return min(student.shape[0],
                   math.ceil(self._compared_elements(student, teacher) / self.chunk_elements))

    def _compared_elements(self, student: torch.Tensor, teacher: torch.Tensor) -> int:
        """Elements of the projected, aligned student map: the loss's mean divides by it."""
        height, width = (student if self.align == 'teacher_to_student' else teacher).shape[-2:]
        return student.shape[0] * self.teacher_channels * height * width

    def _standardized_sides(self):
        return [side for side in ('student', 'teacher')
                if self.norm == 'standardize' and self.norm_side in ('both', side)]

    def _compare_in_blocks(self, student: torch.Tensor, teacher: torch.Tensor, weight,
                           blocks: int, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`_compare` a few images at a time (see ``chunk_elements``). Per-image
        standardisation needs no statistics across blocks: each block does its own."""
        s_blocks, t_blocks = student.chunk(blocks), teacher.chunk(blocks)
        p_blocks = positions.chunk(blocks) if positions is not None else [None] * len(s_blocks)
        sides = self._standardized_sides()
        stats = dict(student=(None, None), teacher=(None, None))
        if 'student' in sides:
            stats['student'] = standardizing_stats([
                checkpoint(self._projected_moments, s, t, weight, use_reentrant=False)
                for s, t in zip(s_blocks, t_blocks)])
        if 'teacher' in sides:
            with torch.no_grad():
                stats['teacher'] = standardizing_stats([
                    channel_moments(self._aligned_teacher(s, t).float())
                    for s, t in zip(s_blocks, t_blocks)])
        total = sum(checkpoint(self._block_loss_sum, s, t, weight, *stats['student'],
                               *stats['teacher'], p, use_reentrant=False)
                    for s, t, p in zip(s_blocks, t_blocks, p_blocks))
        if positions is not None:  # (the weights hold loss_weight and the mean's divisor)
            return total
        return self.loss_weight * total / self._compared_elements(student, teacher)

    def _projected(self, student: torch.Tensor, teacher: torch.Tensor, weight):
        """The aligned, projected student in float32, the aligned teacher, and where
        their channels are."""
        student, teacher = self._aligned(student, teacher)
        with torch.autocast(student.device.type, enabled=False):
            projected = (self.projector(student.float()) if weight is None
                         else self.projector(student.float(), weight=weight))
        cdim = default_channel_dim(projected)
        if projected.shape[cdim] != teacher.shape[cdim]:
            raise ValueError(f'VkDLoss: projected student has {projected.shape[cdim]} '
                             f'channels, teacher has {teacher.shape[cdim]}')
        return projected, teacher, cdim

    def _projected_moments(self, student, teacher, weight):
        return channel_moments(self._projected(student, teacher, weight)[0])

    def _block_loss_sum(self, student, teacher, weight, s_mean, s_rstd, t_mean, t_rstd,
                        positions=None):
        """One block's summed loss (weighted by ``positions`` if given), standardised
        with the whole batch's statistics, or per image."""
        projected, teacher, cdim = self._projected(student, teacher, weight)
        per_image = self.norm == 'standardize_image'
        with torch.autocast(projected.device.type, enabled=False):
            if s_mean is not None:
                # (x - mean) * rstd as one pass, x * rstd + (-mean * rstd)
                projected = torch.addcmul(-s_mean * s_rstd, projected, s_rstd)
            elif per_image and self.norm_side in ('both', 'student'):
                projected = normalize(projected, self.norm, cdim)
            target = teacher.float()
            if t_mean is not None:
                # no gradient on this side: the scaling in place, on the new difference
                target = (target - t_mean).mul_(t_rstd)
            elif per_image and self.norm_side in ('both', 'teacher'):
                target = normalize(target, self.norm, cdim)
            return _reduce(self.loss_name, projected, target, positions)

    def _compare(self, student: torch.Tensor, teacher: torch.Tensor, weight,
                 positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Align, project, normalise and compare: the whole float32 side of the loss."""
        projected, teacher, cdim = self._projected(student, teacher, weight)
        with torch.autocast(projected.device.type, enabled=False):
            if self.norm_side in ('both', 'student'):
                projected = normalize(projected, self.norm, cdim)
            target = teacher.float()
            if self.norm_side in ('both', 'teacher'):
                target = normalize(target, self.norm, cdim)
            if positions is not None:  # (the weights hold loss_weight and the mean's divisor)
                return _reduce(self.loss_name, projected, target, positions)
            if self.loss_name == 'sigmoid_kd':
                return self.loss_weight * sigmoid_kd_loss(projected, target, self.kd_beta)
            return self.loss_weight * LOSSES[self.loss_name](projected, target)

    def extra_repr(self) -> str:
        fg = ('' if self.foreground_weight is None else
              f', foreground_weight={self.foreground_weight}, '
              f'background_weight={self.background_weight}')
        return (f'norm={self.norm} ({self.norm_side}), loss={self.loss_name}, '
                f'loss_weight={self.loss_weight}, align={self.align}, recompute={self.recompute}, '
                f'chunk_elements={self.chunk_elements}{fg}')


def _reduce(loss_name: str, prediction: torch.Tensor, target: torch.Tensor,
            positions: Optional[torch.Tensor]) -> torch.Tensor:
    """The element-wise loss summed, each position weighted by ``positions``
    (``(N, 1, h, w)``) when given."""
    if positions is None:
        return LOSSES[loss_name](prediction, target, reduction='sum')
    return (LOSSES[loss_name](prediction, target, reduction='none') * positions).sum()


def check_loss_weight(value, where: str) -> float:
    """A loss weight must be a finite number >= 0 (0 switches the term off)."""
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ValueError(f'{where}: loss_weight={value!r} is not a number') from None
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f'{where}: loss_weight={value!r}; it must be a finite '
                         f'number >= 0 (0 switches the term off)')
    return weight


def _check_prediction_loss(loss, norm, projection, foreground_weight, c_s, c_t):
    """A prediction loss compares logits channel for channel, as they are."""
    if norm != 'none' or projection != 'none':
        raise ValueError(
            f"VkDLoss: loss='{loss}' compares the two heads' logits as they are, so give "
            f"norm='none' and projection='none' (got norm='{norm}', projection='{projection}'): "
            f"standardising or projecting logits changes the probabilities they stand for")
    if c_s != c_t:
        raise ValueError(
            f"VkDLoss: loss='{loss}' compares the student's and the teacher's logits channel "
            f"for channel, and they have {c_s} and {c_t} channels. A dense head's logits "
            f"have anchors-per-position x classes channels: both heads need the same "
            f"anchors per position and the same classes")
    if foreground_weight is not None:
        raise ValueError(f"VkDLoss: loss='{loss}' weights its elements by the teacher's "
                         f"confidence already; foreground_weight does not apply to it")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"VkDLoss: unknown {name}='{value}'; choose one of {choices}")
