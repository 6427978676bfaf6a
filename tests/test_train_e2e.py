"""End to end: tools/train.py on configs/vkd_retinanet_r50.py with real coco128 data,
a teacher checkpoint saved here (no download possible), then the exported student
in a plain MMDetection process."""
import pickle
import re
import subprocess
import sys

import numpy as np
import torch
from mmdet.apis import inference_detector
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.hub import get_config
from mmengine.runner import Runner

from helpers import (ROOT, cfg_options_argv, coco128_options, data_root, load_tool,
                     read_scalars, resize_options, save_mmengine_style_checkpoint)

CONFIG = ROOT / 'configs' / 'vkd_retinanet_r50.py'


class SnapshotHook(Hook):
    """Copies the trainable weights right after init_weights, before step 1."""

    def before_train(self, runner):
        self.before = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


def make_teacher_checkpoint(tmp_path, config_name):
    from mmdet.registry import MODELS
    teacher_cfg = get_config(config_name).model
    teacher_cfg.backbone.init_cfg = None
    torch.manual_seed(1)
    teacher = MODELS.build(teacher_cfg)
    teacher.init_weights()
    path = tmp_path / 'teacher.pth'
    save_mmengine_style_checkpoint(teacher, path)
    return path, {k: v.clone() for k, v in teacher.state_dict().items()}


PLAIN_MMDET_PREDICT = r'''
import sys, numpy as np
from mmdet.apis import init_detector, inference_detector
model = init_detector(sys.argv[1], sys.argv[2], device='cpu')
assert 'vkd_mmdet' not in sys.modules, 'the plugin must not be needed'
res = inference_detector(model, sys.argv[3]).pred_instances
np.savez(sys.argv[4], bboxes=res.bboxes.numpy(), scores=res.scores.numpy(),
         labels=res.labels.numpy())
'''


def test_train_vkd_retinanet_r50_on_coco128(tmp_path):
    teacher_ckpt, teacher_weights = make_teacher_checkpoint(
        tmp_path, Config.fromfile(str(CONFIG)).model.teacher)
    base = Config.fromfile(str(CONFIG))
    options = {**coco128_options(), **resize_options(base, 256),
               'model.teacher_ckpt': str(teacher_ckpt),
               'model.student.backbone.init_cfg': None,
               # an untrained student scores low: keep its top boxes to compare
               'model.student.test_cfg.score_thr': 0.0}
    train = load_tool('train')
    argv = [str(CONFIG), '--work-dir', str(tmp_path / 'work'),
            '--cfg-options', *cfg_options_argv(options)]
    cfg = train.build_config(train.parse_args(argv))
    runner = Runner.from_cfg(cfg)
    snap = SnapshotHook()
    runner.register_hook(snap, priority='VERY_HIGH')
    runner.train()
    model = runner.model

    # The log has the VkD entries.
    logged = read_scalars(tmp_path / 'work')
    keys = set().union(*logged)
    assert {'loss_vkd_backbone', 'loss_vkd_neck', 'loss_cls', 'vkd_weight',
            'vkd_orth_err_neck', 'vkd_orth_err_backbone'} <= keys, keys
    assert all(0 < r['loss_vkd_neck'] < 1e3 for r in logged if 'loss_vkd_neck' in r)

    # Student and projector weights moved; the teacher is bit-identical.
    after = model.state_dict()
    changed = lambda prefix: any(  # noqa: E731
        not torch.equal(snap.before[k], after[k]) for k in after
        if k.startswith(prefix) and after[k].is_floating_point())
    assert changed('student.bbox_head') and changed('student.neck')
    assert changed('distill_losses.neck') and changed('distill_losses.backbone')
    teacher_now = model.teacher.state_dict()
    assert all(torch.equal(teacher_weights[k], teacher_now[k]) for k in teacher_weights)
    for name, proj in model.projectors().items():
        assert proj.orthogonality_error() < 1e-5, name

    # The training checkpoint holds no teacher weights: its size is the student,
    # the projectors and the SGD momentum of the trainable parameters.
    ckpt_path = tmp_path / 'work' / 'epoch_1.pth'
    ckpt = torch.load(ckpt_path, map_location='cpu')
    assert not any(k.startswith('teacher') for k in ckpt['state_dict'])
    weights = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    momentum = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    teacher = sum(v.numel() * v.element_size() for v in teacher_weights.values())
    size = ckpt_path.stat().st_size
    assert abs(size - (weights + momentum)) / (weights + momentum) < 0.03, (size, weights, momentum)
    assert size < teacher  # an X101 teacher alone would be larger than all of it

    # The exported student loads in stock mmdet (no plugin) and predicts the same.
    student_dir = tmp_path / 'work' / 'student'
    assert (student_dir / 'student_epoch_1.pth').is_file()
    image = sorted((data_root() / 'coco128' / 'train2017').glob('*.jpg'))[0]
    out = tmp_path / 'plain.npz'
    subprocess.run([sys.executable, '-c', PLAIN_MMDET_PREDICT,
                    str(student_dir / 'student_config.py'),
                    str(student_dir / 'student_final.pth'), str(image), str(out)],
                   check=True, cwd=tmp_path)
    model.cfg = cfg
    model.eval()
    ours = inference_detector(model, str(image)).pred_instances
    theirs = np.load(out)
    assert len(ours.scores) == len(theirs['scores']) > 0
    np.testing.assert_allclose(ours.bboxes.numpy(), theirs['bboxes'], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours.scores.numpy(), theirs['scores'], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours.labels.numpy(), theirs['labels'])

    # tools/test.py evaluates the student of the training checkpoint (no teacher
    # needed), tools/export_student.py exports the same weights, and --resume
    # continues the run from mmengine's own checkpoint under torch's weights_only.
    work = tmp_path / 'work'
    argv_opts = cfg_options_argv(options)
    def evaluate(checkpoint, out):
        proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'test.py'), str(CONFIG),
                               str(checkpoint), '--work-dir', str(tmp_path / 'test'),
                               '--out', str(out),
                               '--cfg-options', *argv_opts, 'model.teacher_ckpt=/nonexistent.pth'],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        log = proc.stdout + proc.stderr
        assert re.search(r'coco/bbox_mAP: (-?[\d.]+)', log), log[-3000:]
        with open(out, 'rb') as f:
            return {r['img_path']: r['pred_instances'] for r in pickle.load(f)}, log

    # tools/test.py evaluates the weights it is given: its predictions are the
    # trained model's, image by image. The training checkpoint is reduced to
    # its student; an exported student loads as it is.
    preds, log = evaluate(work / 'epoch_1.pth', tmp_path / 'from_training.pkl')
    assert 'Load checkpoint from ' + str(tmp_path / 'test' / 'student_for_test.pth') in log
    assert len(preds) == 4
    for path, pred in preds.items():
        mine = inference_detector(model, path).pred_instances
        np.testing.assert_allclose(pred['bboxes'].numpy(), mine.bboxes.numpy(), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(pred['scores'].numpy(), mine.scores.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(pred['labels'].numpy(), mine.labels.numpy())
    exported_preds, log = evaluate(student_dir / 'student_final.pth', tmp_path / 'from_export.pkl')
    assert 'Load checkpoint from ' + str(student_dir / 'student_final.pth') in log
    assert exported_preds.keys() == preds.keys()
    for path in preds:
        assert torch.equal(exported_preds[path]['scores'], preds[path]['scores'])

    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'export_student.py'),
                           str(work / 'epoch_1.pth'), str(tmp_path / 'exp' / 'student.pth')],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exported = torch.load(tmp_path / 'exp' / 'student.pth', weights_only=True)
    final = torch.load(student_dir / 'student_final.pth', weights_only=True)
    assert exported['state_dict'].keys() == final['state_dict'].keys()
    assert all(torch.equal(exported['state_dict'][k], final['state_dict'][k])
               for k in final['state_dict'])
    assert (tmp_path / 'exp' / 'student.py').is_file()

    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'train.py'), str(CONFIG),
                           '--work-dir', str(work), '--resume', str(work / 'epoch_1.pth'),
                           '--cfg-options', *argv_opts, 'train_cfg.max_epochs=2'],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 1, iter: 2' in log, log[-3000:]
    assert (work / 'epoch_2.pth').is_file()
