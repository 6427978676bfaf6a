"""The teacher is evaluated on the user's val set before training, and a teacher
that cannot teach is named in plain words before the first iteration."""
import copy
import subprocess
import sys

import pytest
import torch

from helpers import (ROOT, coco128_options, load_tool, read_scalars, small_pair, small_retinanet,
                     small_vkd_config_file)
from vkd_mmdet.teacher_check import judge, rescaled_pipeline_dataloader, teacher_view


def small_config(tmp_path, **model) -> str:
    """A VkD config file of the small pair on coco128 (80 classes)."""
    return small_vkd_config_file(tmp_path / 'vkd_small.py', **model)


def train_log(tmp_path, config, **extra) -> str:
    """Train one epoch of 2 iterations through tools/train.py's own config handling;
    the run's log text."""
    from mmengine.runner import Runner
    from helpers import cfg_options_argv, resize_options
    from mmengine.config import Config
    train = load_tool('train')
    options = {**coco128_options(images=4, val_images=4, teacher_check=True),
               **resize_options(Config.fromfile(config), 128),
               'default_hooks.checkpoint.interval': 100, **extra}
    cfg = train.build_config(train.parse_args(
        [config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
         *cfg_options_argv(options)]))
    Runner.from_cfg(cfg).train()
    return next((tmp_path / 'work').glob('*/*.log')).read_text()


def test_a_random_teacher_is_named_with_its_map_before_the_first_iteration(tmp_path):
    log = train_log(tmp_path, small_config(tmp_path))
    warning = 'WARNING - TeacherCheckHook: teacher: 0.0 coco/bbox_mAP on your val set'
    assert warning in log, log[-3000:]
    assert 'near zero' in log and 'no teacher_ckpt was given' in log
    assert log.index(warning) < log.index('Epoch(train) [1][1/')
    first = [r for r in read_scalars(tmp_path / 'work') if 'teacher/coco/bbox_mAP' in r]
    assert first and first[0]['step'] == 0 and first[0]['teacher/coco/bbox_mAP'] == 0.0


def test_check_teacher_false_switches_it_off(tmp_path):
    log = train_log(tmp_path, small_config(tmp_path, check_teacher=False))
    assert 'TeacherCheckHook: off (check_teacher=False)' in log
    assert 'teacher: 0.0' not in log


def test_a_teacher_of_other_classes_is_not_scored_and_the_taps_still_train(tmp_path):
    config = small_config(tmp_path, teacher=small_retinanet(50, fpn=128, num_classes=20))
    log = train_log(tmp_path, config)
    assert ('TeacherCheckHook: teacher check skipped: the teacher predicts 20 classes, the '
            'student 80' in log)
    assert 'Feature taps (backbone, neck, head towers) still distil' in log
    assert 'loss_vkd_neck' in log


def test_unknown_check_teacher_options_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"check_teacher has unknown option\(s\) \['student_mAP'\]"):
        train_log(tmp_path, small_config(tmp_path, check_teacher=dict(student_mAP=0.3)))


def test_a_baseline_given_in_percent_is_refused_with_both_readings(tmp_path):
    # in a config, before the teacher's val pass (the run stops before any evaluation)
    with pytest.raises(ValueError, match=r"check_teacher: student_map=25 is outside 0-1, but "
                                         r"the val metric \(COCO mAP\) is a fraction: as given "
                                         r"it reads as 2500%; did you mean 0.25 \(25%\)\?"):
        train_log(tmp_path, small_config(tmp_path, check_teacher=dict(student_map=25)))
    # on the tool's command line, before anything is built
    with pytest.raises(SystemExit, match=r"check_teacher.py: --student-map=25 is outside 0-1.*"
                                         r"did you mean 0.25"):
        load_tool('check_teacher').main([small_config(tmp_path), '--student-map', '25'])
    with pytest.raises(ValueError, match=r'student_map=-0.1 is outside 0-1'):
        judge_baseline(-0.1)
    judge_baseline(0.25)  # a fraction passes
    judge_baseline(1.0)


def judge_baseline(value):
    from vkd_mmdet.teacher_check import check_student_map
    check_student_map(value)


def test_the_verdicts_in_plain_words():
    common = dict(metric='coco/bbox_mAP', min_map=0.01, margin=0.02, where='your val set',
                  sizes='8.1M parameters; the student 3.9M', teacher_ckpt='t.pth')
    broken = judge(0.002, student_map=None, **common)
    assert broken.level == 'warning' and 'near zero' in broken.message
    assert 'teacher_ckpt=t.pth' in broken.message
    close = judge(0.29, student_map=0.28, **common)
    assert close.level == 'warning'
    assert 'not clearly better than the 28.0 your student reaches' in close.message
    good = judge(0.42, student_map=0.28, **common)
    assert good.level == 'info'
    assert good.message.startswith('teacher: 42.0 coco/bbox_mAP on your val set')
    assert '+14.0 over the student without distillation' in good.message
    unknown = judge(0.42, student_map=None, **common)
    assert unknown.level == 'info' and 'check_teacher=dict(student_map=...)' in unknown.message


def test_the_teacher_sees_val_images_at_the_training_batchs_resolution():
    val = dict(dataset=dict(type='CocoDataset', pipeline=[
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=(320, 320), keep_ratio=True),
        dict(type='PackDetInputs')]))
    cfg, scale, note = teacher_view(val, teacher_scale=1.0, student_scale=0.5)
    assert cfg['dataset']['pipeline'][1]['scale'] == (640, 640) and scale == 1.0
    assert val['dataset']['pipeline'][1]['scale'] == (320, 320)  # a copy
    assert 'loaded 2x as large' in note
    assert teacher_view(val, teacher_scale=2.0, student_scale=1.0)[:2] == (None, 2.0)
    wrapped = dict(dataset=dict(type='ConcatDataset', datasets=[val['dataset']]))
    assert rescaled_pipeline_dataloader(wrapped, 2.0) is None
    cfg, scale, note = teacher_view(wrapped, teacher_scale=1.0, student_scale=0.5)
    assert cfg is None and scale == 2.0 and 'no resize with a scale' in note


def test_check_teacher_tool_on_a_student_config_and_a_saved_teacher(tmp_path):
    """tools/check_teacher.py alone: the student's config, a teacher config and its
    checkpoint; a random teacher exits 1 with the warning."""
    from mmdet.registry import MODELS
    from helpers import cfg_options_argv
    _, teacher = small_pair()
    ckpt = tmp_path / 'teacher.pth'
    torch.save({'state_dict': MODELS.build(copy.deepcopy(teacher)).state_dict()}, ckpt)
    teacher_cfg = tmp_path / 'teacher.py'
    teacher_cfg.write_text(f'model = {teacher!r}\n')
    student_cfg = tmp_path / 'student.py'
    student_cfg.write_text(f"_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'\n"
                           f"model = {small_pair()[0]!r}\n")
    options = {k: v for k, v in coco128_options(val_images=2).items() if k.startswith('val_')}
    options['val_dataloader.dataset.pipeline.1.scale'] = '(128,128)'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'check_teacher.py'), str(student_cfg),
         '--teacher', str(teacher_cfg), '--teacher-ckpt', str(ckpt),
         '--cfg-options', *cfg_options_argv(options)],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "WARNING: teacher: 0.0 coco/bbox_mAP on student.py's val set" in proc.stdout
    assert f'teacher_ckpt={ckpt}' in proc.stdout


def test_check_teacher_tool_takes_a_registered_subclass_of_the_distiller(tmp_path):
    """Its teacher and weights come from the subclass's config as from VkDDistiller's."""
    from helpers import cfg_options_argv, subclassed_distiller_config
    config, env = subclassed_distiller_config(tmp_path)
    options = {k: v for k, v in coco128_options(val_images=2).items() if k.startswith('val_')}
    options['val_dataloader.dataset.pipeline.1.scale'] = '(128,128)'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'check_teacher.py'), config,
         '--cfg-options', *cfg_options_argv(options)],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert 'not a VkD config' not in proc.stderr
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "WARNING: teacher: 0.0 coco/bbox_mAP on my_distiller_cfg.py's val set" in proc.stdout
