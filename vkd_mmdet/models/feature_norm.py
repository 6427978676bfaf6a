"""Task-specific feature normalisation used by VkD before comparing features.

Every function takes a feature with its channels in ``channel_dim`` (``(N, C, H, W)``
with dim 1, ``(N, L, C)`` or ``(N, C)`` with dim -1) and returns the same shape.
Statistics are computed in float32, also under autocast, and stay finite for
zero-variance channels and single-position batches.
"""
import torch
import torch.nn.functional as F

from ..errors import ConfigError

NORMS = ('standardize', 'standardize_image', 'layernorm', 'whiten', 'none')


def default_channel_dim(x: torch.Tensor) -> int:
    """Channels of ``(N, C, H, W)`` maps are dim 1; of ``(N, L, C)``/``(N, C)``, the last."""
    return 1 if x.dim() == 4 else -1


def _as_rows(x: torch.Tensor, channel_dim: int):
    """``x`` as a float32 ``(M, C)`` matrix plus a function that undoes it."""
    moved = x.movedim(channel_dim, -1)
    shape = moved.shape

    def restore(rows: torch.Tensor) -> torch.Tensor:
        return rows.reshape(shape).movedim(-1, channel_dim)

    return moved.reshape(-1, shape[-1]).float(), restore


STANDARDIZE_EPS = 1e-6


def standardize(x: torch.Tensor, channel_dim: int = 1, eps: float = STANDARDIZE_EPS) -> torch.Tensor:
    """Per channel, over batch and positions: mean 0, std 1 (biased variance).

    This is the detection setting of VkD. A constant channel maps to 0; the
    small ``eps`` keeps its gradient finite without biasing low-variance channels.
    """
    x = x.float()
    cdim = channel_dim % x.dim()
    if x.numel() > x.shape[cdim]:
        # Batch norm in training mode without an affine or running statistics is this
        # very formula, ``(x - mean) * rsqrt(var + eps)`` with the biased variance,
        # as one fused kernel forward and one backward, where the same formula in
        # tensor ops takes a reduction and two full-size passes forward and about
        # five backward, each one more full-size intermediate (measured:
        # docs/design.md).
        return F.batch_norm(x.movedim(cdim, 1), None, None, training=True, momentum=0.0,
                            eps=eps).movedim(1, cdim)
    # One value per channel (batch norm refuses it): every value is its channel's mean.
    dims = tuple(d for d in range(x.dim()) if d != cdim)
    var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps)


def standardize_per_image(x: torch.Tensor, channel_dim: int = 1,
                          eps: float = STANDARDIZE_EPS) -> torch.Tensor:
    """Per channel, over each image's positions: mean 0, std 1 (biased variance).

    For ``(N, C, H, W)`` maps and ``(N, L, C)`` tokens (dim 0 is the image). The
    statistics then ignore the other images of the batch, as the VkD author did
    for Faster R-CNN; :func:`standardize` shares them across the batch.
    """
    x = x.float()
    cdim = channel_dim % x.dim()
    if x.dim() < 3 or cdim == 0:
        raise ConfigError(f"norm='standardize_image' standardises each image's positions; "
                          f"features of shape {tuple(x.shape)} with channels in dim "
                          f"{channel_dim} have no positions per image (give (N, C, H, W) maps "
                          f"or (N, L, C) tokens)")
    if cdim == 1 and x[0, 0].numel() > 1:
        # instance norm is this very formula as one fused kernel (it refuses maps of
        # one position, e.g. P7 of a small image, where the formula gives zeros)
        return F.instance_norm(x, eps=eps)
    dims = tuple(d for d in range(1, x.dim()) if d != cdim)
    var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps)


def layer_norm(x: torch.Tensor, channel_dim: int = 1, eps: float = 1e-5) -> torch.Tensor:
    """Per position, over channels: mean 0, std 1, no affine (classification)."""
    x = x.float()
    var, mean = torch.var_mean(x, dim=channel_dim, correction=0, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps)


def whiten(x: torch.Tensor, channel_dim: int = 1, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean and identity channel covariance (the generation setting).

    Uses Cholesky whitening, ``L⁻¹x`` with ``LLᵀ = Σ + ε·mean(diag Σ)·I + tiny·I``,
    rather than ZCA: its backward pass stays finite when eigenvalues repeat,
    which they do for rank-deficient batches (fewer positions than channels).
    The relative shrinkage ``eps`` keeps the covariance positive definite.
    """
    rows, restore = _as_rows(x, channel_dim)
    num, channels = rows.shape
    centred = rows - rows.mean(dim=0, keepdim=True)
    cov = centred.t() @ centred / max(num, 1)
    shrink = eps * cov.diagonal().mean().clamp_min(0) + 1e-8
    cov = cov + shrink * torch.eye(channels, device=cov.device, dtype=cov.dtype)
    chol = torch.linalg.cholesky(cov)
    white = torch.linalg.solve_triangular(chol, centred.t(), upper=False).t()
    return restore(white)


def normalize(x: torch.Tensor, norm: str, channel_dim: int = 1) -> torch.Tensor:
    """Apply the normalisation named ``norm`` (one of :data:`NORMS`)."""
    with torch.autocast(x.device.type, enabled=False):
        if norm == 'standardize':
            return standardize(x, channel_dim)
        if norm == 'standardize_image':
            return standardize_per_image(x, channel_dim)
        if norm == 'layernorm':
            return layer_norm(x, channel_dim)
        if norm == 'whiten':
            return whiten(x, channel_dim)
        if norm == 'none':
            return x.float()
    raise ConfigError(f"unknown feature normalisation '{norm}'; choose one of {NORMS}")
