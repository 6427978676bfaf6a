"""Per-channel mean and variance of a 4-D map gathered block by block.

``VkDLoss`` compares big maps (a stride-4 backbone stage at 800x1344 is 8x256x200x336,
550 MB per float32 copy) a few images at a time, so that no full-size float32
intermediate exists. Standardisation still needs each channel's statistics over the
whole batch: each block gives its count, mean and sum of squared deviations, and
Chan et al.'s pairwise update combines them, without the cancellation of
``E[x²] - E[x]²``. Differentiable: gradients reach every block through the
combined statistics.
"""
from typing import List, Tuple

import torch

from .feature_norm import STANDARDIZE_EPS

Moments = Tuple[int, torch.Tensor, torch.Tensor]  # count, mean (1,C,1,1), M2 (1,C,1,1)


def channel_moments(x: torch.Tensor) -> Moments:
    """``x``: ``(N, C, H, W)`` float32; its per-channel count, mean and M2."""
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0, keepdim=True)
    count = x.shape[0] * x.shape[2] * x.shape[3]
    return count, mean, var * count


def standardizing_stats(blocks: List[Moments],
                        eps: float = STANDARDIZE_EPS) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and ``rsqrt(var + eps)`` (biased variance), ``(1, C, 1, 1)`` each, of the
    blocks together: ``(x - mean) * rstd`` is :func:`standardize` over all of them."""
    count, mean, m2 = blocks[0]
    for n_b, mean_b, m2_b in blocks[1:]:
        total = count + n_b
        delta = mean_b - mean
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta * delta * (count * n_b / total)
        count = total
    return mean, torch.rsqrt(m2 / count + eps)
