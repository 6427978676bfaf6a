"""Orthogonal (or semi-orthogonal) linear projection of student features.

VkD maps each spatial position of the student feature into the teacher's channel
space with a matrix whose columns (or rows) are orthonormal, so the projection
cannot rescale or collapse the student's representation: it can only rotate it.
"""
import warnings
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import orthogonal as torch_orthogonal

from mmdet.registry import MODELS

from ..errors import ConfigError
from .feature_norm import default_channel_dim


class QROrthogonal(nn.Module):
    """Parametrization ``A -> Q`` of the Stiefel manifold through a QR decomposition.

    For a weight of shape ``(out, in)`` with ``out >= in`` it returns the ``Q`` of
    the reduced QR decomposition of ``A`` (orthonormal columns, ``WᵀW = I``); for
    ``out < in`` the transpose of the ``Q`` of ``Aᵀ`` (orthonormal rows, ``WWᵀ = I``).
    Signs are fixed so that ``diag(R) > 0``, which makes the map unique and smooth,
    and ``right_inverse`` the identity on orthonormal matrices.

    Why QR: it is the cheapest of torch's maps by orders of magnitude for wide
    matrices (measured: docs/design.md). The result is orthonormal to float32
    precision whatever ``A`` is, so the constraint never drifts during training.
    The map always runs in float32, also under autocast.
    """

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        dtype = raw.dtype
        with torch.autocast(raw.device.type, enabled=False):
            tall = raw.shape[0] >= raw.shape[1]
            a = raw.float() if tall else raw.float().t()
            q, r = torch.linalg.qr(a, mode='reduced')
            # sign(diag(R)) without zeros, so no column is ever zeroed out.
            signs = torch.where(torch.diagonal(r) >= 0, 1.0, -1.0)
            q = q * signs
            w = q if tall else q.t()
        return w.to(dtype)

    @torch.no_grad()
    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        # Any full-rank matrix maps onto the manifold; orthonormal ones onto themselves.
        return weight


@MODELS.register_module()
class OrthogonalProjector(nn.Module):
    """Per-position orthogonal projection from ``in_channels`` to ``out_channels``.

    ``weight`` is an ordinary attribute of shape ``(out_channels, in_channels)``:
    orthogonal when square, orthonormal columns (``WᵀW = I``, an isometric
    embedding) when ``in < out``, orthonormal rows (``WWᵀ = I``) when ``in > out``
    (information is discarded; a warning says so). The constraint lives in a
    ``torch.nn.utils.parametrize`` parametrization of ``weight`` and nowhere else.

    Args:
        in_channels: student channels ``C_s``.
        out_channels: teacher channels ``C_t``.
        affine: add a learnable per-channel scale and bias after the map (the
            official detection code does). Leave it off when a per-channel
            standardisation follows: that cancels any per-channel affine exactly.
        orthogonal_map: ``'qr'`` (default, any shape, cheap), or one of torch's
            ``'matrix_exp'`` (the official code's choice), ``'cayley'``,
            ``'householder'``, which are far slower for large or non-square maps.
        channel_dim: where the channels are; ``None`` means dim 1 for 4-D
            ``(N, C, H, W)`` inputs and the last dim for ``(N, L, C)`` or ``(N, C)``.

    Shapes:
        ``(N, C_s, H, W) -> (N, C_t, H, W)``, ``(N, L, C_s) -> (N, L, C_t)``,
        ``(N, C_s) -> (N, C_t)``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 affine: bool = False,
                 orthogonal_map: str = 'qr',
                 channel_dim=None):
        super().__init__()
        if in_channels <= 0 or out_channels <= 0:
            raise ConfigError(f'OrthogonalProjector needs positive channel counts, '
                              f'got in_channels={in_channels}, out_channels={out_channels}')
        if in_channels > out_channels:
            warnings.warn(
                f'OrthogonalProjector {in_channels}->{out_channels}: the student is '
                f'wider than the teacher, so the projection (orthonormal rows) '
                f'discards {in_channels - out_channels} dimensions of the student '
                f'feature.', stacklevel=2)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.orthogonal_map = orthogonal_map
        self.channel_dim = channel_dim

        self.linear = nn.Linear(in_channels, out_channels, bias=False)
        nn.init.orthogonal_(self.linear.weight)
        if orthogonal_map == 'qr':
            parametrize.register_parametrization(self.linear, 'weight', QROrthogonal())
        elif orthogonal_map in ('matrix_exp', 'cayley', 'householder'):
            torch_orthogonal(self.linear, 'weight', orthogonal_map=orthogonal_map)
        else:
            raise ConfigError(f"OrthogonalProjector: unknown orthogonal_map "
                              f"'{orthogonal_map}'; choose 'qr', 'matrix_exp', "
                              f"'cayley' or 'householder'")

        if affine:
            self.scale = nn.Parameter(torch.ones(out_channels))
            self.bias = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter('scale', None)
            self.register_parameter('bias', None)

    @property
    def weight(self) -> torch.Tensor:
        """The constrained matrix, shape ``(out_channels, in_channels)``."""
        return self.linear.weight

    @torch.no_grad()
    def orthogonality_error(self) -> float:
        """``max |WᵀW - I|`` (or ``|WWᵀ - I|`` for wide maps), in float32."""
        w = self.weight.float()
        gram = w.t() @ w if self.out_channels >= self.in_channels else w @ w.t()
        eye = torch.eye(gram.shape[0], device=gram.device)
        return (gram - eye).abs().max().item()

    def forward(self, x: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Project ``x``; ``weight``, if given, is ``self.weight`` computed by the
        caller (so a recomputed forward does not run the orthogonal map again)."""
        cdim = self.channel_dim if self.channel_dim is not None else default_channel_dim(x)
        if x.shape[cdim] != self.in_channels:
            raise ConfigError(f'OrthogonalProjector expects {self.in_channels} channels '
                              f'in dim {cdim}, got input of shape {tuple(x.shape)}')
        with torch.autocast(x.device.type, enabled=False):
            w = (self.weight if weight is None else weight).float()
            x = x.float()
            if x.dim() == 4 and cdim in (1, -3):
                y = F.conv2d(x, w[:, :, None, None])
            else:
                y = F.linear(x.movedim(cdim, -1), w).movedim(-1, cdim)
            if self.scale is not None:
                shape = [1] * y.dim()
                shape[cdim] = self.out_channels
                y = y * self.scale.view(shape) + self.bias.view(shape)
        return y

    def extra_repr(self) -> str:
        return (f'{self.in_channels}->{self.out_channels}, '
                f'map={self.orthogonal_map}, affine={self.scale is not None}')
