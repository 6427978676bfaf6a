"""What the two distillation losses share: their options' checks, spatial alignment."""
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError


def check_choice(owner: str, name: str, value, choices: Sequence[str]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{owner}: unknown {name}='{value}'; choose one of {tuple(choices)}")


def check_loss_weight(value, where: str) -> float:
    """A loss weight must be a finite number >= 0 (0 switches the term off)."""
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f'{where}: loss_weight={value!r} is not a number') from None
    if not math.isfinite(weight) or weight < 0:
        raise ConfigError(f'{where}: loss_weight={value!r}; it must be a finite '
                          f'number >= 0 (0 switches the term off)')
    return weight


ALIGNS = ('student_to_teacher', 'teacher_to_student', 'none')


def align_maps(student: torch.Tensor, teacher: torch.Tensor, align: str, owner: str):
    """Both ``(N, C, H, W)`` maps at one spatial size: the student's resized to the
    teacher's (``'student_to_teacher'``, bilinear), or the other way round; with
    ``'none'`` sizes must match (:class:`ConfigError` naming both). Other layouts
    are returned as they are."""
    if student.dim() != 4 or student.shape[-2:] == teacher.shape[-2:]:
        return student, teacher
    if align == 'student_to_teacher':
        student = F.interpolate(student, size=teacher.shape[-2:], mode='bilinear',
                                align_corners=False)
    elif align == 'teacher_to_student':
        teacher = F.interpolate(teacher, size=student.shape[-2:], mode='bilinear',
                                align_corners=False)
    else:
        raise ConfigError(f"{owner}: student feature {tuple(student.shape)} and "
                          f"teacher feature {tuple(teacher.shape)} differ in size "
                          f"and align='none'")
    return student, teacher
