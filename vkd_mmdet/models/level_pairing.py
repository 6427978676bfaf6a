"""Which student level meets which teacher level: paired by stride.

Two FPNs need not cover the same levels: a ConvNeXt Mask R-CNN teacher's neck
gives P2-P6 (strides 4-64), a RetinaNet student's P3-P7 (8-128). Pairing by
index would compare P2 with P3 and so on, each student map silently resized.
So levels are paired by their stride, read off the probe (input size over the
feature map's size), and only the strides both sides have are distilled.
Explicit ``student_levels``/``teacher_levels`` in a tap are kept as given.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch


@dataclass
class LevelPairing:
    """Resolved levels of one tap: ``student[i]`` meets ``teacher[i]``."""
    student: List[int]
    teacher: List[int]
    student_strides: List[Optional[int]]
    teacher_strides: List[Optional[int]]
    how: str  # 'given', 'index' or 'stride'

    def describe(self) -> str:
        pairs = ', '.join(f'{s}↔{t} (stride {self.student_strides[s]}/{self.teacher_strides[t]})'
                          for s, t in zip(self.student, self.teacher))
        return f'student↔teacher levels {pairs}, paired {self._why()}'

    def _why(self) -> str:
        if self.how == 'given':
            return 'as given in the tap'
        if self.how == 'index':
            return 'by index (same strides)'
        left_s = [self.student_strides[i] for i in range(len(self.student_strides))
                  if i not in self.student]
        left_t = [self.teacher_strides[i] for i in range(len(self.teacher_strides))
                  if i not in self.teacher]
        unused = f'; unused strides: student {left_s}, teacher {left_t}' \
            if left_s or left_t else ''
        return f'by stride{unused}'


def stride_of(feature: torch.Tensor, input_size: Sequence[int]) -> Optional[int]:
    """Input height over the map's height for ``(N, C, H, W)`` maps; ``None`` otherwise."""
    if feature.dim() != 4 or feature.shape[-2] == 0:
        return None
    return max(1, round(input_size[0] / feature.shape[-2]))


def pair_levels(name: str, student_feats: List[torch.Tensor], teacher_feats: List[torch.Tensor],
                student_levels: Optional[List[int]], teacher_levels: Optional[List[int]],
                input_size: Sequence[int]) -> LevelPairing:
    """Resolve which levels of a tap meet, or raise ``ValueError`` saying why none can.

    ``*_feats`` are all of a module's output levels (on the probe image of
    ``input_size``); ``*_levels`` are the tap's explicit choices (``None``: all).
    """
    s_strides = [stride_of(f, input_size) for f in student_feats]
    t_strides = [stride_of(f, input_size) for f in teacher_feats]
    s_idx = list(range(len(student_feats))) if student_levels is None else list(student_levels)
    t_idx = list(range(len(teacher_feats))) if teacher_levels is None else list(teacher_levels)

    def result(s, t, how):
        return LevelPairing(s, t, s_strides, t_strides, how)

    if student_levels is not None and teacher_levels is not None:
        if len(s_idx) != len(t_idx):
            raise ValueError(f"VkD tap '{name}': student_levels {s_idx} and teacher_levels "
                             f"{t_idx} differ in length; give one teacher level per "
                             f"student level")
        return result(s_idx, t_idx, 'given')
    ss, ts = [s_strides[i] for i in s_idx], [t_strides[i] for i in t_idx]
    if ss == ts:
        return result(s_idx, t_idx, 'index')
    if len(s_idx) == len(t_idx) == 1:
        # One map each (e.g. two named modules): the user paired them.
        return result(s_idx, t_idx, 'given')
    if None in ss or None in ts or len(set(ss)) < len(ss) or len(set(ts)) < len(ts):
        if len(s_idx) == len(t_idx):
            return result(s_idx, t_idx, 'index')
        raise ValueError(
            f"VkD tap '{name}': the student gives {len(s_idx)} levels, the teacher "
            f"{len(t_idx)}, and their strides ({ss} and {ts}) cannot pair them. Pair "
            f"them with student_levels=[...] and teacher_levels=[...] in the tap.")
    common = [s for s in ss if s in ts]
    if not common:
        raise ValueError(
            f"VkD tap '{name}': no stride is on both sides (student levels {s_idx} have "
            f"strides {ss}, teacher levels {t_idx} have {ts}), so no level can be paired. "
            f"Tap modules with matching strides, or pair levels explicitly with "
            f"student_levels=[...] and teacher_levels=[...] in the tap.")
    return result([s_idx[ss.index(s)] for s in common], [t_idx[ts.index(s)] for s in common],
                  'stride')
