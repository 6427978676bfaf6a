"""The student's detection loss on the labelled images of a batch that also holds
unlabelled ones (samples marked ``unlabelled=True``, e.g. by
:class:`~vkd_mmdet.datasets.UnlabelledImages`).

The backbone, neck and dense head run once over the whole batch, so every tap sees
every image; the head's outputs are then cut to the labelled images before
``loss_by_feat``, which is exactly what ``head.loss`` computes on a batch of the
labelled images alone. Where nothing mixes images in the forward pass (frozen
BatchNorm, ``norm_eval=True``; GroupNorm; no BatchNorm) the loss therefore equals the
labelled-only one; BatchNorm in training mode normalises with the whole batch's
statistics, unlabelled images included, and that is all they change.
"""
from typing import Dict, List, Sequence

import torch
from torch import nn

from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.detectors import SingleStageDetector
from mmdet.models.utils import unpack_gt_instances

from ..errors import ConfigError

UNLABELLED = 'unlabelled'


def labelled_indices(samples: Sequence) -> List[int]:
    """Positions of the samples that carry labels (no ``unlabelled=True`` mark)."""
    return [i for i, s in enumerate(samples) if not s.metainfo.get(UNLABELLED, False)]


def detection_loss(student: nn.Module, inputs: torch.Tensor, samples: Sequence
                   ) -> Dict[str, torch.Tensor]:
    """``student.loss`` on the labelled samples of ``inputs`` (``(N, 3, H, W)``), with
    the backbone, neck and head run over all N images.

    A batch with no unlabelled sample goes through ``student.loss`` unchanged; one
    with no labelled sample gives ``loss_detection``, a zero that reaches every
    parameter the forward pass used (DDP sees all gradients).

    Raises:
        ValueError: unlabelled samples and a student whose loss cannot be split so.
    """
    labelled = labelled_indices(samples)
    if len(labelled) == len(samples):
        return student.loss(inputs, samples)
    refuse_unsplittable(student)
    outs = student.bbox_head(student.extract_feat(inputs))
    if not labelled:
        return dict(loss_detection=sum(t.sum() for t in _tensors(outs)) * 0.0)
    gt_instances, gt_ignore, img_metas = unpack_gt_instances([samples[i] for i in labelled])
    index = torch.tensor(labelled, device=inputs.device)
    return student.bbox_head.loss_by_feat(*_take(outs, index), gt_instances, img_metas,
                                          gt_ignore)


def refuse_unsplittable(student: nn.Module) -> None:
    """Raise unless ``student``'s loss is mmdet's single-stage ``head.loss`` on the
    head's per-image outputs (what :func:`detection_loss` splits)."""
    name = type(student).__name__
    why = None
    if not isinstance(student, SingleStageDetector):
        why = ('it is not a single-stage detector (a two-stage detector samples its RoI '
               "head's proposals from the RPN's output per batch, and a DETR matches "
               'queries inside its head, so neither loss is a function of per-image head '
               'outputs that can be cut)')
    elif type(student).loss is not SingleStageDetector.loss:
        why = f'{name}.loss is its own, not the single-stage extract_feat + head.loss'
    elif not isinstance(student.bbox_head, BaseDenseHead) or \
            type(student.bbox_head).loss is not BaseDenseHead.loss:
        why = (f'its head {type(student.bbox_head).__name__} computes its loss its own '
               f'way, not as loss_by_feat on its forward outputs')
    if why:
        raise ConfigError(
            f'VkDDistiller: the batch holds unlabelled images (unlabelled=True), so the '
            f"student's detection loss must be computed on its labelled images alone, and "
            f'the student {name} cannot be split so: {why}. Unlabelled images work with '
            f'single-stage detectors with a dense head (RetinaNet, FCOS, ATSS, GFL, '
            f'YOLOX, RTMDet, CenterNet); train this student on labelled images only.')


def _take(outs, index: torch.Tensor):
    """``outs`` (nested tuples/lists of ``(N, ...)`` tensors) at the images ``index``."""
    if isinstance(outs, torch.Tensor):
        return outs.index_select(0, index)
    if isinstance(outs, (tuple, list)):
        return type(outs)(_take(o, index) for o in outs)
    return outs  # (None and the like pass through)


def _tensors(outs):
    if isinstance(outs, torch.Tensor):
        yield outs
    elif isinstance(outs, (tuple, list)):
        for o in outs:
            yield from _tensors(o)
