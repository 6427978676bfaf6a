"""Mixed precision on the CPU: bf16 autocast for `tools/train.py --amp` without a GPU,
where the CPU computes bf16 natively; float32 where it would only emulate it."""
from contextlib import contextmanager
from typing import Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmdet.registry import OPTIM_WRAPPERS

from ..errors import ConfigError

BF16_CHOICES = ('auto', 'always', 'never')


def cpu_native_bf16() -> Tuple[bool, str]:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX), and what it has.

    Note [emulated bf16]: without either, PyTorch emulates bf16 arithmetic in float32
    code paths plus conversions; on an AVX2 CPU a 3x3 convolution's forward and
    backward under bf16 autocast measured 79x slower than in float32 (one thread, 64
    channels, 128x128, 2026-12-07), so mixed precision there only loses time.
    """
    avx512_bf16 = torch.cpu._is_avx512_bf16_supported()
    amx = torch.cpu._is_amx_tile_supported()
    has = [name for name, ok in (('AVX-512 BF16', avx512_bf16), ('AMX', amx)) if ok]
    what = (', '.join(has) if has else
            f'neither AVX-512 BF16 nor AMX (its vector kernels: '
            f'{torch.backends.cpu.get_cpu_capability()})')
    return bool(has), what


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` for the CPU, which mmengine's refuses to run on.

    ``dtype='bfloat16'`` (default, what ``tools/train.py --amp`` picks without a
    GPU): the forward runs under ``torch.autocast('cpu', bfloat16)``; bf16 keeps
    fp32's exponent range, so no loss scaling is needed (the scaler is off).
    ``bf16`` decides whether it does: ``'auto'`` (default) only where the CPU has
    native bf16 (:func:`cpu_native_bf16`), float32 with a warning elsewhere;
    ``'always'`` bf16 even where emulated; ``'never'`` float32.
    ``dtype='float16'``: fp16 autocast with a ``GradScaler`` (``loss_scale`` as in
    ``AmpOptimWrapper``: ``'dynamic'``, a float or a dict), i.e. the GPU's
    ``--amp`` recipe, so its skip-on-overflow behaviour can be run without a GPU.
    The VkD projector, its normalisation and loss still run in float32 (they
    disable autocast).

    Raises:
        ValueError: an unknown ``dtype`` or ``bf16``.
        TypeError: a ``loss_scale`` that is not a float, a dict or ``'dynamic'``.
    """

    def __init__(self, *args, dtype: str = 'bfloat16', loss_scale='dynamic',
                 bf16: str = 'auto', **kwargs):
        # AmpOptimWrapper.__init__ asserts a GPU; the rest of it is rebuilt here.
        OptimWrapper.__init__(self, *args, **kwargs)
        if dtype not in ('bfloat16', 'float16'):
            raise ConfigError(f"CPUAmpOptimWrapper: dtype='{dtype}'; choose 'bfloat16' "
                              f"or 'float16'")
        if bf16 not in BF16_CHOICES:
            raise ConfigError(f"CPUAmpOptimWrapper: bf16={bf16!r}; choose one of "
                              f"{BF16_CHOICES}")
        # None: float32, no autocast
        self.cast_dtype = getattr(torch, dtype) if dtype == 'float16' else bf16_dtype(bf16)
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
            raise ConfigError(f'CPUAmpOptimWrapper: loss_scale must be a float, a dict or '
                              f'"dynamic", got {loss_scale!r}')

    @contextmanager
    def optim_context(self, model):
        if self.cast_dtype is None:
            with OptimWrapper.optim_context(self, model):
                yield
            return
        with OptimWrapper.optim_context(self, model), \
                torch.autocast('cpu', dtype=self.cast_dtype):
            yield


def bf16_dtype(bf16: str, capability: Optional[Tuple[bool, str]] = None
               ) -> Optional[torch.dtype]:
    """``torch.bfloat16`` where bf16 autocast should run, ``None`` (float32) where not;
    says why, in the log, when ``'auto'`` falls back to float32. ``capability``: what
    :func:`cpu_native_bf16` says (default: asks it)."""
    if bf16 == 'always':
        return torch.bfloat16
    if bf16 == 'never':
        return None
    native, what = capability or cpu_native_bf16()
    if native:
        return torch.bfloat16
    print_log(f'CPUAmpOptimWrapper: mixed precision asked for (--amp or an AmpOptimWrapper '
              f'config), but this CPU has {what}, so bf16 would be emulated and many times '
              f'slower than float32. Training in float32 instead. To train in bf16 anyway, '
              f"set optim_wrapper.bf16='always' (e.g. --cfg-options optim_wrapper.bf16=always).",
              logger='current', level=30)
    return None
