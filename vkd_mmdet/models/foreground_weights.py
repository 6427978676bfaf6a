"""Per-position loss weights from ground-truth boxes: every object counts equally.

A feature loss averaged over all positions of a map mostly matches background: on
face-mask, faces cover a few percent of each image. FGD (Yang et al., CVPR 2022)
weights each position inside a ground-truth box by ``1 / (box area in cells)``, so
that every box carries the same total weight whatever its size, and the background
by ``1 / (background cells)`` in a term of its own. Here both terms are weighted
means, so ``foreground_weight`` and ``background_weight`` scale losses of the size of
an ordinary mean:

    fg = Σ M_fg · l / Σ M_fg     (the mean over the batch's boxes of each box's mean loss)
    bg = Σ M_bg · l / Σ M_bg     (the mean over images of each image's background mean)
    loss = loss_weight · (foreground_weight · fg + background_weight · bg)

where ``l`` is the element-wise loss averaged over channels, ``M_fg(n, y, x)`` is
``max_b 1 / area_b`` over the boxes ``b`` of image ``n`` that cover cell ``(y, x)``
(FGD's rule where boxes overlap: the smaller box decides) and ``M_bg(n, y, x)`` is
``1 / (cells of image n no box covers)`` on those cells. A batch without boxes has
only the background term.

The boxes are the data samples' ``gt_instances.bboxes``, in the coordinates of the
batch's input tensor after every transform of the pipeline (resize, flip, crop,
mosaic) and the batch padding, which puts each image at the top left of the padded
tensor; a map of ``h x w`` cells covers that whole tensor.
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch

from ..errors import ConfigError


@dataclass
class GroundTruthBoxes:
    """A batch's boxes: ``boxes[n]`` is ``(k_n, 4)`` ``x1, y1, x2, y2`` in pixels of the
    padded input tensor of size ``input_size`` ``(H, W)``."""
    boxes: List[torch.Tensor]
    input_size: Tuple[int, int]

    @classmethod
    def from_samples(cls, data_samples: Sequence, input_size) -> 'GroundTruthBoxes':
        boxes = []
        for i, sample in enumerate(data_samples):
            instances = getattr(sample, 'gt_instances', None)
            if instances is None or 'bboxes' not in instances:
                raise ConfigError(
                    f'VkD foreground weighting: data sample {i} of the batch has no '
                    f'gt_instances.bboxes. It weights positions by the ground-truth boxes, '
                    f'so the training pipeline must load them (LoadAnnotations with_bbox=True '
                    f'and PackDetInputs)')
            bboxes = instances.bboxes
            bboxes = getattr(bboxes, 'tensor', bboxes)  # mmdet's HorizontalBoxes
            boxes.append(bboxes.detach().float().reshape(-1, 4))
        return cls(boxes, (int(input_size[0]), int(input_size[1])))


def box_cells(boxes: torch.Tensor, input_size: Tuple[int, int], map_size: Tuple[int, int]):
    """The cells of an ``h x w`` map over an ``H x W`` input that each box covers:
    ``(y0, y1, x0, x1)``, end-exclusive, at least one cell per box, ``(k,)`` each."""
    (height, width), (h, w) = input_size, map_size
    sy, sx = height / h, width / w
    x0 = torch.floor(boxes[:, 0] / sx).clamp(0, w - 1)
    y0 = torch.floor(boxes[:, 1] / sy).clamp(0, h - 1)
    x1 = torch.maximum(torch.ceil(boxes[:, 2] / sx).clamp(0, w), x0 + 1)
    y1 = torch.maximum(torch.ceil(boxes[:, 3] / sy).clamp(0, h), y0 + 1)
    return y0, y1, x0, x1


def foreground_masks(gt: GroundTruthBoxes, map_size: Tuple[int, int],
                     device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """FGD's masks on an ``h x w`` map: ``M_fg`` and ``M_bg``, ``(N, 1, h, w)`` float32."""
    h, w = map_size
    ys = torch.arange(h, device=device, dtype=torch.float32)
    xs = torch.arange(w, device=device, dtype=torch.float32)
    fg, bg = [], []
    for boxes in gt.boxes:
        boxes = boxes.to(device)
        if boxes.numel():
            y0, y1, x0, x1 = box_cells(boxes, gt.input_size, map_size)
            inside = (((ys >= y0[:, None]) & (ys < y1[:, None]))[:, :, None]
                      & ((xs >= x0[:, None]) & (xs < x1[:, None]))[:, None, :])  # (k, h, w)
            area = ((y1 - y0) * (x1 - x0))[:, None, None]
            m_fg = (inside / area).amax(dim=0)
            background = ~inside.any(dim=0)
        else:
            m_fg = torch.zeros(h, w, device=device)
            background = torch.ones(h, w, dtype=torch.bool, device=device)
        fg.append(m_fg)
        bg.append(background.float() / background.sum().clamp_min(1))
    return torch.stack(fg)[:, None], torch.stack(bg)[:, None]


def position_weights(gt: GroundTruthBoxes, map_size: Tuple[int, int], channels: int,
                     foreground_weight: float, background_weight: float,
                     device=None) -> torch.Tensor:
    """``W``, ``(N, 1, h, w)``: ``Σ W · loss_elementwise`` over ``(N, C, h, w)`` is
    ``foreground_weight · fg + background_weight · bg`` (module docstring), with
    the mean over ``channels`` folded in."""
    m_fg, m_bg = foreground_masks(gt, map_size, device)
    weights = background_weight * m_bg / m_bg.sum().clamp_min(1e-12)
    if m_fg.sum() > 0:
        weights = weights + foreground_weight * m_fg / m_fg.sum()
    return weights / channels
