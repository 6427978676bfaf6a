"""Taps on dense-head towers: a module called once per FPN level, or one per level."""
import copy

import pytest
import torch
from mmengine.hub import get_config

from helpers import ROOT, detection_batch, load_tool, small_retinanet
from vkd_mmdet.models import VkDDistiller
from vkd_mmdet.models.taps import feature_levels


def build(student, teacher, taps, **kwargs):
    return VkDDistiller(student=copy.deepcopy(student), teacher=copy.deepcopy(teacher),
                        taps=taps, probe_size=(128, 128), **kwargs)


@pytest.fixture(scope='module')
def retina_pair():
    """A 2-conv 64-channel head against a 4-conv 128-channel one (the benchmark's shape)."""
    return (small_retinanet(18, fpn=64, stacked_convs=2),
            small_retinanet(50, fpn=128, stacked_convs=4))


def tower_outputs(detector, inputs, branch='cls_convs'):
    """The head tower's output per FPN level, computed by hand."""
    outs = []
    for x in detector.extract_feat(inputs):
        for layer in getattr(detector.bbox_head, branch):
            x = layer(x)
        outs.append(x)
    return outs


def test_a_tower_shared_by_all_levels_gives_one_level_per_call_in_level_order(retina_pair):
    model = build(*retina_pair, taps=['bbox_head.cls_convs'])
    # a ModuleList tower is recorded at its last layer: 2 convs against 4
    assert model.student_recorder.sources['bbox_head.cls_convs'] == ['bbox_head.cls_convs.1']
    assert model.teacher_recorder.sources['bbox_head.cls_convs'] == ['bbox_head.cls_convs.3']
    pairing = model.level_pairings['bbox_head_cls_convs']
    assert pairing.student_strides == pairing.teacher_strides == [8, 16, 32, 64, 128]
    assert (pairing.student, pairing.teacher) == ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
    assert [(l.student_channels, l.teacher_channels)
            for l in model.distill_losses['bbox_head_cls_convs']] == [(64, 128)] * 5

    model.eval()
    inputs, _ = detection_batch(model)
    with torch.no_grad():
        with model.student_recorder.record() as s_out:
            model.student._forward(inputs)
        s_feats = feature_levels(s_out['bbox_head.cls_convs'], 'bbox_head.cls_convs', 'student')
        expected = tower_outputs(model.student, inputs)
    assert len(s_feats) == 5
    for got, want in zip(s_feats, expected):
        torch.testing.assert_close(got, want)


def test_a_head_tap_trains_the_tower_and_runs_the_teacher_head_only_as_far_as_needed(retina_pair):
    model = build(*retina_pair, taps=['bbox_head.cls_convs'])
    teacher_calls = dict(tower=0, predictor=0)
    # (a pre-hook: the recorder's own hook ends the pass right after the last call)
    model.teacher.bbox_head.cls_convs[3].register_forward_pre_hook(
        lambda *a: teacher_calls.__setitem__('tower', teacher_calls['tower'] + 1))
    model.teacher.bbox_head.retina_cls.register_forward_hook(
        lambda *a: teacher_calls.__setitem__('predictor', teacher_calls['predictor'] + 1))
    model.train()
    inputs, samples = detection_batch(model)
    losses = model.loss(inputs, samples)
    # all 5 levels of the tower ran; the pass stopped after the last one, before the
    # last level's classifier
    assert teacher_calls == dict(tower=5, predictor=4)
    losses['loss_vkd_bbox_head_cls_convs'].backward()
    student = dict(model.student.named_parameters())
    for name in ('bbox_head.cls_convs.1.conv.weight', 'bbox_head.cls_convs.0.conv.weight',
                 'neck.fpn_convs.0.conv.weight', 'backbone.layer4.1.conv2.weight'):
        assert student[name].grad is not None and student[name].grad.abs().sum() > 0, name
    # the regression tower and both predictors are not on the tap's path
    assert all(p.grad is None for n, p in student.items()
               if n.startswith(('bbox_head.reg_convs', 'bbox_head.retina_')))


def test_head_and_neck_taps_together(retina_pair):
    model = build(*retina_pair, taps=['neck', 'bbox_head.cls_convs', 'bbox_head.reg_convs'])
    model.train()
    losses = model.loss(*detection_batch(model))
    for key in ('loss_vkd_neck', 'loss_vkd_bbox_head_cls_convs', 'loss_vkd_bbox_head_reg_convs'):
        assert torch.isfinite(losses[key]) and losses[key] > 0, key
    # a level index picks one call; a layer path records that layer
    model = build(*retina_pair, taps=[dict(name='p3', student='bbox_head.cls_convs[0]',
                                           teacher='bbox_head.cls_convs.1[0]')])
    assert model.teacher_recorder.sources['bbox_head.cls_convs.1'] == ['bbox_head.cls_convs.1']
    assert model.level_pairings['p3'].student_strides[0] == 8
    assert len(model.distill_losses['p3']) == 1


def _small(cfg_name, **bbox_head):
    """A stock mmdet config with a ResNet-18, randomly initialised."""
    model = get_config(f'mmdet::{cfg_name}').model
    model.backbone.update(depth=18, init_cfg=None, style='pytorch')
    model.neck.in_channels = [64, 128, 256, 512]
    model.bbox_head.update(bbox_head)
    return model.to_dict()


@pytest.mark.parametrize('cfg_name', [
    'fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
    'atss/atss_r50_fpn_1x_coco.py',
    'gfl/gfl_r50_fpn_1x_coco.py',
])
def test_stock_shared_heads_distil_their_towers(cfg_name):
    student = _small(cfg_name, stacked_convs=2)
    teacher = _small(cfg_name)
    model = build(student, teacher, taps=['bbox_head.cls_convs', 'bbox_head.reg_convs'])
    for key in ('bbox_head_cls_convs', 'bbox_head_reg_convs'):
        pairing = model.level_pairings[key]
        assert pairing.student_strides == [8, 16, 32, 64, 128], (cfg_name, key)
        assert len(model.distill_losses[key]) == 5
    model.train()
    losses = model.loss(*detection_batch(model))
    assert torch.isfinite(losses['loss_vkd_bbox_head_reg_convs'])


def test_rtmdet_heads_with_one_tower_per_level():
    student = get_config('mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py').model
    teacher = get_config('mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py').model
    for m in (student, teacher):
        m.backbone.init_cfg = None
    model = build(student.to_dict(), teacher.to_dict(), taps=['bbox_head.cls_convs'])
    # one ModuleList per level: each level's last layer, called once
    assert model.student_recorder.sources['bbox_head.cls_convs'] == [
        'bbox_head.cls_convs.0.1', 'bbox_head.cls_convs.1.1', 'bbox_head.cls_convs.2.1']
    pairing = model.level_pairings['bbox_head_cls_convs']
    assert pairing.student_strides == pairing.teacher_strides == [8, 16, 32]
    assert [(l.student_channels, l.teacher_channels)
            for l in model.distill_losses['bbox_head_cls_convs']] == [(96, 128)] * 3
    model.train()
    losses = model.loss(*detection_batch(model))
    assert torch.isfinite(losses['loss_vkd_bbox_head_cls_convs'])


def test_a_two_stage_roi_head_tap_is_refused_and_the_rpn_tower_works():
    cfg = get_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py').model
    cfg.backbone.init_cfg = None
    student = copy.deepcopy(cfg.to_dict())
    with pytest.raises(ValueError, match=r"RoI head of a two-stage detector, which runs on "
                                         r"each model's own proposals"):
        build(student, student, taps=['roi_head.bbox_head.shared_fcs.1'])
    model = build(student, student, taps=['rpn_head.rpn_conv'])
    assert model.level_pairings['rpn_head_rpn_conv'].student_strides == [4, 8, 16, 32, 64]


def test_inspect_distill_shows_a_head_tap_and_what_it_records(tmp_path, retina_pair):
    student, teacher = retina_pair
    cfg = tmp_path / 'head.py'
    cfg.write_text(f"_base_ = '{ROOT / 'configs' / 'vkd_retinanet_r50.py'}'\n"
                   f"model = dict(_delete_=True, type='VkDDistiller', student={student!r},\n"
                   f"             teacher={teacher!r}, taps=['bbox_head.reg_convs'],\n"
                   f"             probe_size=(128, 128))\n")
    from mmengine.config import Config
    report = load_tool('inspect_distill').inspect(Config.fromfile(str(cfg)), (416, 416))
    assert ("tap 'bbox_head.reg_convs': student 'bbox_head.reg_convs' -> teacher "
            "'bbox_head.reg_convs'") in report
    assert ("records student 'bbox_head.reg_convs.1' (5 calls per pass), teacher "
            "'bbox_head.reg_convs.3' (5 calls per pass)") in report
    assert report.count('OrthogonalProjector 64->128') == 5
