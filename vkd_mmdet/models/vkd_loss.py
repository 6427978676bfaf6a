"""Feature imitation: VkD's loss for one student/teacher feature pair."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from mmdet.registry import MODELS

from ..errors import ConfigError
from .blockwise_compare import block_count, compare_in_blocks
from .feature_norm import NORMS, default_channel_dim, normalize
from .foreground_weights import GroundTruthBoxes, position_weights
from .loss_options import ALIGNS, align_maps, check_choice, check_loss_weight
from .orthogonal_projector import OrthogonalProjector
from .prediction_mimic_loss import PREDICTION_LOSSES

LOSSES = {'smooth_l1': F.smooth_l1_loss, 'mse': F.mse_loss, 'l1': F.l1_loss}
# Maps with more elements than this are compared in blocks of whole images (see
# `chunk_elements`): 2**24 float32 elements are 64 MiB.
CHUNK_ELEMENTS = 2 ** 24
PROJECTIONS = ('orthogonal', 'linear', 'none')
NORM_SIDES = ('both', 'teacher', 'student')


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
            (A tap with ``loss='sigmoid_kd'`` builds
            :class:`~.prediction_mimic_loss.PredictionMimicLoss` instead.)
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
            instead of keeping its intermediates (a full-size float32 map each), for
            one more forward of the side. The orthogonal map itself is not
            recomputed. Same values and gradients either way.
        chunk_elements: with ``recompute``, a 4-D map with more elements than this
            (default 2**24, 64 MiB in float32) is compared a few images at a time
            (:mod:`.blockwise_compare`). Same value and gradients to float32
            rounding. ``None``: never.
        foreground_weight: ``None`` (default): every position of a map weighs the
            same. A number: positions inside ground-truth boxes are weighted so that
            every box counts equally (FGD's ``1 / area`` mask), the background in a
            term of its own weighted ``background_weight``; the loss is then
            ``loss_weight * (foreground_weight * fg + background_weight * bg)``, both
            weighted means (see :mod:`.foreground_weights`). Normalisation statistics
            stay over all positions. 4-D maps only; the boxes come from the batch.
        background_weight: the background term's weight under ``foreground_weight``.

    Raises:
        ConfigError: for an option outside the above, at construction; for
            features that do not fit the options (sizes with ``align='none'``,
            batch sizes, channels), at the call.

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
                 background_weight: float = 0.5):
        super().__init__()
        if loss in PREDICTION_LOSSES:
            raise ConfigError(f"VkDLoss: loss='{loss}' is prediction mimicking, a loss of its "
                              f"own: PredictionMimicLoss (a tap with loss='{loss}' builds it)")
        for name, value, choices in (('norm', norm, NORMS), ('norm_side', norm_side, NORM_SIDES),
                                     ('loss', loss, tuple(LOSSES)),
                                     ('projection', projection, PROJECTIONS),
                                     ('align', align, ALIGNS)):
            check_choice('VkDLoss', name, value, choices)
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
            raise ConfigError(f'VkDLoss: chunk_elements={chunk_elements!r}; give a positive '
                              f'element count (a whole number such as 2**24), or None to '
                              f'compare every map whole')
        self.chunk_elements = chunk_elements
        if foreground_weight is not None:
            foreground_weight = check_loss_weight(foreground_weight, 'VkDLoss: foreground_weight')
            if channel_dim is not None:
                raise ConfigError('VkDLoss: foreground_weight weights the positions of '
                                  '(N, C, H, W) maps by ground-truth boxes; it does not apply '
                                  'to features with channel_dim set (tokens, queries)')
        self.foreground_weight = foreground_weight
        if norm == 'standardize_image' and channel_dim is not None:
            raise ConfigError("VkDLoss: norm='standardize_image' standardises each image's "
                              "positions; with channel_dim set the features are compared as "
                              "rows without images. Use norm='standardize'")
        self.background_weight = check_loss_weight(background_weight,
                                                   'VkDLoss: background_weight')
        self.projector = _projector(projection, student_channels, teacher_channels, affine,
                                    orthogonal_map)

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
            raise ConfigError(f'VkDLoss: batch sizes differ, student {tuple(student.shape)} '
                              f'vs teacher {tuple(teacher.shape)}')
        if weight is None:
            # The orthogonal map (a QR) runs once per step, outside the recomputed part.
            weight = self.projector_weight()
        positions = self._position_weights(student, teacher, boxes)
        if self.recompute and torch.is_grad_enabled() and (
                student.requires_grad or any(p.requires_grad for p in self.parameters())):
            blocks = block_count(self, student, teacher)
            if blocks > 1:
                term = compare_in_blocks(self, student, teacher, weight, blocks, positions)
            else:
                term = checkpoint(self._compare, student, teacher, weight, positions,
                                  use_reentrant=False)
        else:
            term = self._compare(student, teacher, weight, positions)
        # Note [one weight]: every path returns the unweighted term; the weight is
        # applied here only (a power of two, as the default 4, scales exactly).
        return self.loss_weight * term

    def projector_weight(self) -> Optional[torch.Tensor]:
        """The orthogonal projection's matrix in float32, ``(C_t, C_s)``: its map (a
        QR) runs here. ``None`` for a linear or no projection."""
        if not isinstance(self.projector, OrthogonalProjector):
            return None
        device_type = self.projector.linear.parametrizations.weight.original.device.type
        with torch.autocast(device_type, enabled=False):
            return self.projector.weight.float()

    def aligned(self, student: torch.Tensor, teacher: torch.Tensor):
        """Both maps at one spatial size, as ``align`` says."""
        return align_maps(student, teacher, self.align, 'VkDLoss')

    def aligned_teacher(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The teacher's side of :meth:`aligned` alone (the student's is not needed,
        e.g. for the teacher's statistics: resizing it would be wasted work)."""
        if self.align != 'teacher_to_student' or student.shape[-2:] == teacher.shape[-2:]:
            return teacher
        return self.aligned(student, teacher)[1]

    def projected(self, student: torch.Tensor, teacher: torch.Tensor, weight):
        """The aligned, projected student in float32, the aligned teacher, and where
        their channels are."""
        student, teacher = self.aligned(student, teacher)
        with torch.autocast(student.device.type, enabled=False):
            projected = (self.projector(student.float()) if weight is None
                         else self.projector(student.float(), weight=weight))
        cdim = default_channel_dim(projected)
        if projected.shape[cdim] != teacher.shape[cdim]:
            raise ConfigError(f'VkDLoss: projected student has {projected.shape[cdim]} '
                              f'channels, teacher has {teacher.shape[cdim]}')
        return projected, teacher, cdim

    def reduce(self, prediction: torch.Tensor, target: torch.Tensor,
               positions: Optional[torch.Tensor]) -> torch.Tensor:
        """The element-wise loss summed, each position weighted by ``positions``
        (``(N, 1, h, w)``) when given."""
        if positions is None:
            return LOSSES[self.loss_name](prediction, target, reduction='sum')
        return (LOSSES[self.loss_name](prediction, target, reduction='none') * positions).sum()

    def _compare(self, student: torch.Tensor, teacher: torch.Tensor, weight,
                 positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Align, project, normalise and compare: the whole float32 side of the loss,
        unweighted (a mean, or a sum weighted by ``positions``)."""
        projected, teacher, cdim = self.projected(student, teacher, weight)
        with torch.autocast(projected.device.type, enabled=False):
            if self.norm_side in ('both', 'student'):
                projected = normalize(projected, self.norm, cdim)
            target = teacher.float()
            if self.norm_side in ('both', 'teacher'):
                target = normalize(target, self.norm, cdim)
            if positions is not None:  # (the weights hold the mean's divisor)
                return self.reduce(projected, target, positions)
            return LOSSES[self.loss_name](projected, target)

    def _as_rows(self, student: torch.Tensor, teacher: torch.Tensor):
        """Both sides as ``(M, C)`` rows, channels last (``channel_dim`` given)."""
        student = student.movedim(self.channel_dim, -1)
        teacher = teacher.movedim(self.channel_dim, -1)
        if student.shape[:-1] != teacher.shape[:-1]:
            raise ConfigError(f'VkDLoss: with channel_dim={self.channel_dim}, student '
                              f'{tuple(student.shape)} and teacher {tuple(teacher.shape)} '
                              f'(channels last) must agree on every other dim')
        return student.reshape(-1, student.shape[-1]), teacher.reshape(-1, teacher.shape[-1])

    def _position_weights(self, student: torch.Tensor, teacher: torch.Tensor,
                          boxes: Optional[GroundTruthBoxes]) -> Optional[torch.Tensor]:
        """``(N, 1, h, w)`` weights of the compared positions under
        ``foreground_weight``, the channel mean folded in; else ``None`` (a plain mean)."""
        if self.foreground_weight is None:
            return None
        if student.dim() != 4:
            raise ConfigError(f'VkDLoss: foreground_weight needs (N, C, H, W) maps, got '
                              f'student {tuple(student.shape)}')
        if boxes is None:
            raise ConfigError('VkDLoss: foreground_weight is set, and no ground-truth '
                              'boxes were passed (the distiller passes the batch\'s)')
        if len(boxes.boxes) != student.shape[0]:
            raise ConfigError(f'VkDLoss: {len(boxes.boxes)} images of boxes for a batch of '
                              f'{student.shape[0]} maps')
        compared = (student if self.align == 'teacher_to_student' else teacher).shape[-2:]
        return position_weights(boxes, tuple(compared), self.teacher_channels,
                                self.foreground_weight, self.background_weight,
                                device=student.device)

    def extra_repr(self) -> str:
        fg = ('' if self.foreground_weight is None else
              f', foreground_weight={self.foreground_weight}, '
              f'background_weight={self.background_weight}')
        return (f'norm={self.norm} ({self.norm_side}), loss={self.loss_name}, '
                f'loss_weight={self.loss_weight}, align={self.align}, recompute={self.recompute}, '
                f'chunk_elements={self.chunk_elements}{fg}')


def _projector(projection: str, c_s: int, c_t: int, affine: bool, orthogonal_map: str):
    if projection == 'orthogonal':
        return OrthogonalProjector(c_s, c_t, affine=affine, orthogonal_map=orthogonal_map)
    if projection == 'linear':
        return nn.Conv2d(c_s, c_t, 1, bias=bool(affine))
    if c_s != c_t:
        raise ConfigError(f"VkDLoss: projection='none' needs equal channel counts, got "
                          f"student {c_s} and teacher {c_t}")
    return nn.Identity()
