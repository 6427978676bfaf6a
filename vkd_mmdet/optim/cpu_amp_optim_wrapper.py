"""Mixed precision on the CPU: bf16 autocast for `tools/train.py --amp` without a GPU."""
from contextlib import contextmanager

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmdet.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` for the CPU, which mmengine's refuses to run on.

    ``dtype='bfloat16'`` (default, what ``tools/train.py --amp`` picks without a
    GPU): the forward runs under ``torch.autocast('cpu', bfloat16)``; bf16 keeps
    fp32's exponent range, so no loss scaling is needed (the scaler is off).
    ``dtype='float16'``: fp16 autocast with a ``GradScaler`` (``loss_scale`` as in
    ``AmpOptimWrapper``: ``'dynamic'``, a float or a dict), i.e. the GPU's
    ``--amp`` recipe, so its skip-on-overflow behaviour can be run without a GPU.
    The VkD projector, its normalisation and loss still run in float32 (they
    disable autocast).
    """

    def __init__(self, *args, dtype: str = 'bfloat16', loss_scale='dynamic', **kwargs):
        # AmpOptimWrapper.__init__ asserts a GPU; the rest of it is rebuilt here.
        OptimWrapper.__init__(self, *args, **kwargs)
        if dtype not in ('bfloat16', 'float16'):
            raise ValueError(f"CPUAmpOptimWrapper: dtype='{dtype}'; choose 'bfloat16' "
                             f"or 'float16'")
        self.cast_dtype = getattr(torch, dtype)
        scaled = self.cast_dtype == torch.float16
        self._scale_update_param = None
        if loss_scale == 'dynamic':
            self.loss_scaler = torch.amp.GradScaler('cpu', enabled=scaled)
        elif isinstance(loss_scale, float):
            self._scale_update_param = loss_scale
            self.loss_scaler = torch.amp.GradScaler('cpu', init_scale=loss_scale, enabled=scaled)
        elif isinstance(loss_scale, dict):
            self.loss_scaler = torch.amp.GradScaler('cpu', enabled=scaled, **loss_scale)
        else:
            raise TypeError(f'CPUAmpOptimWrapper: loss_scale must be a float, a dict or '
                            f'"dynamic", got {loss_scale!r}')

    @contextmanager
    def optim_context(self, model):
        with OptimWrapper.optim_context(self, model), \
                torch.autocast('cpu', dtype=self.cast_dtype):
            yield
