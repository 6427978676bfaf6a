"""The plugin's hooks, added to a config's own ``custom_hooks`` instead of replacing them.

A config that writes ``custom_hooks = [...]`` replaces its base's list, so an
RTMDet user would silently lose ``EMAHook`` and ``PipelineSwitchHook``.
``tools/train.py`` therefore appends the hooks every VkD run wants to whatever
the config has, and the README's snippet leaves ``custom_hooks`` alone.
"""
from typing import List

from mmengine.config import Config

# Hooks every distillation run gets unless its config lists them already.
VKD_DEFAULT_HOOKS = ('OrthogonalityLoggerHook', 'ResumeCheckHook', 'StudentExportHook',
                     'TeacherCheckHook')


def _hook_name(hook) -> str:
    kind = hook.get('type') if isinstance(hook, dict) else type(hook).__name__
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))
    return name.rsplit('.', 1)[-1]


def add_vkd_hooks(cfg: Config) -> List[str]:
    """Append the missing :data:`VKD_DEFAULT_HOOKS` to ``cfg.custom_hooks``, keep
    every hook already there (the base config's too); return the added names."""
    hooks = list(cfg.get('custom_hooks') or [])
    present = {_hook_name(h) for h in hooks}
    added = [name for name in VKD_DEFAULT_HOOKS if name not in present]
    cfg.custom_hooks = hooks + [dict(type=name) for name in added]
    return added
