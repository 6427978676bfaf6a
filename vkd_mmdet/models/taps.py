"""Which features to distil: parsing of the distiller's ``taps`` option."""
import inspect
import re
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Sequence, Union

import torch

from ..errors import ConfigError, TapError
from .feature_recorder import CallSequence
from .loss_options import check_loss_weight
from .prediction_mimic_loss import PredictionMimicLoss
from .vkd_loss import VkDLoss

# The detection setting of the official code: every level, weight 4.0,
# per-channel standardisation, orthogonal projection, smooth-L1.
DEFAULT_TAP_LOSS = dict(loss_weight=4.0, norm='standardize', loss='smooth_l1',
                        projection='orthogonal')
# A tap's loss options: those of feature imitation and of prediction mimicking.
LOSS_KEYS = tuple(dict.fromkeys(
    p for cls in (VkDLoss, PredictionMimicLoss)
    for p, param in inspect.signature(cls.__init__).parameters.items()
    if p not in ('self', 'student_channels', 'teacher_channels')
    and param.kind is not param.VAR_KEYWORD))
SPEC_KEYS = ('name', 'module', 'student', 'teacher', 'levels', 'student_levels',
             'teacher_levels', 'level_reduction')
# How a tap's per-level losses combine: 'mean' (default: the tap's weight does
# not grow with the number of levels) or 'sum' (the official code); why the mean
# is the default: docs/options.md.
LEVEL_REDUCTIONS = ('sum', 'mean')
DEFAULT_LEVEL_REDUCTION = 'mean'
_TAP_RE = re.compile(r'^([A-Za-z_][\w.]*)(?:\[(\d+(?:\s*,\s*\d+)*)\])?$')


@dataclass(frozen=True)
class TapSpec:
    """One distillation tap as the user wrote it: a student module, a teacher module,
    the levels to pair. Never changed after parsing (the levels that meet are the
    tap plan's, :mod:`.tap_plan`).

    ``student_levels``/``teacher_levels`` index the modules' tuple outputs
    (``None``: every level); ``loss_cfg`` holds the loss's options.
    """
    name: str
    student: str
    teacher: str
    student_levels: Optional[List[int]] = None
    teacher_levels: Optional[List[int]] = None
    loss_cfg: dict = field(default_factory=dict)
    level_reduction: str = DEFAULT_LEVEL_REDUCTION

    @property
    def key(self) -> str:
        """Name usable as a module key and in ``loss_vkd_<key>``."""
        return re.sub(r'\W', '_', self.name)


def _split(path: str, where: str):
    """``'neck[0,2]'`` -> ``('neck', [0, 2])``; ``'neck'`` -> ``('neck', None)``."""
    match = _TAP_RE.match(str(path).strip())
    if not match:
        raise ConfigError(f"VkD tap {where}: cannot parse '{path}'; write a dotted "
                          f"module path with an optional level index, e.g. 'neck', "
                          f"'backbone[3]' or 'backbone.layer4'")
    levels = [int(i) for i in match.group(2).split(',')] if match.group(2) else None
    return match.group(1), levels


def parse_taps(taps: Union[str, dict, Sequence], defaults: Optional[dict] = None) -> List[TapSpec]:
    """Turn the user's ``taps`` (strings and/or dicts) into :class:`TapSpec`s."""
    if isinstance(taps, (str, dict)):
        taps = [taps]
    if taps is None or len(taps) == 0:
        raise ConfigError("VkDDistiller: taps is empty, so nothing would be distilled. "
                          "Give at least one tap, e.g. taps=['neck'] (every FPN level); "
                          "to train without distillation, use the student's own config.")
    if defaults is not None and not isinstance(defaults, Mapping):
        raise ConfigError(f"VkDDistiller: tap_defaults={defaults!r} is a "
                          f"{type(defaults).__name__}; give a dict of tap options, e.g. "
                          f"tap_defaults=dict(norm='standardize', loss_weight=2.0)")
    base = dict(DEFAULT_TAP_LOSS, **(defaults or {}))
    base_reduction = _level_reduction(base.pop('level_reduction', DEFAULT_LEVEL_REDUCTION),
                                      'tap_defaults')
    _check_loss_keys(base, 'tap_defaults')
    specs = []
    for i, tap in enumerate(taps):
        where = f'#{i} ({tap!r})'
        if isinstance(tap, str):
            tap = dict(module=tap)
        if not isinstance(tap, dict):
            raise ConfigError(f'VkD tap {where}: expected a string or a dict, '
                              f'got {type(tap).__name__}')
        tap = dict(tap)
        module = tap.pop('module', None)
        student_path = tap.pop('student', module)
        teacher_path = tap.pop('teacher', module)
        if student_path is None or teacher_path is None:
            raise ConfigError(f"VkD tap {where}: give 'module' (same path in both "
                              f"models) or both 'student' and 'teacher'")
        student, s_levels = _split(student_path, where)
        teacher, t_levels = _split(teacher_path, where)
        levels = tap.pop('levels', None)
        s_levels = tap.pop('student_levels', s_levels if levels is None else levels)
        t_levels = tap.pop('teacher_levels', t_levels if levels is None else levels)
        name = tap.pop('name', student if student == teacher else f'{student}-{teacher}')
        reduction = _level_reduction(tap.pop('level_reduction', base_reduction), f'tap {where}')
        _check_loss_keys(tap, f'tap {where}')
        specs.append(TapSpec(name=name, student=student, teacher=teacher,
                             student_levels=s_levels, teacher_levels=t_levels,
                             loss_cfg=dict(base, **tap), level_reduction=reduction))
    keys = [s.key for s in specs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ConfigError(f'VkD taps: duplicate tap names {dupes}; give each a distinct `name`')
    return specs


def _level_reduction(value: str, where: str) -> str:
    if value not in LEVEL_REDUCTIONS:
        raise ConfigError(f"VkD {where}: level_reduction='{value}'; choose one of "
                          f"{LEVEL_REDUCTIONS}")
    return value


def _check_loss_keys(cfg: dict, where: str):
    unknown = sorted(set(cfg) - set(LOSS_KEYS))
    if unknown:
        raise ConfigError(f'VkD {where}: unknown option(s) {unknown}. Tap options: '
                          f'{list(SPEC_KEYS)}; loss options: {list(LOSS_KEYS)}')
    if 'loss_weight' in cfg:
        check_loss_weight(cfg['loss_weight'], f'VkD {where}')


def feature_levels(output, path: str, role: str) -> List[torch.Tensor]:
    """A module's output as a list of feature maps (one per level), or a clear error.

    A module that ran once gives its tensor or tuple of tensors; one that ran once
    per level (a head tower, see :class:`CallSequence`) gives one tensor per call.
    """
    if isinstance(output, CallSequence):
        bad = [i for i, o in enumerate(output) if not isinstance(o, torch.Tensor)]
        if bad:
            raise TapError(f"VkD tap: the {role}'s module '{path}' runs {len(output)} "
                           f"times per forward pass, and call {bad[0]} returns "
                           f"{_describe(output[bad[0]])}, not a feature map. Tap a module "
                           f"that returns one tensor per call, e.g. a head tower "
                           f"('bbox_head.cls_convs') or one of its layers.")
        return list(output)
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)) and output and all(
            isinstance(o, torch.Tensor) for o in output):
        return list(output)
    raise TapError(f"VkD tap: the {role}'s module '{path}' returns "
                   f"{_describe(output)}, not a feature map or a tuple of feature "
                   f"maps. Tap a module that returns tensors, e.g. 'backbone', "
                   f"'neck', or a layer inside them.")


def select_levels(feats: List[torch.Tensor], levels: Optional[List[int]], path: str,
                  role: str) -> List[torch.Tensor]:
    if levels is None:
        return feats
    bad = [i for i in levels if i >= len(feats)]
    if bad:
        raise TapError(f"VkD tap: the {role}'s '{path}' has {len(feats)} output "
                       f"level(s) (0..{len(feats) - 1}); levels {bad} do not exist")
    return [feats[i] for i in levels]


def _describe(obj) -> str:
    if isinstance(obj, (tuple, list)):
        inner = ', '.join(type(o).__name__ for o in obj[:4])
        return f'a {type(obj).__name__} of ({inner}{", ..." if len(obj) > 4 else ""})'
    return f'a {type(obj).__name__}'
