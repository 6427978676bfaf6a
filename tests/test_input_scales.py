"""Each model at its own input resolution: the batch resized for one side, the
student's boxes and shapes to match, levels paired by map size."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.structures import InstanceData

from helpers import detection_batch, small_vkd_runner_cfg
from vkd_mmdet.models import VkDDistiller
from vkd_mmdet.models.foreground_weights import GroundTruthBoxes, position_weights
from vkd_mmdet.models.input_scaling import RescaleBatch, rescale_batch
from vkd_mmdet.models.level_pairing import pair_levels


def sample(h=480, w=640):
    s = DetDataSample(metainfo=dict(img_shape=(h, w), pad_shape=(h, w), ori_shape=(300, 400),
                                    scale_factor=(1.6, 1.6), batch_input_shape=(h, w)))
    s.gt_instances = InstanceData(bboxes=HorizontalBoxes(torch.tensor([[10., 20., 110., 220.]])),
                                  labels=torch.tensor([1]))
    return s


def test_rescale_batch_halves_the_image_boxes_and_shapes_and_leaves_the_originals():
    inputs, original = torch.rand(1, 3, 480, 640), sample()
    small, (scaled, ) = rescale_batch(inputs, [original], 0.5)
    assert small.shape == (1, 3, 240, 320)
    # an antialiased resize, not a subsample of every other pixel
    assert torch.allclose(small, F.interpolate(inputs, size=(240, 320), mode='bilinear',
                                               antialias=True, align_corners=False))
    assert not torch.allclose(small, inputs[..., ::2, ::2], atol=1e-2)
    assert scaled.gt_instances.bboxes.tensor.tolist() == [[5., 10., 55., 110.]]
    assert scaled.metainfo['img_shape'] == scaled.metainfo['pad_shape'] == (240, 320)
    assert scaled.metainfo['batch_input_shape'] == (240, 320)
    assert scaled.metainfo['scale_factor'] == (0.8, 0.8)
    assert scaled.metainfo['ori_shape'] == (300, 400)
    # the teacher, the evaluator and the logger still read the batch as loaded
    assert original.gt_instances.bboxes.tensor.tolist() == [[10., 20., 110., 220.]]
    assert original.metainfo['img_shape'] == (480, 640)
    assert rescale_batch(inputs, [original], 1.0)[1][0] is original


def test_rescale_batch_refuses_fields_it_cannot_resize():
    from mmengine.structures import PixelData
    s = sample()
    s.gt_sem_seg = PixelData(sem_seg=torch.zeros(1, 480, 640))
    with pytest.raises(ValueError, match=r"data sample 0 carries \['gt_sem_seg'\]"):
        rescale_batch(torch.rand(1, 3, 480, 640), [s], 0.5)


@pytest.mark.parametrize('value', [0, -1.0, float('nan'), 'big', True])
def test_input_scales_must_be_positive_numbers(small_pair, value):
    with pytest.raises(ValueError, match=r'VkDDistiller: teacher_input_scale='):
        VkDDistiller(*copy.deepcopy(small_pair), teacher_input_scale=value)


def maps(size, strides):
    return [torch.zeros(1, 4, -(-size // s), -(-size // s)) for s in strides]


def test_levels_pair_by_map_size_when_the_teacher_sees_twice_the_input():
    """A hand-built pair: the student's P3-P7 on a 320 px batch, the teacher's P3-P7
    on the same batch at 2x (640 px): its stride-16 map has the student's stride-8 size."""
    student, teacher = maps(320, (8, 16, 32, 64, 128)), maps(640, (8, 16, 32, 64, 128))
    pairing = pair_levels('neck', student, teacher, None, None, (320, 320),
                          input_scales=(1.0, 2.0))
    assert (pairing.student, pairing.teacher, pairing.how) == ([0, 1, 2, 3], [1, 2, 3, 4], 'size')
    for s, t in zip(pairing.student, pairing.teacher):
        assert student[s].shape[-2:] == teacher[t].shape[-2:]
    assert [pairing.own_stride('teacher', t) for t in pairing.teacher] == [16, 32, 64, 128]
    text = pairing.describe()
    assert 'teacher 2x the loaded batch' in text and '0↔1 (stride 8/16 on their inputs' in text
    assert 'paired by map size' in text
    # The same maps without the scale would pair by stride on one input, P3 with P3.
    same = pair_levels('neck', maps(320, (8, 16, 32, 64, 128)), maps(320, (8, 16, 32, 64, 128)),
                       None, None, (320, 320))
    assert same.teacher == [0, 1, 2, 3, 4]


def test_levels_pair_by_map_size_when_the_student_sees_half_the_input():
    student, teacher = maps(320, (8, 16, 32, 64, 128)), maps(640, (8, 16, 32, 64, 128))
    pairing = pair_levels('neck', student, teacher, None, None, (640, 640),
                          input_scales=(0.5, 1.0))
    assert (pairing.student, pairing.teacher) == ([0, 1, 2, 3], [1, 2, 3, 4])
    assert [pairing.own_stride('student', s) for s in pairing.student] == [8, 16, 32, 64]


def test_the_distiller_feeds_each_model_its_own_scale_and_the_student_its_own_boxes(small_pair):
    """student_input_scale=0.5: the teacher sees the batch as loaded, the student half
    of it with halved boxes; foreground weighting puts its mask on the same cells as
    the batch's own boxes would on the compared (teacher-sized) map."""
    student, teacher = copy.deepcopy(small_pair)
    model = VkDDistiller(student, teacher, probe_size=(128, 128), student_input_scale=0.5,
                         tap_defaults=dict(foreground_weight=1.0, background_weight=0.5))
    assert model.level_pairings['neck'].teacher == [1, 2, 3, 4]
    seen, boxes_seen = {}, []

    def input_of(role):
        def hook(module, args, output):
            seen.setdefault(role, tuple(args[0].shape))
        return hook

    def boxes_of(module, args, kwargs):
        boxes_seen.append(kwargs['boxes'])

    model.student.backbone.register_forward_hook(input_of('student'))
    model.teacher.backbone.register_forward_hook(input_of('teacher'))
    model.distill_losses['neck'][0].register_forward_pre_hook(boxes_of, with_kwargs=True)
    model.train()
    inputs, samples = detection_batch(model, n=2, size=256)
    losses = model.loss(inputs, samples)
    assert seen == {'teacher': (2, 3, 256, 256), 'student': (2, 3, 128, 128)}
    assert torch.isfinite(losses['loss_vkd_neck'])
    gt = boxes_seen[0]
    assert gt.input_size == (128, 128)
    full = GroundTruthBoxes.from_samples(samples, (256, 256))
    for mine, loaded in zip(gt.boxes, full.boxes):
        assert torch.allclose(mine * 2, loaded)
    # on the compared map (the student's P3 = the teacher's P4: 16x16 cells)
    assert torch.equal(position_weights(gt, (16, 16), 128, 1.0, 0.5),
                       position_weights(full, (16, 16), 128, 1.0, 0.5))


def test_rescale_batch_as_a_batch_augment_runs_in_training_only(small_pair):
    from mmdet.registry import MODELS
    student = copy.deepcopy(small_pair[0])
    student['data_preprocessor']['batch_augments'] = [dict(type='RescaleBatch', scale_factor=0.5)]
    model = MODELS.build(student)
    assert isinstance(model.data_preprocessor.batch_augments[0], RescaleBatch)
    inputs, samples = detection_batch(model, n=1, size=128)  # (training=True)
    assert inputs.shape[-2:] == (64, 64) and samples[0].metainfo['batch_input_shape'] == (64, 64)
    from mmdet.structures import DetDataSample as Sample
    raw = dict(inputs=[torch.zeros(3, 128, 128, dtype=torch.uint8)],
               data_samples=[Sample(metainfo=dict(img_shape=(128, 128)))])
    assert model.data_preprocessor(raw, False)['inputs'].shape[-2:] == (128, 128)


def test_a_teacher_at_twice_the_input_trains_on_real_images(tmp_path):
    """coco128 photos at 128 px, the teacher at 256 px: the run trains, the log names
    the size-based pairs, the student's weights move."""
    from mmengine.runner import Runner
    from helpers import read_scalars
    cfg = small_vkd_runner_cfg(tmp_path, size=128, images=4, teacher_input_scale=2.0)
    runner = Runner.from_cfg(cfg)
    before = copy.deepcopy(runner.model.student.neck.state_dict())
    runner.train()
    logged = [r for r in read_scalars(tmp_path) if 'loss_vkd_neck' in r]
    assert logged and all(0 < r['loss_vkd_neck'] < 1e3 for r in logged)
    assert runner.model.level_pairings['neck'].teacher == [1, 2, 3, 4]
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'teacher 2x the loaded batch' in log and 'paired by map size' in log
    after = runner.model.student.neck.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after)
