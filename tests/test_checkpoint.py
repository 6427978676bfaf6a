"""Safe checkpoint loading: mmengine's own files load, untrusted content does not."""
import argparse
import time

import pytest
import torch

from helpers import save_mmengine_style_checkpoint
from vkd_mmdet.checkpoint import (CheckpointError, extract_state_dict, fetch,
                                  safe_load)
from vkd_mmdet.models.teacher_model import build_teacher_config


def test_mmengine_checkpoints_load_with_weights_only(tmp_path):
    from mmengine.runner import load_checkpoint
    net = torch.nn.Conv2d(3, 4, 3)
    path = tmp_path / 'ckpt.pth'
    save_mmengine_style_checkpoint(net, path)
    # torch's default (weights_only=True) now reads mmengine's HistoryBuffer/numpy.
    ckpt = torch.load(path)
    assert ckpt['message_hub']['log_scalars']['train/loss'].mean() == 1.25
    other = torch.nn.Conv2d(3, 4, 3)
    load_checkpoint(other, str(path))  # mmengine's own loader, as load_from uses
    assert torch.equal(other.weight, net.weight)
    assert safe_load(str(path))['meta']['iter'] == 3


def test_untrusted_globals_are_refused_and_named(tmp_path):
    # Old training scripts often pickled their argparse namespace: not a tensor,
    # so it needs an explicit opt-in.
    path = tmp_path / 'with_args.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'args': argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError,
                       match=r"\['argparse.Namespace'\].*load it with trust=True"):
        safe_load(str(path))
    assert safe_load(str(path), trust=True)['args'].lr == 0.1
    # a teacher's file: the message names the model config's option
    from mmdet.registry import MODELS
    from vkd_mmdet.models.teacher_model import load_teacher_weights
    with pytest.raises(CheckpointError, match=r"\['argparse.Namespace'\].*set "
                                              r"trust_teacher_ckpt=True in the model config"):
        load_teacher_weights(MODELS.build(dict(type='mmdet.RPNHead', in_channels=1,
                                               feat_channels=1)), str(path))


def test_getattr_is_allowed_only_for_history_buffer_statistics(tmp_path):
    import builtins
    import pickle

    class SneakyGetattr:
        def __reduce__(self):
            return (builtins.getattr, (torch.Tensor, 'add_'))

    path = tmp_path / 'sneaky.pth'
    torch.save({'x': SneakyGetattr()}, path)
    with pytest.raises((CheckpointError, pickle.UnpicklingError), match='getattr'):
        safe_load(str(path))


def test_missing_file_and_unreachable_url_fail_fast_with_the_name():
    with pytest.raises(FileNotFoundError, match='nope.pth does not exist'):
        fetch('/tmp/definitely/nope.pth')
    url = 'https://download.openmmlab.com/mmdetection/v2.0/none/not_cached_teacher.pth'
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r'not_cached_teacher.pth.*local path'):
        fetch(url, timeout=5)
    assert time.monotonic() - start < 30


def test_state_dict_extraction_handles_ddp_and_distiller_checkpoints():
    w = torch.ones(2)
    assert list(extract_state_dict({'state_dict': {'module.a': w}})) == ['a']
    got = extract_state_dict({'state_dict': {'student.backbone.x': w, 'distill_losses.y': w}})
    assert list(got) == ['backbone.x']


def test_teacher_config_from_dict_file_and_mmdet_name(tmp_path):
    by_name = build_teacher_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py')
    assert by_name['type'] == 'RetinaNet' and by_name['backbone']['depth'] == 18
    cfg_file = tmp_path / 'teacher.py'
    cfg_file.write_text("_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'\n")
    assert build_teacher_config(str(cfg_file))['backbone']['depth'] == 50
    assert build_teacher_config({'type': 'X'}) == {'type': 'X'}
    with pytest.raises(FileNotFoundError, match='missing.py'):
        build_teacher_config(str(tmp_path / 'missing.py'))
    with pytest.raises(FileNotFoundError, match='cannot resolve teacher config'):
        build_teacher_config('mmdet::retinanet/no_such_config.py')
    # A config that is there but needs a module that does not import (as an
    # mmpretrain-backbone teacher does without torchvision): the real cause.
    needs = tmp_path / 'needs_module.py'
    needs.write_text("_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'\n"
                     "custom_imports = dict(imports=['vkd_no_such_module'], "
                     "allow_failed_imports=False)\n")
    with pytest.raises(ImportError, match=r"needs_module.py' imports modules that fail to "
                                          r"import: .*vkd_no_such_module"):
        build_teacher_config(str(needs))


def test_files_that_are_not_checkpoints_are_named_as_such(tmp_path):
    from vkd_mmdet.checkpoint import CheckpointError
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(CheckpointError, match=r'empty.pth is empty \(0 bytes\)'):
        safe_load(str(empty))
    noise = tmp_path / 'noise.pth'
    noise.write_bytes(bytes(range(171, 256)) + bytes(range(0, 171)))  # starts with 0xab
    with pytest.raises(CheckpointError, match=r'noise.pth \(256 bytes\) is not a valid '
                                                     r'PyTorch checkpoint.*neither a zip'):
        safe_load(str(noise))
    # A real checkpoint cut short (an interrupted download).
    whole = tmp_path / 'whole.pth'
    torch.save({'state_dict': {'w': torch.randn(64, 64)}}, whole)
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(whole.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r'cut.pth .*truncated'):
        safe_load(str(cut))
    # A legacy (non-zip) pickle that ends early, loaded trusted or not.
    legacy = tmp_path / 'legacy.pth'
    torch.save({'w': torch.zeros(8)}, legacy, _use_new_zipfile_serialization=False)
    short = tmp_path / 'short.pth'
    short.write_bytes(legacy.read_bytes()[:40])
    for trust in (False, True):
        with pytest.raises(CheckpointError, match='short.pth .*not a valid PyTorch'):
            safe_load(str(short), trust=trust)
    assert safe_load(str(legacy))['w'].shape == (8, )
    assert torch.equal(safe_load(str(whole))['state_dict']['w'],
                       torch.load(whole)['state_dict']['w'])


def test_teacher_checkpoint_that_is_empty_fails_at_build_with_the_path(small_pair, tmp_path):
    import copy
    from vkd_mmdet.checkpoint import CheckpointError
    from vkd_mmdet.models import VkDDistiller
    empty = tmp_path / 'teacher.pth'
    empty.touch()
    student, teacher = small_pair
    with pytest.raises(CheckpointError, match=f'{empty} is empty'):
        VkDDistiller(copy.deepcopy(student), copy.deepcopy(teacher), teacher_ckpt=str(empty))
