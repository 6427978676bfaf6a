"""Foreground weighting (FGD's 1/area mask) and per-image standardisation."""
import copy
import json

import numpy as np
import pytest
import torch

from helpers import detection_batch
from vkd_mmdet.models.blockwise_compare import block_count
from vkd_mmdet.models.tap_plan import tap_channels
from vkd_mmdet.models import VkDDistiller, VkDLoss
from vkd_mmdet.models.feature_norm import standardize, standardize_per_image
from vkd_mmdet.models.taps import parse_taps
from vkd_mmdet.models.foreground_weights import GroundTruthBoxes, foreground_masks


def hand_built():
    """One 32x32 image, a 4x4 map (stride 8): box A covers cells y0-1, x0-1 (area 4),
    box B, inside A, cell (1, 1) (area 1); a second image has no box."""
    boxes = [torch.tensor([[0., 0., 16., 16.], [9., 9., 15., 15.]]), torch.zeros(0, 4)]
    return GroundTruthBoxes(boxes, (32, 32))


def test_masks_give_every_box_the_same_weight_the_smaller_box_deciding_overlaps():
    m_fg, m_bg = foreground_masks(hand_built(), (4, 4))
    want_fg = torch.zeros(2, 1, 4, 4)
    want_fg[0, 0, :2, :2] = 0.25
    want_fg[0, 0, 1, 1] = 1.0  # box B's one cell: 1/1 beats A's 1/4
    torch.testing.assert_close(m_fg, want_fg)
    want_bg = torch.full((2, 1, 4, 4), 1 / 16)
    want_bg[0] = 1 / 12
    want_bg[0, 0, :2, :2] = 0
    torch.testing.assert_close(m_bg, want_bg)


@pytest.mark.parametrize('norm', ['none', 'standardize'])
@pytest.mark.parametrize('chunk_elements', [None, 40])
def test_the_weighted_loss_equals_the_formula(norm, chunk_elements):
    torch.manual_seed(0)
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    teacher = torch.randn(2, 3, 4, 4)
    loss = VkDLoss(3, 3, projection='none', norm=norm, loss='mse', loss_weight=2.0,
                   foreground_weight=1.5, background_weight=0.5, chunk_elements=chunk_elements)
    got = loss(student, teacher, boxes=hand_built())
    if chunk_elements:
        assert block_count(loss, student, teacher) == 2
    # by hand: normalisation over all positions, then per-position error, channel mean
    s, t = (standardize(student), standardize(teacher)) if norm == 'standardize' \
        else (student, teacher)
    err = ((s - t) ** 2).mean(dim=1)  # (2, 4, 4)
    box_a = (err[0, :2, :2].sum() - err[0, 1, 1]) * 0.25 + err[0, 1, 1] * 1.0
    fg_sum = 3 * 0.25 + 1.0
    fg = box_a / fg_sum
    bg_0 = (err[0].sum() - err[0, :2, :2].sum()) / 12
    bg_1 = err[1].mean()
    bg = (bg_0 + bg_1) / 2
    want = 2.0 * (1.5 * fg + 0.5 * bg)
    torch.testing.assert_close(got, want)
    grad, = torch.autograd.grad(got, student)
    want_grad, = torch.autograd.grad(want, student)
    torch.testing.assert_close(grad, want_grad)


def test_a_batch_without_boxes_keeps_the_background_term():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    loss = VkDLoss(3, 3, projection='none', norm='none', loss='l1',
                   foreground_weight=1.0, background_weight=0.5)
    empty = GroundTruthBoxes([torch.zeros(0, 4)] * 2, (32, 32))
    torch.testing.assert_close(loss(student, teacher, boxes=empty),
                               0.5 * (student - teacher).abs().mean())
    with pytest.raises(ValueError, match='no ground-truth boxes were passed'):
        loss(student, teacher)
    with pytest.raises(ValueError, match='does not apply to features with channel_dim'):
        VkDLoss(3, 3, foreground_weight=1.0, channel_dim=-1)


def _write_set(tmp_path):
    """Two images of different sizes, white boxes on black, in COCO format."""
    import cv2
    images, anns = [], []
    layouts = [((90, 140), [[10, 20, 30, 25], [100, 5, 20, 60]]),
               ((120, 70), [[5, 70, 40, 30]])]
    for i, ((h, w), boxes) in enumerate(layouts):
        img = np.zeros((h, w, 3), np.uint8)
        for x, y, bw, bh in boxes:
            img[y:y + bh, x:x + bw] = 255
            anns.append(dict(id=len(anns), image_id=i, category_id=0, bbox=[x, y, bw, bh],
                             area=bw * bh, iscrowd=0))
        cv2.imwrite(str(tmp_path / f'{i}.png'), img)
        images.append(dict(id=i, file_name=f'{i}.png', height=h, width=w))
    (tmp_path / 'ann.json').write_text(json.dumps(dict(
        images=images, annotations=anns, categories=[dict(id=0, name='box')])))


@pytest.mark.parametrize('pipeline', ['resize_flip_pad', 'mosaic'])
def test_masks_sit_on_the_boxes_after_a_real_pipeline(tmp_path, pipeline):
    """Through mmdet's transforms and batch padding, the foreground cells are where
    the preprocessed images are white: the boxes are read in the padded input's frame."""
    from mmengine.dataset import pseudo_collate
    from mmdet.registry import DATASETS, MODELS
    _write_set(tmp_path)
    load = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True)]
    dataset = dict(type='CocoDataset', data_root=str(tmp_path), ann_file='ann.json',
                   data_prefix=dict(img=''), metainfo=dict(classes=('box', )),
                   filter_cfg=dict(filter_empty_gt=False))
    if pipeline == 'mosaic':
        # (img_scale (w, h) fits both images unscaled: no interpolated edges)
        dataset = dict(type='MultiImageMixDataset', dataset=dict(dataset, pipeline=load),
                       pipeline=[dict(type='Mosaic', img_scale=(140, 120), pad_val=0.0,
                                      center_ratio_range=(0.8, 1.2), prob=1.0),
                                 dict(type='RandomFlip', prob=1.0),
                                 dict(type='PackDetInputs')])
    else:
        dataset['pipeline'] = load + [dict(type='Resize', scale=(100, 100), keep_ratio=True),
                                      dict(type='RandomFlip', prob=1.0, direction='horizontal'),
                                      dict(type='PackDetInputs')]
    dataset = DATASETS.build(dataset)
    preprocessor = MODELS.build(dict(type='DetDataPreprocessor', mean=[0.] * 3, std=[1.] * 3,
                                     pad_size_divisor=32, pad_value=0))
    np.random.seed(0)
    batch = preprocessor(pseudo_collate([dataset[0], dataset[1]]), True)
    inputs, samples = batch['inputs'], batch['data_samples']
    if pipeline == 'resize_flip_pad':
        # 64x100 and 100x58 after the resize, both padded to 128x128
        assert [s.img_shape for s in samples] == [(64, 100), (100, 58)]
        assert inputs.shape[-2:] == (128, 128)
    stride = 8
    h, w = inputs.shape[-2] // stride, inputs.shape[-1] // stride
    m_fg, _ = foreground_masks(GroundTruthBoxes.from_samples(samples, inputs.shape[-2:]), (h, w))
    white = inputs.mean(1).gt(127).float()  # (N, H, W)
    cells_white = torch.nn.functional.max_pool2d(white[:, None], stride)  # any white pixel
    assert cells_white.sum() > 8
    assert torch.equal(m_fg > 0, cells_white > 0)


def test_per_image_standardisation_uses_each_images_own_statistics():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 6) * torch.tensor([1., 2., 3.])[:, None, None, None] + 2
    got = standardize_per_image(x)
    for n in range(3):
        torch.testing.assert_close(got[n:n + 1], standardize(x[n:n + 1]), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, standardize(x), atol=1e-2)
    tokens = x.flatten(2).transpose(1, 2)  # (N, L, C)
    torch.testing.assert_close(standardize_per_image(tokens, -1),
                               got.flatten(2).transpose(1, 2), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(standardize_per_image(x[:, :, :1, :1]), torch.zeros(3, 4, 1, 1))
    with pytest.raises(ValueError, match='have no positions per image'):
        standardize_per_image(torch.randn(4, 8), -1)


def test_per_image_standardisation_in_blocks_equals_whole():
    torch.manual_seed(0)
    student = torch.randn(4, 3, 6, 6, requires_grad=True)
    teacher = torch.randn(4, 5, 6, 6)
    whole = VkDLoss(3, 5, norm='standardize_image', chunk_elements=None)
    blocks = VkDLoss(3, 5, norm='standardize_image', chunk_elements=200)
    blocks.load_state_dict(whole.state_dict())
    assert block_count(blocks, student, teacher) > 1
    a, b = whole(student, teacher), blocks(student, teacher)
    torch.testing.assert_close(a, b)
    ga, = torch.autograd.grad(a, student)
    gb, = torch.autograd.grad(b, student)
    torch.testing.assert_close(ga, gb)


def test_the_distiller_weights_a_tap_by_the_batchs_boxes(small_pair):
    student, teacher = small_pair
    fg = dict(foreground_weight=1.0, background_weight=0.5)
    model = VkDDistiller(student=copy.deepcopy(student), teacher=copy.deepcopy(teacher),
                         taps=[dict(module='neck[0]', **fg)], probe_size=(128, 128)).train()
    inputs, samples = detection_batch(model)
    losses = model.loss(inputs, samples)
    with torch.no_grad():
        s = model.student.extract_feat(inputs)[0]
        t = model.teacher.extract_feat(inputs)[0]
        want = model.distill_losses['neck'][0](
            s, t, boxes=GroundTruthBoxes.from_samples(samples, inputs.shape[-2:]))
        uniform = copy.deepcopy(model.distill_losses['neck'][0])
        uniform.foreground_weight = None
        assert not torch.allclose(want, uniform(s, t))
    torch.testing.assert_close(losses['loss_vkd_neck'], want)
    # tokens (a DETR's (N, queries, C)) have no positions to weight
    spec = parse_taps([dict(module='decoder', **fg)])[0]
    with pytest.raises(ValueError, match=r"VkD tap 'decoder': foreground_weight weights the "
                                         r"positions of \(N, C, H, W\) maps .* \[\(1, 10, 8\)\]"):
        tap_channels(spec, [torch.zeros(1, 10, 8)], [torch.zeros(1, 10, 16)])
