"""VkDDistiller: a frozen teacher detector distils features into a student detector.

# Note [plan and step]: the constructor resolves every tap once against the two
# models (:mod:`.tap_plan`) and builds one :class:`~.tap_losses.TapLosses` per tap;
# `loss()` is the training step over that plan. See docs/design.md.
"""
import contextlib
from typing import Dict, Union

import torch
import torch.nn as nn
from torch.profiler import record_function
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope

from mmdet.models.detectors import BaseDetector
from mmdet.registry import MODELS

from ..errors import ConfigError
from .foreground_weights import GroundTruthBoxes
from .input_scaling import check_input_scale, rescale_batch
from .level_pairing import LevelPairing
from .maps_ahead import MapsAhead
from .nonfinite_guard import NonFiniteGuard
from .tap_losses import build_tap_losses
from .tap_plan import plan_taps
from .taps import parse_taps
from .teacher_model import build_frozen_teacher
from .unlabelled_split import detection_loss


@MODELS.register_module()
class VkDDistiller(BaseDetector):
    """Distil a frozen teacher detector's features into a student detector (VkD).

    Training returns the student's own losses plus one ``loss_vkd_<tap>`` per tap
    (averaged over the tap's levels, or summed with ``level_reduction='sum'``).
    ``predict`` and ``_forward`` run the student alone, so validation measures
    the student and inference costs what it costs.

    The teacher is kept outside the module tree (``self.teacher`` is a plain
    attribute): it is not in ``parameters()`` (never optimised, never synced by
    DDP), not in ``state_dict()`` (never in training checkpoints), not touched by
    ``train()`` (always in eval mode, BatchNorm frozen) nor by ``init_weights()``.
    ``.to()``/``.cuda()``/``.half()`` still move it, through :meth:`_apply`.

    Args:
        student: detector config dict (usually ``{{_base_.model}}``).
        teacher: detector config dict, config file path or ``'mmdet::...'`` name.
        teacher_ckpt: local path or URL of the teacher's weights, loaded now.
            ``None`` keeps the teacher randomly initialised (tests only).
        taps: which features to distil, e.g. ``['neck']`` (all FPN levels, the
            default), ``['backbone', 'neck']``, ``'backbone[3]'``, a dense head's
            tower ``'bbox_head.cls_convs'`` (one level per call: see
            :mod:`.feature_recorder`) or dicts with
            ``name``, ``module`` or ``student``/``teacher``, ``levels`` or
            ``student_levels``/``teacher_levels``, ``level_reduction`` (``'mean'``,
            the default, or ``'sum'`` over the tap's levels) and :class:`VkDLoss` options.
        tap_defaults: :class:`VkDLoss` options and ``level_reduction`` applied
            to every tap.
        trust_teacher_ckpt: unpickle the teacher checkpoint fully (arbitrary
            code execution!). Only for files you made yourself.
        probe_size: ``(H, W)`` of the dummy image used once to read channel
            counts and level counts off both models.
        max_nonfinite_steps: under fp16 loss scaling a step whose student or
            distillation loss is NaN/Inf is skipped (the ``GradScaler`` skips it
            and lowers its scale, as in stock MMDetection; the BatchNorm buffers
            its forward pass changed are restored), counted in
            ``vkd_nonfinite_steps`` from the next step on; training stops after
            this many such steps in a row. Without loss scaling it stops at the
            first one, before the weights change. See
            :mod:`vkd_mmdet.models.nonfinite_guard`.
        teacher_input_scale: the teacher sees the training batch resized by this
            factor (e.g. ``2.0``: a teacher trained at 1280 px for a batch loaded at
            640 px); the student's tensor and boxes are unchanged.
        student_input_scale: the student sees the training batch resized by this
            factor, antialiased when shrinking, its boxes and image shapes scaled to
            match (e.g. ``0.5``: the batch is loaded at the teacher's 640 px and the
            student trains at 320 px). Validation and ``predict`` run the student on
            the val pipeline's images as they are: give the val pipeline the
            student's resolution. With either scale, levels pair by the size of their
            maps (a stride-16 teacher level at 2x meets the student's stride-8 level):
            see :mod:`vkd_mmdet.models.input_scaling`.
        check_teacher: before the first epoch, evaluate the teacher on the val set
            with the config's ``val_evaluator`` and warn when it is near zero or not
            clearly above ``student_map`` (``TeacherCheckHook``, which
            ``tools/train.py`` adds). ``True`` (default), ``False``, or a dict of the
            hook's options, e.g. ``dict(student_map=0.25)``.

    Raises:
        ConfigError: an option is wrong as given; TapError: a tap cannot be resolved
        against the two models (see :mod:`.tap_plan`); CheckpointError: the teacher's
        weights cannot be loaded (see :mod:`vkd_mmdet.checkpoint`).

    Example::

        model = dict(type='VkDDistiller', student={{_base_.model}},
                     teacher='mmdet::retinanet/retinanet_r101_fpn_1x_coco.py',
                     teacher_ckpt='teacher.pth', taps=['neck'])
    """

    def __init__(self, student: dict, teacher: Union[str, dict], teacher_ckpt=None,
                 taps=('neck', ), tap_defaults=None, trust_teacher_ckpt: bool = False,
                 probe_size=(256, 256), max_nonfinite_steps: int = 10,
                 teacher_input_scale: float = 1.0, student_input_scale: float = 1.0,
                 check_teacher: Union[bool, dict] = True, data_preprocessor=None,
                 init_cfg=None):
        with _mmdet_scope():
            super().__init__(data_preprocessor=None, init_cfg=init_cfg)
            specs = parse_taps(taps, tap_defaults)
            scales = (check_input_scale(student_input_scale, 'VkDDistiller: student_input_scale'),
                      check_input_scale(teacher_input_scale, 'VkDDistiller: teacher_input_scale'))
            if not isinstance(check_teacher, (bool, dict, ConfigDict)):
                raise ConfigError(f'VkDDistiller: check_teacher={check_teacher!r}; give True, '
                                  f'False or a dict of TeacherCheckHook options')
            self.check_teacher = check_teacher
            self.nonfinite = NonFiniteGuard(max_nonfinite_steps)
            self.student = MODELS.build(ConfigDict(student))
            if data_preprocessor is not None:
                self.student.data_preprocessor = MODELS.build(data_preprocessor)
            # One preprocessing for both models: the teacher sees the student's tensor.
            self.data_preprocessor = self.student.data_preprocessor
            teacher_model, self.teacher_meta = build_frozen_teacher(
                teacher, student, teacher_ckpt, trust_teacher_ckpt)
        # Outside the module tree: see the class docstring.
        object.__setattr__(self, 'teacher', teacher_model)
        self.teacher_ckpt = teacher_ckpt
        self.plan = plan_taps(self.student, teacher_model, specs, scales, probe_size)
        self.distill_losses = nn.ModuleDict({tap.key: build_tap_losses(tap)
                                             for tap in self.plan.taps})
        self.distill_weight = 1.0  # DistillWeightScheduleHook sets it; 0 switches off

    # --------------------------------------------------------------- training
    def loss(self, batch_inputs: torch.Tensor, batch_data_samples) -> dict:
        """The student's losses on the labelled images, one ``loss_vkd_<tap>`` per tap
        on all of them, and ``vkd_nonfinite_steps``. ``batch_inputs``: ``(N, 3, H, W)``
        as loaded; the ``record_function`` ranges name each part in a torch profile."""
        weight, device = float(self.distill_weight), batch_inputs.device
        self.nonfinite.before_forward(self, device.type)
        if weight != 0.0:
            # The orthogonal maps start first (on CUDA beside the forward passes); the
            # teacher runs before the student, so its activations are freed first.
            maps = MapsAhead(self.distill_losses, device)
            self.teacher.eval()
            with torch.no_grad(), record_function('vkd:teacher'):
                t_out = self.teacher_outputs(batch_inputs, batch_data_samples)
        s_inputs, s_samples = rescale_batch(batch_inputs, batch_data_samples,
                                            self.plan.student.input_scale)
        with self.plan.student.recorder.record() as s_out, record_function('vkd:student'):
            losses = detection_loss(self.student, s_inputs, s_samples)
        if weight == 0.0:
            distill = {f'loss_vkd_{k}': tap_losses.zero(device)
                       for k, tap_losses in self.distill_losses.items()}
            return self.nonfinite.merged(losses, distill, self, device.type)
        # (the student's boxes: paired maps have one size, so either view places them)
        boxes = (GroundTruthBoxes.from_samples(s_samples, s_inputs.shape[-2:])
                 if self.plan.needs_boxes else None)
        distill, teacher_feats = {}, {}
        for tap in self.plan.taps:
            s_feats, t_feats = tap.paired(s_out, t_out)
            teacher_feats[f"tap '{tap.spec.name}'"] = t_feats  # (named if non-finite)
            with record_function(f'vkd:distill_{tap.key}'):
                term = self.distill_losses[tap.key](s_feats, t_feats, maps[tap.key], boxes)
            distill[f'loss_vkd_{tap.key}'] = term * weight
        return self.nonfinite.merged(losses, distill, self, device.type, teacher_feats)

    def teacher_outputs(self, batch_inputs: torch.Tensor, batch_data_samples) -> Dict[str, object]:
        """The teacher's tapped outputs for a training batch (``(N, 3, H, W)`` as
        loaded): ``{module path: what it recorded}``, e.g. the neck's tuple of
        ``(N, C, H_l, W_l)`` maps. Called under ``no_grad``; a subclass may serve
        them from elsewhere (``benchmarks/teacher_feature_cache.py`` reads them off
        disk)."""
        t_inputs, t_samples = rescale_batch(batch_inputs, batch_data_samples,
                                            self.plan.teacher.input_scale)
        return self.plan.teacher.record(self.teacher, t_inputs, t_samples)

    # ------------------------------------------------------------ the plan, read
    @property
    def tap_specs(self):
        """The taps as parsed from the config (:class:`~.taps.TapSpec`)."""
        return [tap.spec for tap in self.plan.taps]

    @property
    def level_pairings(self) -> Dict[str, LevelPairing]:
        return {tap.key: tap.pairing for tap in self.plan.taps}

    @property
    def student_recorder(self):
        return self.plan.student.recorder

    @property
    def teacher_recorder(self):
        return self.plan.teacher.recorder

    @property
    def student_input_scale(self) -> float:
        return self.plan.student.input_scale

    @property
    def teacher_input_scale(self) -> float:
        return self.plan.teacher.input_scale

    @property
    def probe_size(self):
        """The probe batch's ``(H, W)`` as loaded (enlarged where a scale shrinks it)."""
        return self.plan.probe_size

    def probe_features(self, size=None):
        """Per tap, the paired ``(student, teacher)`` feature lists of a dummy batch of
        ``size`` as loaded (default: the probe's)."""
        s_out, t_out = self.plan.probe(self.student, self.teacher, size)
        return [tap.paired(s_out, t_out) for tap in self.plan.taps]

    def projectors(self) -> Dict[str, nn.Module]:
        """``{'<tap>.<level>': projector}`` for every tap level that projects."""
        return {f'{key}.{i}': loss.projector
                for key, losses in self.distill_losses.items()
                for i, loss in enumerate(losses) if hasattr(loss, 'projector')}

    # ------------------------------------------------------- the detector's API
    def __getattr__(self, name: str):
        # Stock hooks, tools and user code reach into "the detector": YOLOX's mode
        # switch sets `model.bbox_head.use_l1`, SetEpochInfoHook calls
        # `model.set_epoch(...)`. What the distiller lacks, it takes from its student.
        try:
            return super().__getattr__(name)
        except AttributeError:
            student = self.__dict__.get('_modules', {}).get('student')
            if student is None or name.startswith('__'):
                raise
            try:
                return getattr(student, name)
            except AttributeError:
                raise AttributeError(f"'{type(self).__name__}' object has no attribute "
                                     f"'{name}', nor has its student "
                                     f"({type(student).__name__})") from None

    def _apply(self, fn, *args, **kwargs):
        # Move/cast the (unregistered) teacher together with the student.
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    def predict(self, batch_inputs, batch_data_samples, rescale: bool = True):
        return self.student.predict(batch_inputs, batch_data_samples, rescale=rescale)

    def _forward(self, batch_inputs, batch_data_samples=None):
        return self.student._forward(batch_inputs, batch_data_samples)

    def extract_feat(self, batch_inputs):
        return self.student.extract_feat(batch_inputs)


def _mmdet_scope():
    """Build under the ``mmdet`` scope unless the caller (e.g. a Runner) set one."""
    if DefaultScope.get_current_instance() is None:
        return DefaultScope.overwrite_default_scope('mmdet')
    return contextlib.nullcontext()
