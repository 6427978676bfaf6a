"""The teacher: read its config, build it, load its weights, freeze it.

The distiller keeps the result outside its module tree (see
:class:`~.vkd_distiller.VkDDistiller`); nothing here knows about taps or losses.
"""
import copy
import os.path as osp
from typing import Tuple, Union

import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger

from mmdet.registry import MODELS

from ..checkpoint import load_teacher_checkpoint
from ..errors import ConfigError


def build_teacher_config(teacher: Union[str, dict]) -> dict:
    """A detector config dict from a dict, a local config file or ``'mmdet::...'``.

    Raises ``TypeError`` for another type, ``FileNotFoundError`` for a file or name
    that does not resolve, ``ImportError`` where its ``custom_imports`` fail and
    :class:`ConfigError` for a config without ``model``.
    """
    if isinstance(teacher, (dict, ConfigDict)):
        return copy.deepcopy(dict(teacher))
    if not isinstance(teacher, str):
        raise ConfigError(f'VkDDistiller: teacher must be a config dict, a config file '
                          f'or an "mmdet::..." name, got {type(teacher).__name__}')
    if '::' not in teacher and not osp.isfile(teacher):
        raise FileNotFoundError(f"VkDDistiller: teacher config file '{teacher}' "
                                f"does not exist")
    try:
        if '::' in teacher:
            from mmengine.hub import get_config
            cfg = get_config(teacher)
        else:
            cfg = Config.fromfile(teacher)
    except ImportError as exc:
        # The config was found, but a module its `custom_imports` names (e.g.
        # 'mmpretrain.models' for an mmpretrain backbone) fails to import.
        raise ImportError(f"VkDDistiller: teacher config '{teacher}' imports modules "
                          f"that fail to import: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise FileNotFoundError(f"VkDDistiller: cannot resolve teacher config "
                                f"'{teacher}': {type(exc).__name__}: {exc}") from exc
    if 'model' not in cfg:
        raise ConfigError(f"VkDDistiller: teacher config '{teacher}' has no `model`")
    return cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)


def build_frozen_teacher(teacher: Union[str, dict], student_cfg: dict, ckpt=None,
                         trust: bool = False) -> Tuple[nn.Module, dict]:
    """The teacher detector in eval mode with ``requires_grad=False``, and the
    ``meta`` of its checkpoint (``{}`` without one: a random teacher, for tests)."""
    cfg = build_teacher_config(teacher)
    model = MODELS.build(ConfigDict(cfg))
    _warn_on_preprocessing_mismatch(student_cfg, cfg)
    meta = {}
    if ckpt is not None:
        meta = load_teacher_weights(model, ckpt, trust)
    else:
        MMLogger.get_current_instance().warning(
            'VkDDistiller: no teacher_ckpt given; the teacher is randomly '
            'initialised and distillation will not help.')
    model.requires_grad_(False)
    model.eval()
    return model, meta


def load_teacher_weights(model: nn.Module, ckpt: str, trust: bool = False) -> dict:
    """:func:`~vkd_mmdet.checkpoint.load_teacher_checkpoint`, its refusal of an
    untrusted file naming the model config's option for it."""
    return load_teacher_checkpoint(
        model, ckpt, trust=trust,
        how_to_trust='set trust_teacher_ckpt=True in the model config') or {}


def _warn_on_preprocessing_mismatch(student: dict, teacher: dict):
    """The teacher gets the student's normalised tensor; say so if it was trained
    with another normalisation (e.g. caffe vs pytorch mean/std, BGR vs RGB)."""
    keys = ('mean', 'std', 'bgr_to_rgb', 'rgb_to_bgr')
    s_pre, t_pre = student.get('data_preprocessor') or {}, teacher.get('data_preprocessor') or {}
    diff = {k: (s_pre.get(k), t_pre.get(k)) for k in keys if s_pre.get(k) != t_pre.get(k)}
    if diff:
        MMLogger.get_current_instance().warning(
            f'VkDDistiller: student and teacher data_preprocessors differ in '
            f'{diff} (student, teacher). The teacher sees the student\'s '
            f'preprocessed input, unlike in its own training; prefer a teacher '
            f'trained with the same normalisation.')
