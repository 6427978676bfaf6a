"""Wrong configs and bad files get a message that says what and where."""
import copy

import pytest
import torch

from helpers import ROOT, load_tool
from vkd_mmdet.checkpoint import CheckpointMismatchError
from vkd_mmdet.models import VkDDistiller


def test_tap_defaults_that_are_not_a_dict(small_pair):
    with pytest.raises(TypeError, match=r"tap_defaults='standardize' is a str; give a dict "
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
    with pytest.raises(CheckpointMismatchError,
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
