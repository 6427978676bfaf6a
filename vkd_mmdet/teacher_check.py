"""Is the teacher any good on the user's own val set? One validation pass, before training.

The commonest report from users of distillation tools is "the distilled student is
no better than the baseline", and the commonest cause is a teacher that is not what
its user thinks: weights not loaded, trained on other data or classes, fed another
preprocessing, or simply not better than the student. Distillation passes on what
the teacher has; this check evaluates the teacher with the config's own
``val_evaluator`` (the metric the student is judged by), on the val images as the
distiller gives them to the teacher in training, and says so in plain words.

Used by :class:`vkd_mmdet.hooks.TeacherCheckHook` (before the first epoch) and by
``tools/check_teacher.py`` (alone).
"""
import copy
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

from .errors import ConfigError
from .models.input_scaling import rescale_batch

# Transforms whose `scale` (or `scale_factor`) sets the image size a pipeline loads.
RESIZE_TRANSFORMS = ('Resize', 'FixScaleResize', 'FixShapeResize', 'RandomResize',
                     'RandomChoiceResize')


def num_classes(model: nn.Module) -> Optional[int]:
    """The classes a detector predicts, read off its (last) box head; ``None`` if unknown."""
    for path in ('bbox_head', 'roi_head.bbox_head', 'rpn_head'):
        module = model
        for name in path.split('.'):
            module = getattr(module, name, None)
        if isinstance(module, (nn.ModuleList, list, tuple)):
            module = module[-1] if len(module) else None
        if module is not None and isinstance(getattr(module, 'num_classes', None), int):
            return module.num_classes
    return None


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def rescaled_pipeline_dataloader(dataloader_cfg: dict, factor: float) -> Optional[dict]:
    """A copy of a dataloader config whose pipeline loads images ``factor`` times as
    large (every resize's ``scale``/``scale_factor``); ``None`` where the dataset has no
    pipeline of its own with such a resize (a wrapped dataset, say)."""
    cfg = copy.deepcopy(dict(dataloader_cfg))
    dataset = cfg.get('dataset') or {}
    pipeline = dataset.get('pipeline') if isinstance(dataset, dict) else None
    if not pipeline:
        return None
    found = False
    for step in pipeline:
        if not isinstance(step, dict) or step.get('type') not in RESIZE_TRANSFORMS:
            continue
        if step.get('scale') is not None:
            step['scale'] = _scaled(step['scale'], factor)
            found = True
        elif step.get('scale_factor') is not None:
            step['scale_factor'] = _scaled(step['scale_factor'], factor)
            found = True
    return cfg if found else None


def resize_scales(dataloader_cfg: dict) -> list:
    """The ``scale`` of every resize in a dataloader config's pipeline."""
    dataset = (dataloader_cfg or {}).get('dataset') or {}
    pipeline = dataset.get('pipeline') if isinstance(dataset, dict) else None
    return [step.get('scale') for step in pipeline or []
            if isinstance(step, dict) and step.get('type') in RESIZE_TRANSFORMS
            and step.get('scale') is not None]


def _scaled(value, factor):
    if isinstance(value, (int, float)):
        return type(value)(round(value * factor)) if isinstance(value, int) else value * factor
    if all(isinstance(v, (list, tuple)) for v in value):  # a list of scales
        return [_scaled(v, factor) for v in value]
    return tuple(round(v * factor) if isinstance(v, int) else v * factor for v in value)


def teacher_view(val_dataloader_cfg: dict, teacher_scale: float, student_scale: float):
    """How the teacher sees the val images as the distiller shows it the training
    batch: ``(dataloader_cfg, tensor_scale, note)``. ``dataloader_cfg`` is ``None``
    where the val dataloader serves as it is; else a copy whose pipeline loads the
    images ``1 / student_scale`` times as large (the val pipeline gives the student's
    resolution, the training batch is loaded at that over the student's factor).
    Each batch is then resized by ``tensor_scale``; ``note`` says what was done."""
    if student_scale == 1.0:
        note = '' if teacher_scale == 1.0 else f', images resized {teacher_scale:g}x as in training'
        return None, teacher_scale, note
    cfg = rescaled_pipeline_dataloader(val_dataloader_cfg, 1.0 / student_scale)
    if cfg is None:
        ratio = teacher_scale / student_scale
        return None, ratio, (f'; the val pipeline has no resize with a scale, so instead of '
                             f'loading its images {1 / student_scale:g}x as large the val '
                             f'batch was resized {ratio:g}x')
    note = (f', val images loaded {1 / student_scale:g}x as large as the student\'s'
            + ('' if teacher_scale == 1.0 else f' and resized {teacher_scale:g}x'))
    return cfg, teacher_scale, note


@torch.no_grad()
def evaluate_detector(model: nn.Module, data_preprocessor: nn.Module, dataloader, evaluator,
                      input_scale: float = 1.0) -> Dict[str, float]:
    """``model``'s metrics over ``dataloader`` by ``evaluator`` (an mmengine
    ``Evaluator``), each batch preprocessed by ``data_preprocessor`` and resized by
    ``input_scale``. Predictions are mapped back to the original images, as mmdet's
    own validation does, so the metric compares them with the annotations as they are."""
    was_training = model.training
    model.eval()
    try:
        for data in dataloader:
            data = data_preprocessor(data, False)
            inputs, samples = rescale_batch(data['inputs'], data['data_samples'], input_scale)
            outputs = model.predict(inputs, samples, rescale=True)
            evaluator.process(data_samples=outputs, data_batch=data)
        return evaluator.evaluate(len(dataloader.dataset))
    finally:
        model.train(was_training)


def primary_metric(metrics: Dict[str, float]) -> Optional[str]:
    """The metric a user reads first: the first ``mAP``-like key (mmdet's CocoMetric
    gives ``coco/bbox_mAP`` first), else the first key."""
    for key in metrics:
        if key.lower().endswith('map') or key.lower().endswith('/ap'):
            return key
    return next(iter(metrics), None)


@dataclass
class TeacherCheck:
    """The verdict on one teacher. ``value`` is ``metrics[metric]``; ``level`` is
    ``'warning'`` when the user should look before training, else ``'info'``."""
    message: str
    level: str = 'info'
    comparable: bool = True
    metrics: Dict[str, float] = field(default_factory=dict)
    metric: Optional[str] = None
    value: Optional[float] = None
    seconds: float = 0.0


def classes_mismatch(teacher: nn.Module, student: nn.Module, teacher_meta: dict,
                     val_classes: Optional[Sequence[str]]) -> Optional[str]:
    """Why the teacher's detections cannot be scored on the val set (other classes),
    or ``None`` when they can."""
    t_classes = (teacher_meta.get('dataset_meta') or {}).get('classes')
    if t_classes is not None and val_classes is not None and \
            tuple(t_classes) != tuple(val_classes):
        shown = list(t_classes)[:6]
        return (f'the teacher was trained on {len(t_classes)} classes '
                f'({shown}{" ..." if len(t_classes) > 6 else ""}, from its checkpoint\'s '
                f'meta), the val set has {len(val_classes)} '
                f'({list(val_classes)[:6]}{" ..." if len(val_classes) > 6 else ""})')
    t_num, s_num = num_classes(teacher), num_classes(student)
    if t_num is not None and s_num is not None and t_num != s_num:
        return f'the teacher predicts {t_num} classes, the student {s_num}'
    return None


def check_student_map(student_map: Optional[float], option: str = 'student_map') -> None:
    """Refuse a baseline outside 0-1: the val evaluators report mAP as a fraction, so
    ``student_map=25`` would be compared as 2500%.

    Raises:
        ValueError: ``student_map`` above 1 (the message shows both readings) or below 0.
    """
    if student_map is None:
        return
    if not 0 <= student_map <= 1:
        reading = (f'; did you mean {student_map / 100:g} ({student_map:g}%)?'
                   if 1 < student_map <= 100 else '')
        raise ConfigError(
            f'{option}={student_map:g} is outside 0-1, but the val metric (COCO mAP) is a '
            f'fraction: as given it reads as {100 * student_map:g}%{reading}')


def judge(value: float, metric: str, student_map: Optional[float], min_map: float,
          margin: float, where: str, sizes: str, teacher_ckpt) -> TeacherCheck:
    """The plain-words verdict on a teacher that scored ``value``."""
    score = f'teacher: {100 * value:.1f} {metric} on {where} ({sizes})'
    if value < min_map:
        loaded = ('no teacher_ckpt was given, so the teacher is randomly initialised'
                  if teacher_ckpt is None else f'teacher_ckpt={teacher_ckpt}')
        return TeacherCheck(
            f'{score}: near zero, so it has nothing to teach. Usual causes: its weights are '
            f'not the trained ones ({loaded}), it was trained on other data or classes, or '
            f'it expects another preprocessing (it sees the student\'s data_preprocessor '
            f'output). Check it with tools/check_teacher.py before training.', 'warning')
    if student_map is not None and value < student_map + margin:
        return TeacherCheck(
            f'{score}: not clearly better than the {100 * student_map:.1f} your student '
            f'reaches without distillation (student_map); a teacher less than '
            f'{100 * margin:.1f} above it has little to pass on, and the distilled student '
            f'is unlikely to beat the baseline. Use a stronger teacher (longer trained, '
            f'larger, or at a higher input resolution: teacher_input_scale).', 'warning')
    against = ('' if student_map is None else
               f', {100 * (value - student_map):+.1f} over the student without distillation')
    hint = ('' if student_map is not None else
            '. Compare it with your student trained without distillation: a teacher only '
            'a little better has little to pass on (check_teacher=dict(student_map=...) '
            'warns when it is)')
    return TeacherCheck(f'{score}{against}{hint}')


def run_teacher_check(teacher: nn.Module, student: nn.Module, data_preprocessor: nn.Module,
                      dataloader, evaluator, input_scale: float = 1.0,
                      teacher_meta: Optional[dict] = None, teacher_ckpt=None,
                      student_map: Optional[float] = None, min_map: float = 0.01,
                      margin: float = 0.02, where: str = 'your val set',
                      note: str = '') -> TeacherCheck:
    """Evaluate ``teacher`` on ``dataloader``'s images (resized by ``input_scale``)
    and judge it; skipped, with the reason, when its classes are not the val set's.

    ``student_map``: what the student reaches without distillation (same metric,
    0-1), if known; ``min_map``: below this the teacher is taken as broken;
    ``margin``: how far above ``student_map`` counts as clearly better.
    """
    check_student_map(student_map)
    val_classes = (getattr(dataloader.dataset, 'metainfo', None) or {}).get('classes')
    sizes = (f'{parameter_count(teacher) / 1e6:.1f}M parameters; the student '
             f'{parameter_count(student) / 1e6:.1f}M')
    why = classes_mismatch(teacher, student, teacher_meta or {}, val_classes)
    if why:
        return TeacherCheck(
            f'teacher check skipped: {why}, so its detections cannot be scored against '
            f'the val set\'s annotations and its metric would not be comparable. Feature '
            f'taps (backbone, neck, head towers) still distil; prediction taps need the '
            f'same classes on both sides.', 'warning', comparable=False)
    start = time.time()
    metrics = dict(evaluate_detector(teacher, data_preprocessor, dataloader, evaluator,
                                     input_scale))
    seconds = time.time() - start
    metric = primary_metric(metrics)
    value = 0.0 if metric is None else float(metrics[metric])
    verdict = judge(value, metric or 'mAP (no detection above the score threshold)',
                    student_map, min_map, margin, where, sizes, teacher_ckpt)
    verdict.message += f' [one val pass of the teacher: {seconds:.0f} s{note}]'
    verdict.metrics, verdict.metric, verdict.value, verdict.seconds = \
        metrics, metric, value, seconds
    return verdict
