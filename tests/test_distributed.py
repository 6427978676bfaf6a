"""tools/dist_train.sh: two processes (torchrun, gloo) of real distillation on coco128."""
import torch

from helpers import coco128_options, dist_train

RANK_DUMP = '''
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmdet.registry import HOOKS


@HOOKS.register_module()
class RankDumpHook(Hook):
    """Each rank writes its trainable weights after training."""

    def __init__(self, out):
        self.out = out

    def dump(self, runner, when):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                   f'{self.out}/rank{get_rank()}_{when}.pth')

    def before_train(self, runner):
        self.dump(runner, 'before')

    def after_train(self, runner):
        self.dump(runner, 'after')
'''


def test_two_process_gloo_training_keeps_ranks_identical(tmp_path):
    options = {**coco128_options(batch=2, images=8),
               'train_dataloader.dataset.pipeline.2.scale': (160, 160)}
    proc = dist_train(tmp_path, 'rank_dump', RANK_DUMP,
                      f"[dict(type='RankDumpHook', out='{tmp_path}'), dict(type='StudentExportHook')]",
                      ['backbone', 'neck'], options, port=29517)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    log = proc.stdout + proc.stderr
    assert 'rank 1/2 uses the gloo backend' in log and 'loss_vkd_neck' in log
    dumped = next((tmp_path / 'work').glob('*/vis_data/config.py')).read_text()
    assert 'find_unused_parameters=False' in dumped and 'find_unused_parameters=True' not in dumped
    r0 = torch.load(tmp_path / 'rank0_after.pth', weights_only=True)
    r1 = torch.load(tmp_path / 'rank1_after.pth', weights_only=True)
    start = torch.load(tmp_path / 'rank0_before.pth', weights_only=True)
    assert r0.keys() == r1.keys() == start.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # The ranks agree because they trained together, not because nothing moved.
    moved = {k for k in r0 if not torch.equal(r0[k], start[k])}
    for prefix in ('student.neck.', 'student.bbox_head.', 'student.backbone.layer4.',
                   'distill_losses.neck.', 'distill_losses.backbone.'):
        assert any(k.startswith(prefix) for k in moved), prefix
    assert (tmp_path / 'work' / 'student' / 'student_final.pth').is_file()  # rank 0 only


def test_dist_train_without_an_environment_says_how_to_make_one(tmp_path):
    """No PYTHON, no project environment, and a `python` without torch on PATH."""
    import os
    import subprocess
    from helpers import ROOT
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'python').write_text('#!/bin/sh\necho "No module named torch" >&2; exit 1\n')
    (bin_dir / 'python').chmod(0o755)
    env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', VENV=str(tmp_path / 'none'))
    env.pop('PYTHON', None)
    proc = subprocess.run(['bash', str(ROOT / 'tools' / 'dist_train.sh'), 'cfg.py', '2'],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert (f"dist_train.sh: python cannot import torch. Run 'make test' (or 'make setup') to "
            f"create {tmp_path / 'none'}") in proc.stderr
