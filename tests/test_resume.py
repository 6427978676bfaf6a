"""A run killed with SIGKILL and restarted with --resume ends where an
uninterrupted run ends (deterministic mode), through tools/train.py."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import ROOT, cfg_options_argv, coco128_options, small_pair
from vkd_mmdet.checkpoint import safe_load


def write_config(tmp_path, taps=('backbone', 'neck'), name='resume_cfg.py'):
    student, teacher = small_pair()
    # Every tensor must move in every epoch, so that a state lost on resume shows:
    # no frozen stem, BatchNorm statistics updated, a constant learning rate
    # (mmdet's 500-iteration warm-up would keep the first steps at lr 1e-5), and
    # AdamW, whose steps are about lr whatever the gradient's scale (with SGD
    # the deep convs moved less than the comparison's tolerance).
    student['backbone'].update(frozen_stages=-1, norm_eval=False)
    path = tmp_path / name
    path.write_text(
        f"_base_ = '{ROOT / 'configs' / 'vkd_retinanet_r50.py'}'\n"
        f"model = dict(_delete_=True, type='VkDDistiller', student={student!r},\n"
        f"             teacher={teacher!r}, taps={list(taps)!r}, probe_size=(128, 128))\n"
        f"param_scheduler = [dict(type='ConstantLR', factor=1.0, begin=0, end=1, by_epoch=False)]\n"
        f"optim_wrapper = dict(_delete_=True, type='OptimWrapper',\n"
        f"                     optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4))\n"
        f"custom_hooks = [dict(type='DistillWeightScheduleHook', warmup_iters=6),\n"
        f"                dict(type='StudentExportHook')]\n")
    return path


def train_cmd(config, work_dir, *extra):
    options = {**coco128_options(batch=2, images=6),
               'train_dataloader.dataset.pipeline.2.scale': (160, 160),
               # RandomFlip draws from numpy's global RNG, which no checkpoint restores.
               'train_dataloader.dataset.pipeline.3.prob': 0.0,
               'train_cfg.max_epochs': 2, 'randomness.deterministic': True}
    return [sys.executable, str(ROOT / 'tools' / 'train.py'), str(config), '--work-dir',
            str(work_dir), *extra, '--cfg-options', *cfg_options_argv(options)]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    config = write_config(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    full = tmp_path / 'full'
    # The uninterrupted run and the one to kill, side by side (one thread each).
    log = open(tmp_path / 'full.log', 'w')
    uninterrupted = subprocess.Popen(train_cmd(config, full), cwd=tmp_path, env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
    crashed = tmp_path / 'crashed'
    proc = subprocess.Popen(train_cmd(config, crashed), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    # mmengine writes `last_checkpoint` only after epoch_1.pth is complete.
    while not (crashed / 'last_checkpoint').exists():
        assert proc.poll() is None and time.monotonic() < deadline, 'no checkpoint written'
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crashed / 'epoch_2.pth').exists()
    assert uninterrupted.wait(timeout=600) == 0, (tmp_path / 'full.log').read_text()[-3000:]
    log.close()

    resumed = subprocess.run(train_cmd(config, crashed, '--resume'), capture_output=True,
                             text=True, cwd=tmp_path, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch: 1' in resumed.stdout + resumed.stderr

    a = safe_load(str(full / 'epoch_2.pth'))
    b = safe_load(str(crashed / 'epoch_2.pth'))
    first = safe_load(str(full / 'epoch_1.pth'))
    assert a['state_dict'].keys() == b['state_dict'].keys() == first['state_dict'].keys()
    assert any(k.startswith('distill_losses.') for k in a['state_dict'])
    tol = dict(rtol=1e-4, atol=1e-5)
    for k in a['state_dict']:
        torch.testing.assert_close(a['state_dict'][k], b['state_dict'][k], **tol, msg=k)
        # The comparison could see a lost state: epoch 2 moved every tensor by
        # more than the tolerance.
        with pytest.raises(AssertionError):
            torch.testing.assert_close(a['state_dict'][k], first['state_dict'][k], **tol)
    # Optimizer state (AdamW's moments and step of every trainable tensor) came back too.
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys() and len(sa) == sum(
        1 for k in a['state_dict'] if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked')))
    for key in sa:
        assert sa[key].keys() == sb[key].keys() == {'step', 'exp_avg', 'exp_avg_sq'}
        for name in sa[key]:
            torch.testing.assert_close(sa[key][name], sb[key][name], **tol)
    assert (a['meta']['epoch'], a['meta']['iter']) == (b['meta']['epoch'], b['meta']['iter']) == (2, 6)

    # Resuming with another setup (neck taps only) stops before anything loads,
    # saying what differs, instead of mmengine's bare optimizer error.
    other = write_config(tmp_path, taps=['neck'], name='neck_only.py')
    wrong = subprocess.run(train_cmd(other, tmp_path / 'other', '--resume',
                                     str(full / 'epoch_1.pth')),
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert wrong.returncode != 0
    assert ("CheckpointError: --resume: the checkpoint was written by another setup "
            "than this config: 0 missing keys (e.g. []), 4 unexpected keys (e.g. "
            "['distill_losses.backbone.0.") in wrong.stderr, wrong.stderr[-3000:]
