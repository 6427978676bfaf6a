"""Checks for taps on a dense head's predictions (prediction mimicking).

A classification logit of RetinaNet's ``bbox_head.retina_cls`` at one position
and channel belongs to one anchor and one class. Comparing the student's logits
with the teacher's channel for channel is meaningful only where the two heads put
the same anchors, in image coordinates, on the paired levels and list the same
classes: the channel counts check the product (anchors per position x classes),
this module checks the anchors themselves. With input scales (a teacher at 2x),
a teacher level's anchors are measured on the batch as loaded: at 2x input its
stride-16 level's 64 px anchors are 32 px of the loaded batch, the student's
stride-8 anchors.
"""
from typing import List, Optional

import torch
import torch.nn as nn

from ..errors import TapError


def head_of(model: nn.Module, path: str) -> Optional[nn.Module]:
    """The dense head a tap path lies in (``'bbox_head.retina_cls'`` -> ``bbox_head``)."""
    module = getattr(model, path.split('.')[0], None)
    return module if getattr(module, 'prior_generator', None) is not None else None


def level_anchors(head: nn.Module, scale: float) -> Optional[List[torch.Tensor]]:
    """Per level, the base anchors ``(A, 4)`` of an anchor generator, in pixels of the
    loaded batch (divided by the model's input scale); ``None`` for anchor-free heads."""
    base = getattr(head.prior_generator, 'base_anchors', None)
    if base is None:
        return None
    return [b.float() / scale for b in base]


def check_prediction_anchors(tap_name: str, student: nn.Module, teacher: nn.Module,
                             student_path: str, teacher_path: str, student_levels: List[int],
                             teacher_levels: List[int], scales=(1.0, 1.0)) -> None:
    """Raise :class:`TapError` naming the levels where the paired anchors differ."""
    s_head, t_head = head_of(student, student_path), head_of(teacher, teacher_path)
    if s_head is None or t_head is None:
        return  # not in an anchor-based head: the channel check is all there is
    s_anchors, t_anchors = level_anchors(s_head, scales[0]), level_anchors(t_head, scales[1])
    if s_anchors is None or t_anchors is None:
        return
    for s, t in zip(student_levels, teacher_levels):
        a, b = s_anchors[s], t_anchors[t]
        if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-3, atol=0.5):
            raise TapError(
                f"VkD tap '{tap_name}': prediction mimicking compares the logits of the same "
                f"anchors, and the student's level {s} has other anchors than the teacher's "
                f"level {t} it is paired with (widths x heights in pixels of the loaded "
                f"batch: student {_sizes(a)}, teacher {_sizes(b)}). Give both heads the same "
                f"anchor_generator (octave_base_scale, scales_per_octave, ratios) on "
                f"matching strides, or pair other levels (student_levels / teacher_levels).")


def _sizes(anchors: torch.Tensor) -> List[str]:
    wh = anchors[:, 2:] - anchors[:, :2]
    return [f'{w:.0f}x{h:.0f}' for w, h in wh.tolist()]
