"""Mixed precision on the CPU: bf16 autocast for `tools/train.py --amp` without a GPU."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from mmdet.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """An ``OptimWrapper`` whose forward runs under ``torch.autocast('cpu', bf16)``.

    mmengine's ``AmpOptimWrapper`` refuses to run without a GPU. bf16 keeps fp32's
    exponent range, so no loss scaling is needed. The VkD projector, its
    normalisation and loss still run in float32 (they disable autocast).
    """

    def __init__(self, *args, dtype: str = 'bfloat16', **kwargs):
        super().__init__(*args, **kwargs)
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
