"""What the README promises about taps and their options, checked on real models."""
import copy
import logging

import pytest
import torch
import torch.nn.functional as F

from helpers import detection_batch
from vkd_mmdet.models import OrthogonalProjector, VkDDistiller, VkDLoss, normalize
from vkd_mmdet.models.taps import parse_taps


def build(small_pair, **kwargs):
    student, teacher = small_pair
    return VkDDistiller(student=copy.deepcopy(student), teacher=copy.deepcopy(teacher),
                        probe_size=(128, 128), **kwargs)


def test_defaults_are_the_official_detection_setting_averaged_over_levels(small_pair):
    spec, = parse_taps(['neck'])
    assert spec.level_reduction == 'mean'
    model = build(small_pair)  # taps default: every FPN level
    assert list(model.distill_losses) == ['neck']
    losses = model.distill_losses['neck']
    assert len(losses) == 5
    for loss in losses:
        assert (loss.loss_weight, loss.norm, loss.norm_side, loss.loss_name, loss.align) == \
            (4.0, 'standardize', 'both', 'smooth_l1', 'student_to_teacher')
        assert isinstance(loss.projector, OrthogonalProjector)
        assert loss.projector.orthogonal_map == 'qr' and loss.projector.scale is None
    # The value is that recipe: 4 * smooth-L1 of the standardised sides, per level.
    s, t = torch.randn(2, 64, 8, 8), torch.randn(2, 128, 8, 8)
    first = losses[0]
    expected = 4.0 * F.smooth_l1_loss(normalize(first.projector(s), 'standardize'),
                                      normalize(t, 'standardize'))
    torch.testing.assert_close(first(s, t), expected)


def test_level_indices_and_dotted_paths(small_pair):
    model = build(small_pair, taps=['neck[0,2,4]', 'backbone.layer4', 'backbone.layer3.1.conv2'])
    assert list(model.distill_losses) == ['neck', 'backbone_layer4', 'backbone_layer3_1_conv2']
    assert len(model.distill_losses['neck']) == 3
    shapes = {k: (p.in_channels, p.out_channels) for k, p in model.projectors().items()}
    assert shapes == {'neck.0': (64, 128), 'neck.1': (64, 128), 'neck.2': (64, 128),
                      'backbone_layer4.0': (512, 2048), 'backbone_layer3_1_conv2.0': (256, 256)}
    seen = {}
    model.student.neck.register_forward_hook(lambda m, a, out: seen.update(neck=out))
    model.train()
    inputs, samples = detection_batch(model)
    # Level 2 of the tap is the neck's output 4: the projector sees that map's size.
    sizes = []
    handle = model.distill_losses['neck'][2].register_forward_pre_hook(
        lambda m, args: sizes.append(args[0].shape))
    losses = model.loss(inputs, samples)
    handle.remove()
    assert sizes == [seen['neck'][4].shape]
    for key in ('loss_vkd_neck', 'loss_vkd_backbone_layer4', 'loss_vkd_backbone_layer3_1_conv2'):
        assert losses[key].item() > 0


def test_per_tap_loss_weight_scales_only_that_tap(small_pair):
    a = build(small_pair, taps=['neck', 'backbone[3]'])
    b = build(small_pair, taps=[dict(module='neck', loss_weight=2.0), 'backbone[3]'])
    b.load_state_dict(a.state_dict())
    b.teacher.load_state_dict(a.teacher.state_dict())
    a.train(), b.train()
    inputs, samples = detection_batch(a)
    la, lb = a.loss(inputs, samples), b.loss(inputs, samples)
    torch.testing.assert_close(lb['loss_vkd_neck'], la['loss_vkd_neck'] / 2)
    torch.testing.assert_close(lb['loss_vkd_backbone'], la['loss_vkd_backbone'])


def test_linear_projection_is_an_unconstrained_1x1_conv_that_learns(small_pair):
    model = build(small_pair, tap_defaults=dict(projection='linear'))
    proj = model.distill_losses['neck'][0].projector
    assert isinstance(proj, torch.nn.Conv2d) and proj.kernel_size == (1, 1)
    assert (proj.in_channels, proj.out_channels) == (64, 128)
    model.train()
    model.loss(*detection_batch(model))['loss_vkd_neck'].backward()
    assert proj.weight.grad.abs().sum() > 0


def test_align_teacher_to_student_resizes_the_teacher():
    torch.manual_seed(0)
    s, t = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 10, 10)
    down = VkDLoss(8, 8, align='teacher_to_student', projection='none')
    up = VkDLoss(8, 8, projection='none')  # default: student_to_teacher
    t_small = F.interpolate(t, size=(5, 5), mode='bilinear', align_corners=False)
    s_big = F.interpolate(s, size=(10, 10), mode='bilinear', align_corners=False)
    torch.testing.assert_close(down(s, t), up(s, t_small))
    torch.testing.assert_close(up(s, t), down(s_big, t))
    assert not torch.allclose(down(s, t), up(s, t))


def test_norm_side_student_standardises_the_student_only():
    torch.manual_seed(0)
    s, t = torch.randn(2, 8, 4, 4) * 3 + 1, torch.randn(2, 8, 4, 4) * 5 - 2
    loss = VkDLoss(8, 8, norm_side='student', projection='none', loss_weight=1.0)
    expected = F.smooth_l1_loss(normalize(s, 'standardize'), t)
    torch.testing.assert_close(loss(s, t), expected)
    both = VkDLoss(8, 8, projection='none', loss_weight=1.0)
    assert not torch.allclose(both(s, t), expected)


def test_different_data_preprocessors_are_warned_about(small_pair):
    from mmengine.logging import MMLogger
    student, teacher = copy.deepcopy(small_pair)
    teacher['data_preprocessor'] = dict(teacher['data_preprocessor'], mean=[103.53, 116.28, 123.675],
                                        std=[1.0, 1.0, 1.0], bgr_to_rgb=False)
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Collect()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        VkDDistiller(student=student, teacher=teacher, probe_size=(64, 64))
        same = [r for r in records if 'data_preprocessors differ' in r]
        records.clear()
        VkDDistiller(student=student, teacher=copy.deepcopy(student), probe_size=(64, 64))
    finally:
        logger.removeHandler(handler)
    assert len(same) == 1 and "'std'" in same[0] and "'bgr_to_rgb': (True, False)" in same[0]
    assert not any('data_preprocessors differ' in r for r in records)


def deformable_detr():
    from mmengine.hub import get_config
    model = get_config('mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py').model
    model.backbone.init_cfg = None
    return model.to_dict()


def test_a_detr_decoder_tap_says_where_its_channels_are():
    """A DETR decoder's queries, stacked as (layers, N, queries, C), distilled row by row."""
    # Seeded: from some random initial weights the student's own Hungarian matching
    # meets a non-finite cost (mmdet raises 'matrix contains invalid numeric entries'),
    # which made this test fail about one run in four, depending on the tests before it.
    torch.manual_seed(0)
    student, teacher = deformable_detr(), deformable_detr()
    with pytest.raises(ValueError, match=r"stacked tokens, e.g. a DETR decoder's "
                                         r"\(layers, N, queries, C\).*channel_dim=-1"):
        VkDDistiller(student=copy.deepcopy(student), teacher=copy.deepcopy(teacher),
                     taps=['decoder[0]'], probe_size=(128, 128))
    model = VkDDistiller(student=student, teacher=teacher, probe_size=(128, 128),
                         taps=[dict(module='decoder[0]', channel_dim=-1)]).train()
    proj = model.distill_losses['decoder'][0].projector
    assert (proj.in_channels, proj.out_channels) == (256, 256)
    seen = []
    model.distill_losses['decoder'][0].register_forward_pre_hook(
        lambda m, args: seen.append((tuple(args[0].shape), tuple(args[1].shape))))
    inputs, samples = detection_batch(model, n=2, size=128)
    losses = model.loss(inputs, samples)
    # 6 decoder layers x 2 images x 300 queries x 256 channels on both sides.
    assert seen == [((6, 2, 300, 256), (6, 2, 300, 256))]
    losses['loss_vkd_decoder'].backward()
    grad = model.student.decoder.layers[0].ffn.layers[0][0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # The same rows as flattening by hand: (6 * 2 * 300, 256).
    s, t = torch.randn(6, 2, 300, 256), torch.randn(6, 2, 300, 256)
    loss = model.distill_losses['decoder'][0]
    torch.testing.assert_close(loss(s, t), loss(s.reshape(-1, 256), t.reshape(-1, 256)))
