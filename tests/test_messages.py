"""Wrong configs and bad files get a message that says what and where."""
import copy

import pytest
import torch

from helpers import ROOT, load_tool
from vkd_mmdet.checkpoint import CheckpointError
from vkd_mmdet.errors import ConfigError, TapError
from vkd_mmdet.models import VkDDistiller


def test_tap_defaults_that_are_not_a_dict(small_pair):
    with pytest.raises(ConfigError, match=r"tap_defaults='standardize' is a str; give a dict "
                                        r"of tap options, e.g. tap_defaults=dict\("):
        VkDDistiller(*copy.deepcopy(small_pair), tap_defaults='standardize')


@pytest.mark.parametrize('prefix', ['architecture.', 'teacher.'])
def test_a_teacher_checkpoint_under_a_prefix_names_it_and_how_to_strip_it(small_pair, tmp_path,
                                                                          prefix):
    from mmdet.registry import MODELS
    student, teacher = copy.deepcopy(small_pair)
    state = MODELS.build(teacher).state_dict()
    ckpt = tmp_path / 'razor.pth'
    torch.save({'state_dict': {**{prefix + k: v for k, v in state.items()},
                               'distiller.connectors.x.weight': torch.zeros(1)}}, ckpt)
    with pytest.raises(CheckpointError,
                       match=rf"under the prefix '{prefix}' .*k\[{len(prefix)}:\]"):
        VkDDistiller(student=student, teacher=teacher, teacher_ckpt=str(ckpt),
                     probe_size=(128, 128))


def test_resuming_from_a_truncated_checkpoint_names_it_and_the_last_intact_one(tmp_path):
    import os
    import time
    work = tmp_path / 'work'
    work.mkdir()
    good, cut = work / 'epoch_1.pth', work / 'epoch_2.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, good)
    time.sleep(0.01)
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, cut)
    with open(cut, 'r+b') as f:  # the machine died while it was written
        f.truncate(os.path.getsize(cut) // 2)
    (work / 'last_checkpoint').write_text(str(cut))
    train = load_tool('train')
    config = str(ROOT / 'configs' / 'vkd_retinanet_r50.py')
    with pytest.raises(SystemExit, match=rf"cannot resume: checkpoint {cut} .*truncated.*"
                                         rf"--resume {good}"):
        train.build_config(train.parse_args([config, '--work-dir', str(work), '--resume']))
    with pytest.raises(SystemExit, match=rf"cannot resume: checkpoint {cut} "):
        train.build_config(train.parse_args([config, '--work-dir', str(work), '--resume',
                                             str(cut)]))
    os.remove(good)
    with pytest.raises(SystemExit, match='no intact checkpoint is beside it'):
        train.build_config(train.parse_args([config, '--work-dir', str(work), '--resume']))


def test_a_directory_as_teacher_ckpt_is_named_with_the_checkpoints_it_holds(small_pair, tmp_path):
    (tmp_path / 'epoch_12.pth').write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text('epoch_12.pth')
    with pytest.raises(IsADirectoryError, match=rf"checkpoint {tmp_path} is a directory, not a "
                                                rf"file: it holds the checkpoint files "
                                                rf"\['epoch_12.pth'\]; give one of them"):
        VkDDistiller(*copy.deepcopy(small_pair), teacher_ckpt=str(tmp_path), probe_size=(128, 128))


def test_a_tap_on_the_whole_dense_head_says_what_it_returns_and_which_taps_work(small_pair):
    with pytest.raises(TapError, match=r"the student's 'bbox_head' is the whole dense head\. "
                                           r"It runs, but .*calls bbox_head\.forward\(\.\.\.\) "
                                           r"directly.*it returns a tuple of 2 \(a list of 5 .*"
                                           r"'bbox_head\.cls_convs', 'bbox_head\.reg_convs'.*"
                                           r"'bbox_head\.retina_cls', 'bbox_head\.retina_reg'"):
        VkDDistiller(*copy.deepcopy(small_pair), taps=['bbox_head'], probe_size=(128, 128))


def test_a_teacher_checkpoint_with_nan_weights_is_refused_at_load_with_the_tensor(small_pair,
                                                                                  tmp_path):
    from mmdet.registry import MODELS
    from vkd_mmdet.checkpoint import CheckpointError
    student, teacher = copy.deepcopy(small_pair)
    state = MODELS.build(copy.deepcopy(teacher)).state_dict()
    state['neck.fpn_convs.2.conv.weight'][0, 0, 0, 0] = float('nan')
    state['bbox_head.retina_cls.bias'][:3] = float('inf')
    ckpt = tmp_path / 'diverged.pth'
    torch.save({'state_dict': state}, ckpt)
    with pytest.raises(CheckpointError,
                       match=rf"teacher checkpoint {ckpt}: 2 tensor\(s\) hold NaN or Inf, first "
                             rf"'neck\.fpn_convs\.2\.conv\.weight' \(1 of 147456 values\), "
                             rf"'bbox_head\.retina_cls\.bias' \(3 of 720 values\)"):
        VkDDistiller(student, teacher, teacher_ckpt=str(ckpt), probe_size=(128, 128))


def test_non_finite_teacher_features_in_training_are_reported_as_the_teachers(small_pair):
    from helpers import detection_batch
    model = VkDDistiller(*copy.deepcopy(small_pair), probe_size=(128, 128))
    model.teacher.neck.fpn_convs[1].conv.bias.data[0] = float('nan')  # diverged after loading
    model.train()
    inputs, samples = detection_batch(model, n=2, size=128)
    with pytest.raises(FloatingPointError,
                       match=r"the teacher's features are non-finite \(non-finite values per "
                             r"tap and level, rank 0: \{\"tap 'neck'\": \{'level 1': \d+.*The "
                             r"teacher, frozen, is the cause, not the distillation term"):
        model.loss(inputs, samples)
