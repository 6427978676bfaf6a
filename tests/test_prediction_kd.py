"""Prediction mimicking through the plugin's taps: the sigmoid KD loss on RetinaNet's
classification logits, and the checks that the two heads' logits mean the same."""
import copy
import math

import pytest
import torch

from helpers import detection_batch, small_retinanet
from vkd_mmdet.models import VkDDistiller, VkDLoss
from vkd_mmdet.models.prediction_mimic_loss import PredictionMimicLoss, sigmoid_kd_loss

PREDICTION_TAP = dict(module='bbox_head.retina_cls', loss='sigmoid_kd', projection='none',
                      norm='none', loss_weight=1.0)


def test_sigmoid_kd_by_hand():
    """Two logits: s = (0, 2), t = (ln 3, 0), i.e. p_t = (0.75, 0.5)."""
    s, t = torch.tensor([0.0, 2.0]), torch.tensor([math.log(3.0), 0.0])
    p_s = [0.5, 1 / (1 + math.exp(-2))]
    p_t = [0.75, 0.5]
    bce = [-(q * math.log(p) + (1 - q) * math.log(1 - p)) for p, q in zip(p_s, p_t)]
    expected = sum(b * abs(p - q) for b, p, q in zip(bce, p_s, p_t)) / max(sum(p_t), 1.0)
    assert sigmoid_kd_loss(s, t).item() == pytest.approx(expected, rel=1e-6)
    beta2 = sum(b * abs(p - q) ** 2 for b, p, q in zip(bce, p_s, p_t)) / max(sum(p_t), 1.0)
    assert sigmoid_kd_loss(s, t, beta=2.0).item() == pytest.approx(beta2, rel=1e-6)
    # few confident teacher positives: the divisor is at least 1
    few = torch.tensor([-8.0, -8.0])
    assert sigmoid_kd_loss(s, few).item() == pytest.approx(
        (torch.nn.functional.binary_cross_entropy_with_logits(s, few.sigmoid(), reduction='none')
         * (s.sigmoid() - few.sigmoid()).abs()).sum().item(), rel=1e-6)


def test_sigmoid_kd_is_zero_with_zero_gradient_when_the_student_equals_the_teacher():
    t = torch.randn(2, 27, 8, 8) * 3
    s = t.clone().requires_grad_(True)
    loss = PredictionMimicLoss(27, 27, loss='sigmoid_kd', projection='none', norm='none', loss_weight=1.0)(s, t)
    loss.backward()
    assert loss.item() == 0.0 and s.grad.abs().max().item() == 0.0
    s2 = (t + 0.5).requires_grad_(True)
    PredictionMimicLoss(27, 27, loss='sigmoid_kd', projection='none', norm='none')(s2, t).backward()
    assert s2.grad.abs().max().item() > 0  # and a pull where they differ


def test_prediction_losses_refuse_normalised_or_projected_logits():
    with pytest.raises(ValueError, match=r"loss='sigmoid_kd' compares the two heads' logits as "
                                         r"they are, so give norm='none' and projection='none'"):
        # (what a tap with loss='sigmoid_kd' and the feature defaults gives)
        PredictionMimicLoss(27, 27, loss='sigmoid_kd', norm='standardize',
                            projection='orthogonal')
    with pytest.raises(ValueError, match=r"loss='sigmoid_kd' is prediction mimicking, a loss "
                                         r"of its own: PredictionMimicLoss"):
        VkDLoss(27, 27, loss='sigmoid_kd', projection='none', norm='none')
    with pytest.raises(ValueError, match=r"foreground_weight does not apply"):
        PredictionMimicLoss(27, 27, loss='sigmoid_kd', projection='none', norm='none', foreground_weight=1.0)


def test_a_prediction_tap_with_other_classes_is_refused_with_why():
    student, teacher = small_retinanet(18, 64), small_retinanet(50, 128, num_classes=20)
    with pytest.raises(ValueError, match=r"they have 720 and 180 channels\. A dense head's "
                                         r"logits have anchors-per-position x classes"):
        VkDDistiller(student, teacher, taps=[PREDICTION_TAP], probe_size=(128, 128))


def test_a_prediction_tap_with_other_anchors_is_refused_with_which():
    student, teacher = small_retinanet(18, 64), small_retinanet(50, 128)
    teacher['bbox_head']['anchor_generator']['octave_base_scale'] = 3
    with pytest.raises(ValueError, match=r"the student's level 0 has other anchors than the "
                                         r"teacher's level 0 .*student \['45x23'.*teacher "
                                         r"\['34x17'"):
        VkDDistiller(student, teacher, taps=[PREDICTION_TAP], probe_size=(128, 128))


def test_predictions_of_a_2x_teacher_pair_by_size_and_their_anchors_agree():
    """At 2x input the teacher's stride-16 level has the student's stride-8 map size and,
    measured on the loaded batch, its anchors: P3-P6 of the student meet P4-P7."""
    student, teacher = small_retinanet(18, 64), small_retinanet(50, 128, stacked_convs=2)
    model = VkDDistiller(student, teacher, taps=[PREDICTION_TAP], probe_size=(128, 128),
                         teacher_input_scale=2.0)
    pairing = model.level_pairings['bbox_head_retina_cls']
    assert (pairing.student, pairing.teacher) == ([0, 1, 2, 3], [1, 2, 3, 4])
    model.train()
    inputs, samples = detection_batch(model, n=2, size=128)
    loss = model.loss(inputs, samples)['loss_vkd_bbox_head_retina_cls']
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert model.student.bbox_head.retina_cls.weight.grad.abs().sum() > 0
    # without the scale, the same pair's P3 anchors (32 px) differ from P4's (64 px):
    with pytest.raises(ValueError, match=r'other anchors'):
        VkDDistiller(copy.deepcopy(student), copy.deepcopy(teacher),
                     taps=[dict(PREDICTION_TAP, student_levels=[0], teacher_levels=[1])],
                     probe_size=(128, 128))
