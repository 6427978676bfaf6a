from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper
from .projector_weight_decay import exclude_projectors_from_weight_decay

__all__ = ['CPUAmpOptimWrapper', 'exclude_projectors_from_weight_decay']
