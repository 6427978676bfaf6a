"""One line naming the CPU a benchmark ran on.

Numbers from machines of the same kind differ: on two 2-core machines here the
same teacher trained in 25.8 and 12.3 minutes, to 9.1 and 10.8 mAP. The model
name alone can be generic ('Intel(R) Xeon(R) Processor'), so the line also
gives the vector ISA torch dispatches to.
"""
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    cpuinfo = Path('/proc/cpuinfo')
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor() or platform.machine()


def describe(device: str = 'cpu') -> str:
    """E.g. 'Intel(R) Xeon(R) Processor, 2 CPU cores, torch 2.13.0+cpu (CPU kernels: AVX512)';
    with a CUDA ``device``, the GPU and CUDA version first."""
    import torch
    cpu = (f'{cpu_model()}, {os.cpu_count()} CPU cores, torch {torch.__version__} '
           f'(CPU kernels: {torch.backends.cpu.get_cpu_capability()})')
    if torch.device(device).type != 'cuda':
        return cpu
    props = torch.cuda.get_device_properties(device)
    return (f'{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, '
            f'cuDNN {torch.backends.cudnn.version()}; {cpu}')
