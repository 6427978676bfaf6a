"""VkDDistiller on small real mmdet detectors: structure, losses, taps, errors."""
import copy

import pytest
import torch

from helpers import detection_batch
from vkd_mmdet.checkpoint import CheckpointError
from vkd_mmdet.errors import TapError
from vkd_mmdet.models import VkDDistiller
from vkd_mmdet.models.feature_recorder import CallSequence
from vkd_mmdet.models.taps import feature_levels


def build(small_pair, tmp_path=None, **kwargs):
    student, teacher = small_pair
    kwargs.setdefault('taps', ['neck'])
    return VkDDistiller(student=copy.deepcopy(student), teacher=copy.deepcopy(teacher),
                        probe_size=(128, 128), **kwargs)


def test_teacher_is_frozen_outside_params_state_dict_and_train_mode(small_pair):
    model = build(small_pair)
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    assert not teacher_ids & {id(p) for p in model.parameters()}
    assert not any(k.startswith('teacher') for k in model.state_dict())
    assert all(k.startswith(('student.', 'distill_losses.')) for k in model.state_dict())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    model.train()
    assert model.student.training and not model.teacher.training
    bn = [m for m in model.teacher.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and not any(m.training for m in bn)
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    model.init_weights()
    after = model.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    model.to(torch.float64)  # _apply reaches the teacher too
    assert next(model.teacher.parameters()).dtype == torch.float64


def test_channels_come_from_the_models(small_pair):
    model = build(small_pair, taps=['backbone', 'neck'])
    shapes = {name: (p.in_channels, p.out_channels) for name, p in model.projectors().items()}
    assert shapes == {
        'backbone.0': (64, 256), 'backbone.1': (128, 512), 'backbone.2': (256, 1024),
        'backbone.3': (512, 2048), 'neck.0': (64, 128), 'neck.1': (64, 128),
        'neck.2': (64, 128), 'neck.3': (64, 128), 'neck.4': (64, 128)}
    for proj in model.projectors().values():
        assert proj.orthogonality_error() < 1e-5
        assert proj.scale is None  # cancelled by standardisation: not created


def test_loss_has_student_and_vkd_entries_and_gradients_flow(small_pair):
    model = build(small_pair, taps=['backbone[3]', 'neck'])
    model.train()
    inputs, samples = detection_batch(model)
    losses = model.loss(inputs, samples)
    assert {'loss_cls', 'loss_bbox', 'loss_vkd_backbone', 'loss_vkd_neck'} <= set(losses)
    total = sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items() if 'loss' in k)
    total.backward()
    for name, p in model.named_parameters():
        if name.startswith('distill_losses'):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.student.backbone.layer4[0].conv1.weight.grad.abs().sum() > 0


def test_student_and_teacher_see_the_same_preprocessed_tensor(small_pair):
    model = build(small_pair)
    seen = {}

    def remember(key):
        def hook(module, args, output):
            seen[key] = args[0]
        return hook

    model.teacher.backbone.register_forward_hook(remember('t'))
    model.student.backbone.register_forward_hook(remember('s'))
    model.train()
    inputs, samples = detection_batch(model)
    model.loss(inputs, samples)
    assert seen['t'] is seen['s'] or torch.equal(seen['t'], seen['s'])


def test_teacher_runs_only_as_far_as_the_deepest_tap(small_pair):
    model = build(small_pair, taps=['backbone'])
    calls = []
    model.teacher.neck.register_forward_hook(lambda *a: calls.append('neck'))
    model.teacher.bbox_head.register_forward_hook(lambda *a: calls.append('head'))
    model.train()
    inputs, samples = detection_batch(model)
    model.loss(inputs, samples)
    assert calls == []


def test_predict_is_the_students(small_pair):
    model = build(small_pair).eval()
    inputs, samples = detection_batch(model)
    with torch.no_grad():
        ours = model.predict(inputs, copy.deepcopy(samples))
        students = model.student.predict(inputs, copy.deepcopy(samples))
        teachers = model.teacher.predict(inputs, copy.deepcopy(samples))
    assert len(ours) == len(students) == len(inputs)
    for a, b, t in zip(ours, students, teachers):
        assert len(a.pred_instances) > 0
        torch.testing.assert_close(a.pred_instances.bboxes, b.pred_instances.bboxes)
        torch.testing.assert_close(a.pred_instances.scores, b.pred_instances.scores)
        assert torch.equal(a.pred_instances.labels, b.pred_instances.labels)
        # The comparison can tell the two models apart.
        assert a.pred_instances.scores.shape != t.pred_instances.scores.shape or \
            not torch.allclose(a.pred_instances.scores, t.pred_instances.scores)


def test_the_distillation_term_alone_trains_the_student(small_pair):
    model = build(small_pair, taps=['backbone[3]', 'neck'])
    model.train()
    inputs, samples = detection_batch(model)
    losses = model.loss(inputs, samples)
    (losses['loss_vkd_neck'] + losses['loss_vkd_backbone']).backward()
    student = dict(model.student.named_parameters())
    # The neck tap reaches the neck and, through it, the backbone; not the head.
    for name in ('neck.fpn_convs.0.conv.weight', 'neck.lateral_convs.2.conv.weight',
                 'backbone.layer4.1.conv2.weight', 'backbone.layer2.0.conv1.weight'):
        assert student[name].grad is not None and student[name].grad.abs().sum() > 0, name
    assert all(p.grad is None for n, p in student.items() if n.startswith('bbox_head'))
    for name, p in model.distill_losses.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name

    model.zero_grad(set_to_none=True)
    model.distill_weight = 0.0
    losses = model.loss(inputs, samples)
    (losses['loss_vkd_neck'] + losses['loss_vkd_backbone']).backward()
    assert all(p.grad is None or not p.grad.any() for p in model.student.parameters())


def test_weight_zero_skips_teacher_and_keeps_projectors_in_graph(small_pair):
    model = build(small_pair)
    model.distill_weight = 0.0
    calls = []
    model.teacher.backbone.register_forward_hook(lambda *a: calls.append(1))
    model.train()
    losses = model.loss(*detection_batch(model))
    assert calls == [] and losses['loss_vkd_neck'].item() == 0.0
    losses['loss_vkd_neck'].backward()
    assert all(p.grad is not None for p in model.distill_losses.parameters())


def test_unknown_tap_lists_available_modules(small_pair):
    with pytest.raises(TapError, match=r"no module 'nek'.*Top-level modules: \[.*'backbone', 'neck', 'bbox_head'\].*Closest names: \['neck'\]"):
        build(small_pair, taps=['nek'])
    with pytest.raises(TapError, match="Closest names"):
        build(small_pair, taps=['backbone.layer9'])


def test_level_count_mismatch_and_non_feature_taps_fail_clearly(small_pair):
    # Strides pair the levels: student P3..P5 <- teacher C3..C5 (C2 and P6, P7 unused).
    model = build(small_pair, taps=[dict(name='cross', student='neck', teacher='backbone')])
    pairing = model.level_pairings['cross']
    assert (pairing.student, pairing.teacher, pairing.how) == ([0, 1, 2], [1, 2, 3], 'stride')
    assert len(model.distill_losses['cross']) == 3
    with pytest.raises(ValueError, match=r"no stride is on both sides \(student levels \[3, 4\] "
                                         r"have strides \[64, 128\], teacher levels \[0, 1, 2, 3\] "
                                         r"have \[4, 8, 16, 32\]\).*teacher_levels"):
        build(small_pair, taps=[dict(student='neck[3,4]', teacher='backbone')])
    # Explicit levels are kept as given.
    model = build(small_pair, taps=[dict(name='cross', student='neck', teacher='backbone',
                                         student_levels=[0, 1], teacher_levels=[2, 3])])
    assert (model.level_pairings['cross'].teacher, len(model.distill_losses['cross'])) == ([2, 3], 2)
    with pytest.raises(ValueError, match=r'student_levels \[0, 1\] and teacher_levels \[2\] differ'):
        build(small_pair, taps=[dict(student='neck', teacher='backbone',
                                     student_levels=[0, 1], teacher_levels=[2])])
    # A module called once per level must give a map per call.
    with pytest.raises(TapError, match=r"'bbox_head.x' runs 2 times per forward pass, and "
                                        r"call 1 returns a tuple of \(Tensor\)"):
        feature_levels(CallSequence([torch.zeros(1), (torch.zeros(1), )]), 'bbox_head.x', 'student')
    # The loss modules run in `loss` only, not in the forward pass the teacher runs.
    with pytest.raises(TapError, match=r"\['bbox_head.loss_cls'\] did not run"):
        build(small_pair, taps=['bbox_head.loss_cls'])
    with pytest.raises(TapError, match="returns a dict, not a feature map"):
        feature_levels({'a': torch.zeros(1)}, 'x', 'student')
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['wieght'\]"):
        build(small_pair, taps=[dict(module='neck', wieght=2.0)])


def test_teacher_checkpoint_mismatch_fails_with_counts(small_pair, tmp_path):
    student, teacher = small_pair
    other = copy.deepcopy(student)  # an R18 checkpoint for an R50 teacher
    from mmdet.registry import MODELS
    ckpt = tmp_path / 'wrong.pth'
    torch.save({'state_dict': MODELS.build(other).state_dict()}, ckpt)
    with pytest.raises(CheckpointError, match=r'\d+ missing keys .* \d+ unexpected keys'):
        build(small_pair, teacher_ckpt=str(ckpt))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        build(small_pair, teacher_ckpt=str(tmp_path / 'nope.pth'))


def test_level_reduction_mean_divides_the_tap_sum_by_its_level_count(small_pair):
    summed = build(small_pair, tap_defaults=dict(level_reduction='sum'))
    averaged = build(small_pair)  # 'mean' is the default
    averaged.load_state_dict(summed.state_dict())
    averaged.teacher.load_state_dict(summed.teacher.state_dict())  # not in state_dict()
    summed.train()
    averaged.train()
    inputs, samples = detection_batch(summed)
    torch.manual_seed(0)
    a = summed.loss(inputs, samples)['loss_vkd_neck']
    torch.manual_seed(0)
    b = averaged.loss(inputs, samples)['loss_vkd_neck']
    assert len(summed.distill_losses['neck']) == 5
    torch.testing.assert_close(b, a / 5)
    with pytest.raises(ValueError, match="level_reduction='max'"):
        build(small_pair, taps=[dict(module='neck', level_reduction='max')])


@pytest.mark.parametrize('bad', [-1.0, float('nan'), float('inf'), 'heavy'])
def test_bad_loss_weights_and_empty_taps_fail_at_build(small_pair, bad):
    from vkd_mmdet.models import VkDLoss
    with pytest.raises(ValueError, match=r"VkD tap #0 .*loss_weight=.*(finite number >= 0|not a number)"):
        build(small_pair, taps=[dict(module='neck', loss_weight=bad)])
    with pytest.raises(ValueError, match=r'VkD tap_defaults: loss_weight=.*(finite|not a number)'):
        build(small_pair, tap_defaults=dict(loss_weight=bad))
    with pytest.raises(ValueError, match='VkDLoss: loss_weight='):
        VkDLoss(8, 8, loss_weight=bad)
    with pytest.raises(ValueError, match=r'taps is empty, so nothing would be distilled'):
        build(small_pair, taps=[])
    assert build(small_pair, tap_defaults=dict(loss_weight=0)).distill_losses['neck'][0].loss_weight == 0


def test_fpns_covering_different_levels_are_paired_by_stride(small_pair):
    """A P2-P6 teacher (as mmdet's ConvNeXt or Mask R-CNN necks) and a P3-P7
    student: P3-P6 meet their namesakes; nothing is resized."""
    student, teacher = copy.deepcopy(small_pair)
    teacher['neck'].update(start_level=0, in_channels=[256, 512, 1024, 2048], num_outs=5,
                           add_extra_convs='on_output')
    model = VkDDistiller(student=student, teacher=teacher, probe_size=(128, 128))
    pairing = model.level_pairings['neck']
    assert pairing.student_strides == [8, 16, 32, 64, 128]
    assert pairing.teacher_strides == [4, 8, 16, 32, 64]
    assert (pairing.student, pairing.teacher) == ([0, 1, 2, 3], [1, 2, 3, 4])
    assert 'unused strides: student [128], teacher [4]' in pairing.describe()
    model.train()
    sizes = []
    for loss in model.distill_losses['neck']:
        loss.register_forward_pre_hook(lambda m, args: sizes.append(
            (tuple(args[0].shape[-2:]), tuple(args[1].shape[-2:]))))
    model.loss(*detection_batch(model, size=128))
    assert sizes == [((16, 16), (16, 16)), ((8, 8), (8, 8)), ((4, 4), (4, 4)), ((2, 2), (2, 2))]


def test_a_coco_teacher_distils_into_a_student_with_other_classes(small_pair):
    """The usual case: an 80-class COCO teacher, a 3-class student. Feature taps
    do not depend on the heads, so it builds and trains."""
    student, teacher = copy.deepcopy(small_pair)
    student['bbox_head']['num_classes'] = 3
    model = VkDDistiller(student=student, teacher=teacher, probe_size=(128, 128)).train()
    inputs, samples = detection_batch(model)
    for sample in samples:
        sample.gt_instances.labels %= 3
    losses = model.loss(inputs, samples)
    assert model.teacher.bbox_head.num_classes == 80 and model.student.bbox_head.num_classes == 3
    assert losses['loss_vkd_neck'].item() > 0 and all(torch.isfinite(v).all() for v in losses['loss_cls'])


def test_hooks_and_tools_that_reach_into_the_detector_find_the_students_parts(small_pair):
    """YOLOX's mode switch sets `model.bbox_head.use_l1`; SetEpochInfoHook calls
    `model.set_epoch`; tools read `model.backbone`: they get the student's."""
    model = build(small_pair)
    assert model.bbox_head is model.student.bbox_head
    assert model.backbone is model.student.backbone and model.neck is model.student.neck
    model.bbox_head.use_l1 = True
    assert model.student.bbox_head.use_l1 is True
    assert model.with_neck and model.with_bbox
    model.student.set_epoch = lambda epoch: setattr(model.student, 'epoch', epoch)
    model.set_epoch(3)
    assert model.student.epoch == 3
    # the distiller's own attributes stay its own
    assert model.teacher is not model.student and model.data_preprocessor is model.student.data_preprocessor
    with pytest.raises(AttributeError, match=r"no attribute 'roi_head', nor has its student "
                                             r"\(RetinaNet\)"):
        model.roi_head


def test_a_zero_term_for_a_tap_without_parameters_is_made_on_the_batchs_device():
    from vkd_mmdet.models.tap_losses import TapLosses
    zero = TapLosses([torch.nn.Identity()], 'mean').zero(torch.device('meta'))
    assert zero.device.type == 'meta' and zero.dim() == 0
