"""Turn a distillation model/checkpoint into a plain MMDetection student.

The exported checkpoint holds only tensors and plain Python values, so stock
MMDetection loads it with ``torch.load(weights_only=True)`` and no plugin.
"""
import copy
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional

import torch
from mmengine.config import Config

from .errors import ConfigError

STUDENT_PREFIX = 'student.'
# Config keys that only make sense for the distiller's training run.
_TRAINING_ONLY_KEYS = ('custom_imports', 'load_from', 'resume')


def student_state_dict(state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """``student.backbone.x`` -> ``backbone.x``; projectors and the rest dropped."""
    out = OrderedDict((k[len(STUDENT_PREFIX):], v.detach().cpu())
                      for k, v in state_dict.items() if k.startswith(STUDENT_PREFIX))
    if not out:
        raise KeyError("no 'student.*' weights in this state dict: it is not a "
                       "VkDDistiller checkpoint")
    return out


def builds_distiller(model_cfg) -> bool:
    """Whether a model config builds a VkDDistiller or a registered subclass of it.
    Both looked up in MMDetection's registry, so that this module imports nothing of
    the plugin's models (they import it, through the checkpoint loader)."""
    from mmdet.registry import MODELS
    distiller = MODELS.get('VkDDistiller')
    model_type = model_cfg.get('type')
    cls = MODELS.get(model_type) if isinstance(model_type, str) else model_type
    return distiller is not None and isinstance(cls, type) and issubclass(cls, distiller)


def student_config(cfg: Config) -> Config:
    """The distiller's training config with ``model`` replaced by the student."""
    model = cfg.get('model', {})
    if not builds_distiller(model) or 'student' not in model:
        raise ConfigError("student_config: the config's model is not a VkDDistiller "
                          "with a `student`")
    plain = copy.deepcopy(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg))
    plain['model'] = plain['model']['student']
    for key in _TRAINING_ONLY_KEYS:
        plain.pop(key, None)
    # Our own hooks need the plugin; a plain MMDetection process has no use for them.
    plain['custom_hooks'] = [h for h in plain.get('custom_hooks', []) or []
                             if not _is_plugin_hook(h.get('type'))]
    return Config(plain)


def _is_plugin_hook(hook_type) -> bool:
    """Whether a hook type (a registered name or a class) is one of this plugin's.
    Looked up in MMDetection's registry, where the plugin's import put its hooks, so
    that this module imports nothing of the plugin's (its hooks import it)."""
    if isinstance(hook_type, str):
        from mmdet.registry import HOOKS
        hook_type = HOOKS.get(hook_type)
    return getattr(hook_type, '__module__', '').startswith(__package__ + '.')


def _plain(obj):
    """Keep only what ``torch.load(weights_only=True)`` accepts without help."""
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(o) for o in obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if hasattr(obj, 'tolist'):  # numpy scalars / arrays
        return obj.tolist()
    return str(obj)


def save_student(path: str, state_dict, cfg: Optional[Config] = None,
                 meta: Optional[dict] = None, config_path: Optional[str] = None) -> str:
    """Write ``{'meta', 'state_dict'}`` to ``path`` (atomically) and, if ``cfg`` is
    given, the student's standalone config to ``config_path``. Returns ``path``."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    payload = {'meta': _plain(meta or {}), 'state_dict': student_state_dict(state_dict)}
    tmp = f'{path}.tmp'
    torch.save(payload, tmp)
    os.replace(tmp, path)
    if cfg is not None:
        student_config(cfg).dump(config_path or osp.splitext(path)[0] + '.py')
    return path
