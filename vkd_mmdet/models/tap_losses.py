"""One tap's distillation term: a loss per paired level, combined over the levels."""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn

from mmdet.registry import MODELS

from .foreground_weights import GroundTruthBoxes
from .prediction_mimic_loss import PREDICTION_LOSSES, PredictionMimicLoss
from .tap_plan import PlannedTap
from .vkd_loss import VkDLoss


class TapLosses(nn.ModuleList):
    """The losses of one tap's paired levels (``[i]``: level pair ``i``), combined
    by the tap's ``level_reduction``: ``'mean'`` or ``'sum'``.

    A ``ModuleList``, so that checkpoints keep ``distill_losses.<tap>.<i>.<...>``.
    """

    def __init__(self, losses: Sequence[nn.Module], level_reduction: str):
        super().__init__(losses)
        self.level_reduction = level_reduction

    def forward(self, student: List[torch.Tensor], teacher: List[torch.Tensor],
                weights: Sequence[Optional[torch.Tensor]],
                boxes: Optional[GroundTruthBoxes] = None) -> torch.Tensor:
        """``student[i]``, ``teacher[i]``: level pair ``i``'s features (e.g.
        ``(N, C_s, H_i, W_i)`` and ``(N, C_t, H_i, W_i)``); ``weights[i]``: its
        projection's matrix computed ahead, or ``None``. Returns a scalar."""
        total = sum(loss(s, t, weight=w, boxes=boxes)
                    for loss, s, t, w in zip(self, student, teacher, weights))
        return total / len(self) if self.level_reduction == 'mean' else total

    def zero(self, device: torch.device) -> torch.Tensor:
        """A zero that reaches every trainable parameter, on ``device``: with
        distillation off, DDP without ``find_unused_parameters`` still sees every
        gradient (a tap without parameters gets a plain zero on the batch's device)."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return torch.zeros((), device=device)
        return sum(p.sum() for p in params) * 0.0


def build_tap_losses(tap: PlannedTap) -> TapLosses:
    """A :class:`TapLosses` for ``tap``: per paired level a
    :class:`~.prediction_mimic_loss.PredictionMimicLoss` where the tap's ``loss`` is a
    prediction loss (``'sigmoid_kd'``), else a :class:`~.vkd_loss.VkDLoss`, built by
    ``MODELS`` from the tap's loss options and the level's channels."""
    cfg = tap.spec.loss_cfg
    loss_type = PredictionMimicLoss if cfg.get('loss') in PREDICTION_LOSSES else VkDLoss
    return TapLosses([MODELS.build(dict(cfg, type=loss_type, student_channels=c_s,
                                        teacher_channels=c_t))
                      for c_s, c_t in tap.channels], tap.spec.level_reduction)
