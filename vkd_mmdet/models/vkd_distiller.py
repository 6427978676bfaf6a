"""VkDDistiller: a frozen teacher detector distils features into a student detector."""
import contextlib
import copy
import math
import os.path as osp
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from torch.profiler import record_function
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmdet.models.detectors import BaseDetector, TwoStageDetector
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample

from ..checkpoint import load_teacher_checkpoint
from .feature_norm import default_channel_dim
from .feature_recorder import FeatureRecorder
from .foreground_weights import GroundTruthBoxes
from .input_scaling import check_input_scale, rescale_batch, rescale_inputs
from .level_pairing import LevelPairing, pair_levels
from .maps_ahead import MapsAhead
from .nonfinite_guard import NonFiniteGuard
from .prediction_taps import check_prediction_anchors
from .taps import TapSpec, feature_levels, parse_taps, select_levels
from .unlabelled_split import detection_loss
from .vkd_loss import PREDICTION_LOSSES, VkDLoss

# Modules reached by `extract_feat`; taps elsewhere need the head's `_forward`.
_FEATURE_ROOTS = ('backbone', 'neck')


def build_teacher_config(teacher: Union[str, dict]) -> dict:
    """A detector config dict from a dict, a local config file or ``'mmdet::...'``."""
    if isinstance(teacher, (dict, ConfigDict)):
        return copy.deepcopy(dict(teacher))
    if not isinstance(teacher, str):
        raise TypeError(f'VkDDistiller: teacher must be a config dict, a config file '
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
        raise KeyError(f"VkDDistiller: teacher config '{teacher}' has no `model`")
    return cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)


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
    """

    def __init__(self,
                 student: dict,
                 teacher: Union[str, dict],
                 teacher_ckpt: Optional[str] = None,
                 taps=('neck', ),
                 tap_defaults: Optional[dict] = None,
                 trust_teacher_ckpt: bool = False,
                 probe_size=(256, 256),
                 max_nonfinite_steps: int = 10,
                 teacher_input_scale: float = 1.0,
                 student_input_scale: float = 1.0,
                 check_teacher: Union[bool, dict] = True,
                 data_preprocessor=None,
                 init_cfg=None):
        with _mmdet_scope():
            super().__init__(data_preprocessor=None, init_cfg=init_cfg)
            self.tap_specs: List[TapSpec] = parse_taps(taps, tap_defaults)
            self.teacher_input_scale = check_input_scale(
                teacher_input_scale, 'VkDDistiller: teacher_input_scale')
            self.student_input_scale = check_input_scale(
                student_input_scale, 'VkDDistiller: student_input_scale')
            if not isinstance(check_teacher, (bool, dict, ConfigDict)):
                raise TypeError(f'VkDDistiller: check_teacher={check_teacher!r}; give True, '
                                f'False or a dict of TeacherCheckHook options')
            self.check_teacher = check_teacher
            self.nonfinite = NonFiniteGuard(max_nonfinite_steps)
            self.student = MODELS.build(ConfigDict(student))
            if data_preprocessor is not None:
                self.student.data_preprocessor = MODELS.build(data_preprocessor)
            teacher_cfg = build_teacher_config(teacher)
            teacher_model = MODELS.build(ConfigDict(teacher_cfg))
        # One preprocessing for both models: the teacher sees the student's tensor.
        self.data_preprocessor = self.student.data_preprocessor
        _warn_on_preprocessing_mismatch(student, teacher_cfg)
        self.teacher_ckpt = teacher_ckpt
        self.teacher_meta: dict = {}
        if teacher_ckpt is not None:
            self.teacher_meta = load_teacher_checkpoint(
                teacher_model, teacher_ckpt, trust=trust_teacher_ckpt) or {}
        else:
            MMLogger.get_current_instance().warning(
                'VkDDistiller: no teacher_ckpt given; the teacher is randomly '
                'initialised and distillation will not help.')
        teacher_model.requires_grad_(False)
        teacher_model.eval()
        object.__setattr__(self, 'teacher', teacher_model)

        for spec in self.tap_specs:
            _refuse_roi_head_tap(spec, 'student', self.student, spec.student)
            _refuse_roi_head_tap(spec, 'teacher', teacher_model, spec.teacher)
        self.student_recorder = FeatureRecorder(
            self.student, [t.student for t in self.tap_specs], role='student')
        self.teacher_recorder = FeatureRecorder(
            teacher_model, [t.teacher for t in self.tap_specs], role='teacher')
        self._teacher_needs_head = any(
            t.teacher.split('.')[0] not in _FEATURE_ROOTS for t in self.tap_specs)
        self._student_needs_head = any(
            t.student.split('.')[0] not in _FEATURE_ROOTS for t in self.tap_specs)
        self._needs_boxes = any(
            t.loss_cfg.get('foreground_weight') is not None for t in self.tap_specs)

        self.level_pairings: Dict[str, LevelPairing] = {}
        # The probe batch "as loaded": large enough that the model whose input is
        # shrunk still sees probe_size, where its deepest levels keep distinct sizes.
        smallest = min(self.student_input_scale, self.teacher_input_scale, 1.0)
        probe_size = self.probe_size = tuple(math.ceil(s / smallest) for s in probe_size)
        s_out, t_out = self._probe(probe_size)
        self.distill_losses = nn.ModuleDict({
            spec.key: self._build_tap_losses(
                spec, *self._resolve_levels(spec, s_out, t_out, probe_size))
            for spec in self.tap_specs
        })
        # Set by DistillWeightScheduleHook; 0 switches distillation off.
        self.distill_weight = 1.0

    # ----------------------------------------------------------------- set-up
    def _probe(self, size):
        """Both models' tapped outputs for a dummy batch of ``size`` as loaded, each
        resized by its input scale (channels, levels, strides)."""
        dummy = torch.zeros(1, 3, *size, device=next(self.student.parameters()).device)
        was_training = self.student.training
        self.student.eval()
        try:
            with torch.no_grad():
                # Full passes here: they count each tapped module's calls (a head
                # tower runs once per level), which stopped-early passes wait for.
                outs = []
                for model, recorder, scale, needs_head in (
                        (self.student, self.student_recorder, self.student_input_scale,
                         self._student_needs_head),
                        (self.teacher, self.teacher_recorder, self.teacher_input_scale,
                         self._teacher_needs_head)):
                    inputs = rescale_inputs(dummy, scale)
                    outs.append(self._run(model, recorder, inputs,
                                          [_dummy_sample(inputs.shape[-2:])], needs_head,
                                          stop_early=False))
        finally:
            self.student.train(was_training)
        return tuple(outs)

    def probe_features(self, size=None) -> List[tuple]:
        """Per tap, the paired ``(student, teacher)`` feature lists of a dummy batch of
        ``size`` as loaded (default: the probe's)."""
        s_out, t_out = self._probe(size or self.probe_size)
        return [self._pair_levels(spec, s_out, t_out) for spec in self.tap_specs]

    @staticmethod
    def _run(model, recorder, inputs, samples, needs_head, stop_early=True) -> Dict[str, object]:
        """Forward ``model`` until every tapped module of ``recorder`` has run (as
        often as in the probe): the backbone and neck, and the head only for taps in it."""
        result = None
        with recorder.record(stop_early=stop_early) as outputs:
            if needs_head:
                result = model._forward(inputs, samples)
            else:
                model.extract_feat(inputs)
        missing = [p for p in recorder.paths if p not in outputs]
        if missing:
            raise RuntimeError(_not_recorded_message(model, recorder.role, missing, result))
        return outputs

    def _resolve_levels(self, spec: TapSpec, s_out, t_out, size):
        """Pair the tap's levels (by stride unless given), store them in ``spec``,
        log the pairs, and return the paired probe features."""
        s_all = feature_levels(s_out[spec.student], spec.student, 'student')
        t_all = feature_levels(t_out[spec.teacher], spec.teacher, 'teacher')
        select_levels(s_all, spec.student_levels, spec.student, 'student')  # checks indices
        select_levels(t_all, spec.teacher_levels, spec.teacher, 'teacher')
        pairing = pair_levels(spec.name, s_all, t_all, spec.student_levels,
                              spec.teacher_levels, size,
                              input_scales=(self.student_input_scale, self.teacher_input_scale))
        spec.student_levels, spec.teacher_levels = pairing.student, pairing.teacher
        self.level_pairings[spec.key] = pairing
        if spec.loss_cfg.get('loss') in PREDICTION_LOSSES:
            check_prediction_anchors(spec.name, self.student, self.teacher, spec.student,
                                     spec.teacher, pairing.student, pairing.teacher,
                                     (self.student_input_scale, self.teacher_input_scale))
        MMLogger.get_current_instance().info(
            f"VkD tap '{spec.name}' ({spec.student} -> {spec.teacher}): {pairing.describe()}")
        return self._pair_levels(spec, s_out, t_out)

    @staticmethod
    def _pair_levels(spec: TapSpec, s_out, t_out):
        """The tap's paired ``(student, teacher)`` feature lists of one forward pass."""
        s_feats = select_levels(feature_levels(s_out[spec.student], spec.student, 'student'),
                                spec.student_levels, spec.student, 'student')
        t_feats = select_levels(feature_levels(t_out[spec.teacher], spec.teacher, 'teacher'),
                                spec.teacher_levels, spec.teacher, 'teacher')
        return s_feats, t_feats

    @staticmethod
    def _build_tap_losses(spec: TapSpec, s_feats, t_feats) -> nn.ModuleList:
        cdim = spec.loss_cfg.get('channel_dim')
        for role, feats in (('student', s_feats), ('teacher', t_feats)):
            if spec.loss_cfg.get('foreground_weight') is not None and any(
                    f.dim() != 4 for f in feats):
                raise ValueError(
                    f"VkD tap '{spec.name}': foreground_weight weights the positions of "
                    f"(N, C, H, W) maps by the ground-truth boxes, and the {role}'s "
                    f"features have shapes {[tuple(f.shape) for f in feats]}. Use it on "
                    f"feature-map taps (backbone, neck, dense head towers) only.")
            if cdim is None and any(f.dim() == 4 and f.shape[1] == 1 for f in feats):
                # The probe's batch is 1: a 4-D map with 1 channel in dim 1 is
                # most likely stacked tokens such as (layers, N, queries, C).
                raise ValueError(
                    f"VkD tap '{spec.name}': the {role}'s features have shapes "
                    f"{[tuple(f.shape) for f in feats]} on the probe's batch of 1, so "
                    f"dim 1 is not a channel dim; they look like stacked tokens, e.g. a "
                    f"DETR decoder's (layers, N, queries, C). Say where the channels are "
                    f"with channel_dim=-1 in the tap (or channel_dim=1 if that really is "
                    f"a 1-channel map).")
        return nn.ModuleList([
            VkDLoss(s.shape[default_channel_dim(s) if cdim is None else cdim],
                    t.shape[default_channel_dim(t) if cdim is None else cdim], **spec.loss_cfg)
            for s, t in zip(s_feats, t_feats)
        ])

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

    # --------------------------------------------------------------- training
    def loss(self, batch_inputs: torch.Tensor, batch_data_samples) -> dict:
        # The record_function ranges name, in a torch profile, the time and
        # memory of the teacher, the student and each tap's distillation.
        weight = float(self.distill_weight)
        self.nonfinite.before_forward(self, batch_inputs.device.type)
        if weight != 0.0:
            # The projections' orthogonal maps start first (on CUDA, beside the
            # forward passes; see maps_ahead.py).
            maps = MapsAhead(self.distill_losses, batch_inputs.device)
            # Teacher first: its activations are freed before the student builds
            # its autograd graph, so the step's peak memory is the student's
            # plus only the tapped teacher features.
            self.teacher.eval()
            with torch.no_grad(), record_function('vkd:teacher'):
                t_out = self.teacher_outputs(batch_inputs, batch_data_samples)
        s_inputs, s_samples = rescale_batch(batch_inputs, batch_data_samples,
                                            self.student_input_scale)
        with self.student_recorder.record() as s_out, record_function('vkd:student'):
            # (the labelled images' loss; unlabelled ones feed the taps only)
            losses = detection_loss(self.student, s_inputs, s_samples)
        distill, teacher_feats = {}, {}
        # (the student's boxes on the student's input: a map covers its whole tensor,
        # and paired maps have one size, so either side's view places them alike)
        boxes = (GroundTruthBoxes.from_samples(s_samples, s_inputs.shape[-2:])
                 if self._needs_boxes and weight != 0.0 else None)
        for spec in self.tap_specs:
            if weight == 0.0:
                # Distillation off: zero terms keep every projector in the graph, so
                # DDP without find_unused_parameters still sees all gradients.
                distill[f'loss_vkd_{spec.key}'] = _zero_like_params(
                    self.distill_losses[spec.key], batch_inputs.device)
                continue
            s_feats, t_feats = self._pair_levels(spec, s_out, t_out)
            teacher_feats[f"tap '{spec.name}'"] = t_feats
            tap_losses = self.distill_losses[spec.key]
            with record_function(f'vkd:distill_{spec.key}'):
                total = sum(loss(s, t, weight=w, boxes=boxes) for loss, s, t, w
                            in zip(tap_losses, s_feats, t_feats, maps[spec.key]))
            if spec.level_reduction == 'mean':
                total = total / len(tap_losses)
            distill[f'loss_vkd_{spec.key}'] = total * weight
        # (under fp16 loss scaling a zero, or NaN on a step for the GradScaler to skip)
        skip = self.nonfinite.check(losses, distill, self, batch_inputs.device.type,
                                    teacher=teacher_feats)
        if skip is not None:
            first = next(iter(distill))
            distill[first] = distill[first] + skip
        losses.update(distill)
        losses['vkd_nonfinite_steps'] = torch.tensor(float(self.nonfinite.skipped))
        return losses

    def teacher_outputs(self, batch_inputs: torch.Tensor, batch_data_samples) -> Dict[str, object]:
        """The teacher's tapped outputs for a training batch (``(N, 3, H, W)`` as
        loaded): ``{module path: what it recorded}``, e.g. the neck's tuple of
        ``(N, C, H_l, W_l)`` maps. Called under ``no_grad``; a subclass may serve
        them from elsewhere (``benchmarks/teacher_feature_cache.py`` reads them off
        disk)."""
        t_inputs, t_samples = rescale_batch(batch_inputs, batch_data_samples,
                                            self.teacher_input_scale)
        return self._run(self.teacher, self.teacher_recorder, t_inputs, t_samples,
                         self._teacher_needs_head)

    # -------------------------------------------------------- student only
    def predict(self, batch_inputs, batch_data_samples, rescale: bool = True):
        return self.student.predict(batch_inputs, batch_data_samples, rescale=rescale)

    def _forward(self, batch_inputs, batch_data_samples=None):
        return self.student._forward(batch_inputs, batch_data_samples)

    def extract_feat(self, batch_inputs):
        return self.student.extract_feat(batch_inputs)

    def projectors(self) -> Dict[str, nn.Module]:
        """``{'<tap>.<level>': projector}`` for every tap level."""
        return {f'{key}.{i}': loss.projector
                for key, losses in self.distill_losses.items()
                for i, loss in enumerate(losses)}


def _mmdet_scope():
    """Build under the ``mmdet`` scope unless the caller (e.g. a Runner) set one."""
    if DefaultScope.get_current_instance() is None:
        return DefaultScope.overwrite_default_scope('mmdet')
    return contextlib.nullcontext()


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


def _refuse_roi_head_tap(spec: TapSpec, role: str, model: nn.Module, path: str):
    """A two-stage detector's RoI head runs on each model's own proposals: its
    features of the student and of the teacher describe different boxes."""
    if isinstance(model, TwoStageDetector) and path.split('.')[0] == 'roi_head':
        raise ValueError(
            f"VkD tap '{spec.name}': the {role}'s '{path}' is in the RoI head of a "
            f"two-stage detector, which runs on each model's own proposals, so the "
            f"student's and the teacher's RoI features describe different boxes and "
            f"cannot be compared. Tap features of the whole image: 'neck', or the RPN "
            f"head's tower ('rpn_head.rpn_conv').")


def _not_recorded_message(model: nn.Module, role: str, missing: List[str], result) -> str:
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


def _zero_like_params(module: nn.Module, device: torch.device) -> torch.Tensor:
    """A zero that reaches every trainable parameter of ``module``, on ``device``
    (a tap without parameters, e.g. ``projection='none'``, still gets the batch's
    device: it is stacked with the other losses in the non-finite check)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return torch.zeros((), device=device)
    return sum(p.sum() for p in params) * 0.0


def _dummy_sample(size) -> DetDataSample:
    h, w = size
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         pad_shape=(h, w), batch_input_shape=(h, w),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
    return sample
