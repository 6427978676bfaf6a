"""Is this teacher any good on my val set? One validation pass, before any training.

    python tools/check_teacher.py CONFIG [--teacher TEACHER_CFG] [--teacher-ckpt CKPT]
        [--student-map MAP] [--cfg-options k=v ...]

CONFIG is a VkD config (its ``teacher``, ``teacher_ckpt`` and input scales are used
unless given here) or a plain student config (then give ``--teacher`` and
``--teacher-ckpt``). The teacher is evaluated on CONFIG's val set with its
``val_evaluator`` (the metric the student will be judged by), fed the student's
data preprocessing and the input scales as the distiller feeds it in training.
Prints the teacher's metrics and a verdict: exit 0 when the teacher looks usable,
1 when it scores near zero, is not clearly above ``--student-map`` (the student's
metric without distillation, 0-1), or cannot be scored (other classes).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

import vkd_mmdet  # noqa: E402,F401
from vkd_mmdet.teacher_check import check_student_map  # noqa: E402
from vkd_mmdet.tool_config import load_config  # noqa: E402
from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a VkD config, or the student config')
    parser.add_argument('--teacher', help="the teacher's config file or mmdet:: name "
                                          "(default: the VkD config's)")
    parser.add_argument('--teacher-ckpt', help="the teacher's weights (default: the VkD "
                                               "config's teacher_ckpt)")
    parser.add_argument('--student-map', type=float,
                        help="the student's metric without distillation (0-1, e.g. 0.25), "
                             "to be warned when the teacher is not clearly above it")
    parser.add_argument('--teacher-input-scale', type=float,
                        help="default: the VkD config's teacher_input_scale, else 1")
    parser.add_argument('--student-input-scale', type=float,
                        help="default: the VkD config's student_input_scale, else 1")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def check(cfg: Config, teacher=None, teacher_ckpt=None, student_map=None,
          teacher_input_scale=None, student_input_scale=None):
    """The :class:`~vkd_mmdet.teacher_check.TeacherCheck` of the teacher on ``cfg``'s val set."""
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmdet.registry import MODELS
    from vkd_mmdet.export import builds_distiller
    from vkd_mmdet.models.teacher_model import build_teacher_config, load_teacher_weights
    from vkd_mmdet.teacher_check import run_teacher_check, teacher_view
    init_default_scope('mmdet')
    model_cfg = dict(cfg.get('model') or {})
    distill = builds_distiller(model_cfg)  # VkDDistiller or a registered subclass
    student_cfg = model_cfg.get('student') if distill else model_cfg
    teacher = teacher or (model_cfg.get('teacher') if distill else None)
    teacher_ckpt = teacher_ckpt or (model_cfg.get('teacher_ckpt') if distill else None)
    if teacher is None:
        raise SystemExit('check_teacher.py: CONFIG is not a VkD config; give the teacher '
                         'with --teacher CONFIG (and its weights with --teacher-ckpt)')
    if not cfg.get('val_dataloader') or not cfg.get('val_evaluator'):
        raise SystemExit('check_teacher.py: CONFIG has no val_dataloader / val_evaluator '
                         'to evaluate the teacher on')
    scales = [s if s is not None else float(model_cfg.get(name, 1.0) if distill else 1.0)
              for s, name in ((teacher_input_scale, 'teacher_input_scale'),
                              (student_input_scale, 'student_input_scale'))]
    student = MODELS.build(ConfigDict(student_cfg))
    teacher_model = MODELS.build(ConfigDict(build_teacher_config(teacher)))
    meta = {}
    if teacher_ckpt is None:
        print('check_teacher.py: no teacher checkpoint given; the teacher is randomly '
              'initialised')
    else:
        meta = load_teacher_weights(teacher_model, teacher_ckpt,
                                    trust=bool(model_cfg.get('trust_teacher_ckpt')))
    loader_cfg, input_scale, note = teacher_view(cfg.val_dataloader, *scales)
    dataloader = Runner.build_dataloader(loader_cfg or cfg.val_dataloader)
    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = dataloader.dataset.metainfo
    return run_teacher_check(teacher_model, student, student.data_preprocessor, dataloader,
                             evaluator, input_scale=input_scale, teacher_meta=meta,
                             teacher_ckpt=teacher_ckpt, student_map=student_map, note=note,
                             where=f"{osp.basename(cfg.filename or 'the config')}'s val set")


def main(argv=None):
    args = parse_args(argv)
    try:
        check_student_map(args.student_map, '--student-map')
    except ValueError as exc:
        raise SystemExit(f'check_teacher.py: {exc}') from None
    cfg = load_config(args.config, args.cfg_options, 'check_teacher.py')
    result = check(cfg, args.teacher, args.teacher_ckpt, args.student_map,
                   args.teacher_input_scale, args.student_input_scale)
    for key, value in result.metrics.items():
        print(f'  {key}: {value}')
    print(('WARNING: ' if result.level == 'warning' else '') + result.message)
    return 1 if result.level == 'warning' else 0


if __name__ == '__main__':
    sys.exit(main())
