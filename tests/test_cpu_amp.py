"""Mixed precision on a CPU trains in bf16 only where the CPU computes bf16 natively;
elsewhere it trains in float32 and says why once."""
import pytest
import torch
import torch.nn as nn

from vkd_mmdet.optim import CPUAmpOptimWrapper
from vkd_mmdet.optim.cpu_amp_optim_wrapper import bf16_dtype, cpu_native_bf16


def wrapper(**kwargs) -> CPUAmpOptimWrapper:
    model = nn.Linear(4, 4)
    return CPUAmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


def forward_dtype(optim_wrapper) -> torch.dtype:
    """The dtype a linear layer computes in inside the wrapper's training context."""
    layer = nn.Linear(4, 4)
    with optim_wrapper.optim_context(layer):
        return layer(torch.ones(2, 4)).dtype


def test_auto_follows_this_cpus_real_capability():
    native, what = cpu_native_bf16()
    assert native == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert ('AVX-512 BF16' in what or 'AMX' in what) if native else 'neither' in what
    assert forward_dtype(wrapper()) == (torch.bfloat16 if native else torch.float32)


@pytest.mark.parametrize('bf16, dtype', [('always', torch.bfloat16), ('never', torch.float32)])
def test_the_users_switch_forces_either_outcome(bf16, dtype):
    assert forward_dtype(wrapper(bf16=bf16)) == dtype


def logged(action) -> str:
    """What ``action()`` writes to mmengine's current logger (the run's log)."""
    import io
    import logging
    from mmengine.logging import MMLogger
    logger, stream = MMLogger.get_current_instance(), io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        action()
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_without_native_bf16_auto_trains_in_float32_and_says_why_once():
    lacking = (False, 'neither AVX-512 BF16 nor AMX (its vector kernels: AVX2)')
    dtypes = []
    said = logged(lambda: dtypes.append(bf16_dtype('auto', capability=lacking)))
    assert dtypes == [None]
    assert said.count('CPUAmpOptimWrapper: mixed precision asked for') == 1, said
    assert 'this CPU has neither AVX-512 BF16 nor AMX' in said
    assert 'Training in float32 instead' in said
    assert "optim_wrapper.bf16=always" in said
    # a CPU with native bf16: bf16, nothing said
    said = logged(lambda: dtypes.append(bf16_dtype('auto', capability=(True, 'AMX'))))
    assert dtypes[-1] is torch.bfloat16 and 'CPUAmpOptimWrapper' not in said


def test_an_unknown_choice_is_named():
    with pytest.raises(ValueError, match=r"bf16='sometimes'; choose one of \('auto', 'always', "
                                         r"'never'\)"):
        wrapper(bf16='sometimes')
