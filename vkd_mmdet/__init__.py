"""vkd_mmdet: VkD feature distillation as an MMDetection 3.x plugin.

Importing this package checks the environment, registers the plugin's models and
hooks into MMDetection's registries (``mmdet.registry.MODELS``/``HOOKS``) and lets
``torch.load(weights_only=True)`` read mmengine's own checkpoints (see
:mod:`vkd_mmdet.checkpoint`). An MMDetection config only needs::

    custom_imports = dict(imports=['vkd_mmdet'], allow_failed_imports=False)
"""
from .env_check import check_environment

check_environment()

from .checkpoint import allow_mmengine_checkpoints  # noqa: E402

allow_mmengine_checkpoints()

from . import registry  # noqa: E402,F401  (the `vkd_mmdet::` config scope)
from .datasets import *  # noqa: E402,F401,F403
from .hooks import *  # noqa: E402,F401,F403
from .models import *  # noqa: E402,F401,F403
from .optim import *  # noqa: E402,F401,F403

__version__ = '0.1.0'
