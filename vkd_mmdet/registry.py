"""Registries of the ``vkd_mmdet`` scope: children of MMDetection's.

The plugin registers its classes in ``mmdet.registry`` itself, so plain
MMDetection configs find them. These child registries only exist so that
configs inheriting ``vkd_mmdet::...`` (whose dicts carry ``_scope_='vkd_mmdet'``)
resolve too: a lookup here falls back to MMDetection's registries.
"""
from mmengine.config import utils as _config_utils
from mmengine.registry import Registry

from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import MODELS as MMDET_MODELS

MODELS = Registry('model', parent=MMDET_MODELS, scope='vkd_mmdet')
HOOKS = Registry('hook', parent=MMDET_HOOKS, scope='vkd_mmdet')

# `_base_ = 'vkd_mmdet::vkd/<config>.py'`: mmengine maps the scope to an importable
# location and reads `<location>/.mim/configs/...`. The subpackage (not the
# distribution) is named so that editable installs resolve to the source tree.
_config_utils.MODULE2PACKAGE.setdefault('vkd_mmdet', 'vkd_mmdet.configs')
