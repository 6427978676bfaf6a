"""Each model at its own input resolution: a training batch resized for one side.

A teacher trained at 1280 px can teach a student deployed at 640 px, and a teacher
that sees small faces in detail can teach a student that sees them at half the
size. The distiller resizes the preprocessed batch for one model's forward pass
(``teacher_input_scale``, ``student_input_scale``: factors of the loaded batch).
Where the student's side is resized, its data samples follow: ground-truth boxes,
``img_shape``, ``pad_shape``, ``batch_input_shape`` and ``scale_factor``, so that
its detection losses and anchors see one consistent image.

:class:`RescaleBatch` does the same as a ``batch_augments`` step of a detector's
data preprocessor, so a student trained without distillation can see exactly the
input a distilled one sees (the fair baseline).
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmdet.registry import MODELS

from ..errors import ConfigError

# Fields of a data sample that live in the input's pixel grid and are not resized
# here: a model whose loss reads them cannot train on a resized batch.
_UNSUPPORTED_FIELDS = ('gt_sem_seg', 'gt_panoptic_seg')


def check_input_scale(value, name: str) -> float:
    """A resize factor must be a finite number > 0."""
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f'{name}={value!r} is not a number; give the factor '
                          f'the batch is resized by for that model, e.g. 2.0 or 0.5') from None
    if isinstance(value, bool) or not math.isfinite(scale) or scale <= 0:
        raise ConfigError(f'{name}={value!r}; it must be a finite number > 0 '
                          f'(1.0: the batch as loaded)')
    return scale


def scaled_size(size: Sequence[int], factor: float) -> Tuple[int, int]:
    """``(H, W)`` times ``factor``, rounded, at least one pixel each."""
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def rescale_inputs(inputs: torch.Tensor, factor: float) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, round(H*f), round(W*f))``, bilinear; antialiased
    when shrinking, so that the smaller image is what a resize of the photo gives
    rather than an aliased subsample of it."""
    if factor == 1.0:
        return inputs
    size = scaled_size(inputs.shape[-2:], factor)
    out = F.interpolate(inputs.float(), size=size, mode='bilinear', align_corners=False,
                        antialias=factor < 1.0)
    return out.to(inputs.dtype)


def rescale_samples(samples: Optional[List], old_size: Sequence[int],
                    new_size: Sequence[int]) -> Optional[List]:
    """Copies of ``samples`` whose boxes, masks and shapes describe the batch resized
    from ``old_size`` to ``new_size`` ``(H, W)``. The originals are left as they are
    (the other model, the evaluator and the logger still read them)."""
    if samples is None:
        return None
    fy, fx = new_size[0] / old_size[0], new_size[1] / old_size[1]
    out = []
    for i, sample in enumerate(samples):
        bad = [f for f in _UNSUPPORTED_FIELDS if f in sample]
        if bad:
            raise ConfigError(f'VkDDistiller: data sample {i} carries {bad}, maps in the '
                              f"input's pixel grid that a resized batch would have to resize "
                              f'too; input scales other than 1.0 support boxes and instance '
                              f'masks only')
        sample = sample.clone()  # (shallow: the fields below are replaced, not changed)
        meta = {}
        for key in ('img_shape', 'pad_shape'):
            if key in sample.metainfo:
                h, w = sample.metainfo[key][:2]
                meta[key] = (round(h * fy), round(w * fx))
        meta['batch_input_shape'] = tuple(int(s) for s in new_size)
        if 'scale_factor' in sample.metainfo:
            sx, sy = sample.metainfo['scale_factor'][:2]
            meta['scale_factor'] = (sx * fx, sy * fy)
        sample.set_metainfo(meta)
        for field in ('gt_instances', 'ignored_instances'):
            if field in sample:
                setattr(sample, field, _rescaled_instances(getattr(sample, field), fx, fy))
        out.append(sample)
    return out


def _rescaled_instances(instances, fx: float, fy: float):
    """A copy of ``instances`` (``InstanceData``) with boxes and masks resized."""
    instances = instances.clone()
    if 'bboxes' in instances:
        boxes = instances.bboxes
        if hasattr(boxes, 'rescale_'):  # mmdet's HorizontalBoxes
            boxes = boxes.clone()
            boxes.rescale_((fx, fy))
            instances.bboxes = boxes
        else:
            instances.bboxes = boxes * boxes.new_tensor([fx, fy, fx, fy])
    if 'masks' in instances and hasattr(instances.masks, 'resize'):
        h, w = instances.masks.height, instances.masks.width
        instances.masks = instances.masks.resize((round(h * fy), round(w * fx)))
    return instances


def rescale_batch(inputs: torch.Tensor, samples: Optional[List], factor: float):
    """The batch resized by ``factor`` and its samples to match; the same objects
    when ``factor`` is 1."""
    if factor == 1.0:
        return inputs, samples
    resized = rescale_inputs(inputs, factor)
    return resized, rescale_samples(samples, inputs.shape[-2:], resized.shape[-2:])


@MODELS.register_module()
class RescaleBatch(nn.Module):
    """A data preprocessor's ``batch_augments`` step: the training batch resized by
    ``scale_factor`` (antialiased when shrinking), its boxes and shapes to match.

    The student of a run without distillation then sees what a distilled student
    with ``student_input_scale=scale_factor`` sees::

        model = dict(data_preprocessor=dict(
            batch_augments=[dict(type='RescaleBatch', scale_factor=0.5)]))

    Like every batch augment it runs in training only: validation sees the val
    pipeline's images as they are.
    """

    def __init__(self, scale_factor: float):
        super().__init__()
        self.scale_factor = check_input_scale(scale_factor, 'RescaleBatch: scale_factor')

    def forward(self, inputs: torch.Tensor, data_samples: List):
        return rescale_batch(inputs, data_samples, self.scale_factor)

    def extra_repr(self) -> str:
        return f'scale_factor={self.scale_factor}'
