"""The tap plan: every tap resolved once against the two models, before training.

:func:`plan_taps` runs both models once on a dummy batch (the probe) and returns a
frozen :class:`TapPlan`: for each tap the user's :class:`~.taps.TapSpec` as parsed
(never changed), the levels that meet and the channel counts of each pair; the
two recorders; how far each forward pass must run. The distiller builds its losses
from the plan and reads it at every step; ``tools/inspect_distill.py`` prints it.

Everything that can be refused before training is refused here, naming the tap: a
module that does not exist or did not run, an output that is not a feature map,
levels that cannot be paired, an RoI-head tap, anchors that differ under prediction
mimicking, options that do not fit the features' shapes.

Example::

    plan = plan_taps(student, teacher, parse_taps(['neck']), (1.0, 1.0), (256, 256))
    plan.taps[0].pairing.student    # [0, 1, 2, 3, 4]: all five FPN levels
    plan.taps[0].channels           # ((64, 128), ...): (C_s, C_t) per pair
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

from mmdet.models.detectors import TwoStageDetector
from mmdet.structures import DetDataSample

from ..errors import TapError
from .feature_norm import default_channel_dim
from .feature_recorder import FeatureRecorder
from .input_scaling import rescale_inputs
from .level_pairing import LevelPairing, pair_levels
from .prediction_mimic_loss import PREDICTION_LOSSES
from .prediction_taps import check_prediction_anchors
from .taps import TapSpec, feature_levels, select_levels

# Modules reached by `extract_feat`; taps elsewhere need the head's `_forward`.
FEATURE_ROOTS = ('backbone', 'neck')

Features = Dict[str, object]  # {module path: what it recorded in one forward pass}


@dataclass(frozen=True)
class PlannedTap:
    """One tap after set-up: the user's spec, the levels that meet, their channels."""
    spec: TapSpec
    pairing: LevelPairing
    channels: Tuple[Tuple[int, int], ...]  # (C_s, C_t) of each paired level

    @property
    def key(self) -> str:
        return self.spec.key

    def paired(self, s_out: Features, t_out: Features):
        """The tap's paired ``(student, teacher)`` lists of maps of one forward pass,
        e.g. ``[(N, 64, H_l, W_l), ...]`` and ``[(N, 128, H_l, W_l), ...]``."""
        spec = self.spec
        s_feats = feature_levels(s_out[spec.student], spec.student, 'student')
        t_feats = feature_levels(t_out[spec.teacher], spec.teacher, 'teacher')
        return (select_levels(s_feats, self.pairing.student, spec.student, 'student'),
                select_levels(t_feats, self.pairing.teacher, spec.teacher, 'teacher'))


@dataclass(frozen=True)
class ModelSide:
    """What one model's forward pass must record, and how far it must run."""
    role: str  # 'student' or 'teacher'
    recorder: FeatureRecorder
    input_scale: float
    needs_head: bool  # a tap lies in the head: run `_forward`, not only `extract_feat`

    def record(self, model: nn.Module, inputs: torch.Tensor, samples,
               stop_early: bool = True) -> Features:
        """Forward ``model`` until every tapped module has run as often as in the
        probe (``inputs`` already resized by :attr:`input_scale`)."""
        result = None
        with self.recorder.record(stop_early=stop_early) as outputs:
            if self.needs_head:
                result = model._forward(inputs, samples)
            else:
                model.extract_feat(inputs)
        missing = [p for p in self.recorder.paths if p not in outputs]
        if missing:
            raise TapError(not_recorded_message(model, self.role, missing, result))
        return outputs


@dataclass(frozen=True)
class TapPlan:
    taps: Tuple[PlannedTap, ...]
    student: ModelSide
    teacher: ModelSide
    needs_boxes: bool  # some tap weights positions by the batch's ground-truth boxes
    probe_size: Tuple[int, int]  # of the dummy batch as loaded

    @property
    def input_scales(self) -> Tuple[float, float]:
        return self.student.input_scale, self.teacher.input_scale

    def probe(self, student: nn.Module, teacher: nn.Module, size=None) -> Tuple[Features, Features]:
        """Both models' tapped outputs for a dummy batch of ``size`` as loaded
        (default: the probe's), each resized by its model's input scale."""
        return _probe(student, teacher, self.student, self.teacher, size or self.probe_size)


def plan_taps(student: nn.Module, teacher: nn.Module, specs: Sequence[TapSpec],
              input_scales: Tuple[float, float], probe_size: Sequence[int]) -> TapPlan:
    """Resolve ``specs`` against both models (see the module docstring).

    ``probe_size`` is the smallest ``(H, W)`` each model should see; the dummy batch
    as loaded is enlarged where an input scale shrinks it. Raises :class:`TapError`.
    """
    for spec in specs:
        _refuse_roi_head_tap(spec, 'student', student, spec.student)
        _refuse_roi_head_tap(spec, 'teacher', teacher, spec.teacher)
    sides = [ModelSide(role, FeatureRecorder(model, [getattr(t, role) for t in specs], role),
                       scale, any(getattr(t, role).split('.')[0] not in FEATURE_ROOTS
                                  for t in specs))
             for role, model, scale in (('student', student, input_scales[0]),
                                        ('teacher', teacher, input_scales[1]))]
    # (large enough that the model whose input is shrunk still sees probe_size, where
    # its deepest levels keep distinct sizes)
    smallest = min(*input_scales, 1.0)
    size = tuple(math.ceil(s / smallest) for s in probe_size)
    s_out, t_out = _probe(student, teacher, *sides, size)
    taps = tuple(_plan_tap(spec, s_out, t_out, size, student, teacher, input_scales)
                 for spec in specs)
    needs_boxes = any(t.loss_cfg.get('foreground_weight') is not None for t in specs)
    return TapPlan(taps, sides[0], sides[1], needs_boxes, size)


def _plan_tap(spec: TapSpec, s_out: Features, t_out: Features, size, student, teacher,
              input_scales) -> PlannedTap:
    s_all = feature_levels(s_out[spec.student], spec.student, 'student')
    t_all = feature_levels(t_out[spec.teacher], spec.teacher, 'teacher')
    select_levels(s_all, spec.student_levels, spec.student, 'student')  # checks indices
    select_levels(t_all, spec.teacher_levels, spec.teacher, 'teacher')
    pairing = pair_levels(spec.name, s_all, t_all, spec.student_levels, spec.teacher_levels,
                          size, input_scales=input_scales)
    if spec.loss_cfg.get('loss') in PREDICTION_LOSSES:
        check_prediction_anchors(spec.name, student, teacher, spec.student, spec.teacher,
                                 pairing.student, pairing.teacher, input_scales)
    MMLogger.get_current_instance().info(
        f"VkD tap '{spec.name}' ({spec.student} -> {spec.teacher}): {pairing.describe()}")
    s_feats = [s_all[i] for i in pairing.student]
    t_feats = [t_all[i] for i in pairing.teacher]
    return PlannedTap(spec, pairing, tap_channels(spec, s_feats, t_feats))


def tap_channels(spec: TapSpec, s_feats, t_feats) -> Tuple[Tuple[int, int], ...]:
    """``(C_s, C_t)`` per paired level, or :class:`TapError` where the tap's options
    do not fit the features' shapes."""
    cdim = spec.loss_cfg.get('channel_dim')
    for role, feats in (('student', s_feats), ('teacher', t_feats)):
        shapes = [tuple(f.shape) for f in feats]
        if spec.loss_cfg.get('foreground_weight') is not None and any(
                f.dim() != 4 for f in feats):
            raise TapError(
                f"VkD tap '{spec.name}': foreground_weight weights the positions of "
                f"(N, C, H, W) maps by the ground-truth boxes, and the {role}'s "
                f"features have shapes {shapes}. Use it on "
                f"feature-map taps (backbone, neck, dense head towers) only.")
        if cdim is None and any(f.dim() == 4 and f.shape[1] == 1 for f in feats):
            # The probe's batch is 1: a 4-D map with 1 channel in dim 1 is
            # most likely stacked tokens such as (layers, N, queries, C).
            raise TapError(
                f"VkD tap '{spec.name}': the {role}'s features have shapes "
                f"{shapes} on the probe's batch of 1, so "
                f"dim 1 is not a channel dim; they look like stacked tokens, e.g. a "
                f"DETR decoder's (layers, N, queries, C). Say where the channels are "
                f"with channel_dim=-1 in the tap (or channel_dim=1 if that really is "
                f"a 1-channel map).")
    return tuple((s.shape[default_channel_dim(s) if cdim is None else cdim],
                  t.shape[default_channel_dim(t) if cdim is None else cdim])
                 for s, t in zip(s_feats, t_feats))


def _probe(student, teacher, s_side: ModelSide, t_side: ModelSide, size):
    dummy = torch.zeros(1, 3, *size, device=next(student.parameters()).device)
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            # Full passes here: they count each tapped module's calls (a head tower
            # runs once per level), which stopped-early passes wait for.
            outs = []
            for model, side in ((student, s_side), (teacher, t_side)):
                inputs = rescale_inputs(dummy, side.input_scale)
                outs.append(side.record(model, inputs, [_dummy_sample(inputs.shape[-2:])],
                                        stop_early=False))
    finally:
        student.train(was_training)
    return tuple(outs)


def _refuse_roi_head_tap(spec: TapSpec, role: str, model: nn.Module, path: str):
    """A two-stage detector's RoI head runs on each model's own proposals: its
    features of the student and of the teacher describe different boxes."""
    if isinstance(model, TwoStageDetector) and path.split('.')[0] == 'roi_head':
        raise TapError(
            f"VkD tap '{spec.name}': the {role}'s '{path}' is in the RoI head of a "
            f"two-stage detector, which runs on each model's own proposals, so the "
            f"student's and the teacher's RoI features describe different boxes and "
            f"cannot be compared. Tap features of the whole image: 'neck', or the RPN "
            f"head's tower ('rpn_head.rpn_conv').")


def not_recorded_message(model: nn.Module, role: str, missing: List[str], result) -> str:
    """Why tapped modules recorded nothing. A detector's whole head is the usual case:
    mmdet calls ``bbox_head.forward(x)`` directly, which no forward hook sees, and its
    output (per-level lists of predictions) is not a feature map anyway."""
    heads = [p for p in missing if '.' not in p and p.endswith('head')]
    if not heads:
        return (f'VkD tap: the {role}\'s modules {missing} did not run in the forward pass, '
                f'so they cannot be distilled')
    path = heads[0]
    head = getattr(model, path)
    children = list(head.named_children())
    towers = [f'{path}.{n}' for n, c in children if isinstance(c, nn.ModuleList)]
    predictors = [f'{path}.{n}' for n, c in children if isinstance(c, nn.Conv2d)]
    others = [f'{path}.{n}' for n, c in children if any(True for _ in c.parameters())
              and f'{path}.{n}' not in towers + predictors]
    returned = (f'it returns {_describe_output(result)} (per-level predictions, not one '
                f'feature map)' if result is not None else 'its output is per-level predictions')
    return (f"VkD tap: the {role}'s '{path}' is the whole dense head. It runs, but mmdet's "
            f"{type(model).__name__} calls {path}.forward(...) directly, which no forward "
            f"hook sees, and {returned}. Tap its parts instead, each recorded once per "
            f"level: the towers (features) {towers}, the prediction convs {predictors}"
            + (f', other parts {others}' if others else '') + '.')


def _describe_output(obj, depth: int = 0) -> str:
    """``a tuple of 2 lists of 5 tensors (1, 9, 32, 32) ...``, for messages."""
    if isinstance(obj, torch.Tensor):
        return f'a tensor {tuple(obj.shape)}'
    if isinstance(obj, (tuple, list)) and obj and depth < 3:
        inner = _describe_output(obj[0], depth + 1)
        return f'a {type(obj).__name__} of {len(obj)} ({inner}, ...)'
    return f'a {type(obj).__name__}'


def _dummy_sample(size) -> DetDataSample:
    h, w = size
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         pad_shape=(h, w), batch_input_shape=(h, w),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
    return sample
