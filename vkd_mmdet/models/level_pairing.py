"""Which student level meets which teacher level: paired by stride.

Two FPNs need not cover the same levels: a ConvNeXt Mask R-CNN teacher's neck
gives P2-P6 (strides 4-64), a RetinaNet student's P3-P7 (8-128). Pairing by
index would compare P2 with P3 and so on, each student map silently resized.
So levels are paired by their stride, read off the probe (input size over the
feature map's size), and only the strides both sides have are distilled.
Explicit ``student_levels``/``teacher_levels`` in a tap are kept as given.

When the two models see the batch at different sizes (the distiller's
``teacher_input_scale``/``student_input_scale``), a level's stride is measured
against the batch as loaded, so levels pair by the size of their maps: at a 2x
teacher input, the teacher's stride-16 level (stride 8 of the loaded batch) meets
the student's stride-8 level.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from ..errors import TapError


@dataclass
class LevelPairing:
    """Resolved levels of one tap: ``student[i]`` meets ``teacher[i]``."""
    student: List[int]
    teacher: List[int]
    student_strides: List[Optional[int]]
    teacher_strides: List[Optional[int]]
    how: str  # 'given', 'index', 'stride' or 'size'
    # the factors each model's input is resized by (strides above are of the loaded batch)
    input_scales: Tuple[float, float] = (1.0, 1.0)

    def own_stride(self, role: str, level: int) -> Optional[int]:
        """A level's stride on its own model's input (the loaded batch's stride times
        that model's input scale)."""
        strides, scale = ((self.student_strides, self.input_scales[0]) if role == 'student'
                          else (self.teacher_strides, self.input_scales[1]))
        return None if strides[level] is None else max(1, round(strides[level] * scale))

    def describe(self) -> str:
        if self.input_scales == (1.0, 1.0):
            pairs = ', '.join(
                f'{s}↔{t} (stride {self.student_strides[s]}/{self.teacher_strides[t]})'
                for s, t in zip(self.student, self.teacher))
            return f'student↔teacher levels {pairs}, paired {self._why()}'
        s_scale, t_scale = self.input_scales
        pairs = ', '.join(
            f"{s}↔{t} (stride {self.own_stride('student', s)}/{self.own_stride('teacher', t)} "
            f'on their inputs, {self.student_strides[s]} on the loaded batch)'
            for s, t in zip(self.student, self.teacher))
        return (f'inputs: student {s_scale:g}x, teacher {t_scale:g}x the loaded batch; '
                f'student↔teacher levels {pairs}, paired {self._why()}')

    def _why(self) -> str:
        if self.how == 'given':
            return 'as given in the tap'
        if self.how == 'index':
            return 'by index (same strides)'
        if self.how == 'size':
            return 'by map size' + self._unused()
        return 'by stride' + self._unused()

    def _unused(self) -> str:
        left_s = [self.own_stride('student', i) for i in range(len(self.student_strides))
                  if i not in self.student]
        left_t = [self.own_stride('teacher', i) for i in range(len(self.teacher_strides))
                  if i not in self.teacher]
        return (f'; unused strides: student {left_s}, teacher {left_t}'
                if left_s or left_t else '')


def stride_of(feature: torch.Tensor, input_size: Sequence[int]) -> Optional[int]:
    """Input height over the map's height for ``(N, C, H, W)`` maps; ``None`` otherwise."""
    if feature.dim() != 4 or feature.shape[-2] == 0:
        return None
    return max(1, round(input_size[0] / feature.shape[-2]))


def pair_levels(name: str, student_feats: List[torch.Tensor], teacher_feats: List[torch.Tensor],
                student_levels: Optional[List[int]], teacher_levels: Optional[List[int]],
                input_size: Sequence[int],
                input_scales: Tuple[float, float] = (1.0, 1.0)) -> LevelPairing:
    """Resolve which levels of a tap meet, or raise :class:`TapError` saying why none can.

    ``*_feats`` are all of a module's output levels (on the probe batch of
    ``input_size`` as loaded, each model's input resized by its factor in
    ``input_scales``, ``(student, teacher)``); ``*_levels`` are the tap's explicit
    choices (``None``: all).
    """
    input_scales = (float(input_scales[0]), float(input_scales[1]))
    s_strides = [stride_of(f, input_size) for f in student_feats]
    t_strides = [stride_of(f, input_size) for f in teacher_feats]
    s_idx = list(range(len(student_feats))) if student_levels is None else list(student_levels)
    t_idx = list(range(len(teacher_feats))) if teacher_levels is None else list(teacher_levels)
    by_size = input_scales[0] != input_scales[1]

    def result(s, t, how):
        if by_size and how in ('index', 'stride'):
            how = 'size'
        return LevelPairing(s, t, s_strides, t_strides, how, input_scales)

    if student_levels is not None and teacher_levels is not None:
        if len(s_idx) != len(t_idx):
            raise TapError(f"VkD tap '{name}': student_levels {s_idx} and teacher_levels "
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
        if by_size and None not in ss and None not in ts:
            raise TapError(
                f"VkD tap '{name}': at input scales {input_scales} (student, teacher) the "
                f"probe's maps have sizes that several levels share (strides on the "
                f"loaded batch: student {ss}, teacher {ts}), so they cannot be paired by "
                f"size. Give the distiller a larger probe_size, or pair levels with "
                f"student_levels=[...] and teacher_levels=[...] in the tap.")
        if len(s_idx) == len(t_idx):
            return result(s_idx, t_idx, 'index')
        raise TapError(
            f"VkD tap '{name}': the student gives {len(s_idx)} levels, the teacher "
            f"{len(t_idx)}, and their strides ({ss} and {ts}) cannot pair them. Pair "
            f"them with student_levels=[...] and teacher_levels=[...] in the tap.")
    common = [s for s in ss if s in ts]
    if not common:
        raise TapError(
            f"VkD tap '{name}': no stride is on both sides (student levels {s_idx} have "
            f"strides {ss}, teacher levels {t_idx} have {ts}), so no level can be paired. "
            f"Tap modules with matching strides, or pair levels explicitly with "
            f"student_levels=[...] and teacher_levels=[...] in the tap.")
    return result([s_idx[ss.index(s)] for s in common], [t_idx[ts.index(s)] for s in common],
                  'stride')
