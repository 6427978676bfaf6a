""":class:`~.vkd_loss.VkDLoss` on big maps, a few images at a time.

With ``recompute`` a 4-D map larger than ``chunk_elements`` is compared in blocks of
whole images, each block recomputed on its own in the backward pass, so that no
full-size float32 intermediate exists. Per-channel standardisation over the whole
batch still needs the whole batch's statistics: they are gathered over all blocks
first (:mod:`.channel_moments`) and each block is standardised with them, by the same
``(x - mean) * rstd`` that :func:`~.feature_norm.standardize` computes. Per-image
standardisation needs nothing across blocks: each block does its own.
"""
import math
from typing import Optional

import torch
from torch.utils.checkpoint import checkpoint

from .channel_moments import channel_moments, standardizing_stats
from .feature_norm import normalize

BLOCKWISE_NORMS = ('standardize', 'standardize_image', 'none')


def block_count(loss, student: torch.Tensor, teacher: torch.Tensor) -> int:
    """How many blocks of images ``loss`` compares a pair of maps in (1: whole)."""
    if (loss.chunk_elements is None or loss.channel_dim is not None or student.dim() != 4
            or loss.norm not in BLOCKWISE_NORMS):
        return 1
    return min(student.shape[0],
               math.ceil(compared_elements(loss, student, teacher) / loss.chunk_elements))


def compared_elements(loss, student: torch.Tensor, teacher: torch.Tensor) -> int:
    """Elements of the projected, aligned student map: the loss's mean divides by it."""
    height, width = (student if loss.align == 'teacher_to_student' else teacher).shape[-2:]
    return student.shape[0] * loss.teacher_channels * height * width


def compare_in_blocks(loss, student: torch.Tensor, teacher: torch.Tensor, weight,
                      blocks: int, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The unweighted loss of ``loss`` (a :class:`~.vkd_loss.VkDLoss`) over ``blocks``
    blocks of images: their mean, or their sum weighted by ``positions``."""
    s_blocks, t_blocks = student.chunk(blocks), teacher.chunk(blocks)
    p_blocks = positions.chunk(blocks) if positions is not None else [None] * len(s_blocks)
    sides = [side for side in ('student', 'teacher')
             if loss.norm == 'standardize' and loss.norm_side in ('both', side)]
    stats = dict(student=(None, None), teacher=(None, None))
    if 'student' in sides:
        stats['student'] = standardizing_stats([
            checkpoint(_projected_moments, loss, s, t, weight, use_reentrant=False)
            for s, t in zip(s_blocks, t_blocks)])
    if 'teacher' in sides:
        with torch.no_grad():
            stats['teacher'] = standardizing_stats([
                channel_moments(loss.aligned_teacher(s, t).float())
                for s, t in zip(s_blocks, t_blocks)])
    total = sum(checkpoint(_block_loss_sum, loss, s, t, weight, *stats['student'],
                           *stats['teacher'], p, use_reentrant=False)
                for s, t, p in zip(s_blocks, t_blocks, p_blocks))
    if positions is not None:  # (the weights hold the mean's divisor)
        return total
    return total / compared_elements(loss, student, teacher)


def _projected_moments(loss, student, teacher, weight):
    return channel_moments(loss.projected(student, teacher, weight)[0])


def _block_loss_sum(loss, student, teacher, weight, s_mean, s_rstd, t_mean, t_rstd,
                    positions=None):
    """One block's summed loss (weighted by ``positions`` if given), standardised
    with the whole batch's statistics, or per image."""
    projected, teacher, cdim = loss.projected(student, teacher, weight)
    per_image = loss.norm == 'standardize_image'
    with torch.autocast(projected.device.type, enabled=False):
        if s_mean is not None:
            # (x - mean) * rstd as one pass, x * rstd + (-mean * rstd)
            projected = torch.addcmul(-s_mean * s_rstd, projected, s_rstd)
        elif per_image and loss.norm_side in ('both', 'student'):
            projected = normalize(projected, loss.norm, cdim)
        target = teacher.float()
        if t_mean is not None:
            # no gradient on this side: the scaling in place, on the new difference
            target = (target - t_mean).mul_(t_rstd)
        elif per_image and loss.norm_side in ('both', 'teacher'):
            target = normalize(target, loss.norm, cdim)
        return loss.reduce(projected, target, positions)
