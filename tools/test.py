"""Evaluate a detector: the student of a VkD checkpoint, or a plain detector.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--cfg-options k=v ...]

With a VkD config the student alone is built and evaluated (the teacher is not
needed, nor downloaded); CHECKPOINT may be a training checkpoint or an exported
student. With a plain MMDetection config this is MMDetection's tools/test.py.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

import vkd_mmdet  # noqa: E402,F401
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from vkd_mmdet.checkpoint import safe_load  # noqa: E402
from vkd_mmdet.export import (STUDENT_PREFIX, builds_distiller, save_student,  # noqa: E402
                              student_config)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a (student) detector')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--work-dir')
    parser.add_argument('--out', help='dump the predictions to this .pkl file (as '
                                      "MMDetection's tools/test.py --out does)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_test_config(args) -> Config:
    for path in (args.config, args.checkpoint):
        if not osp.isfile(path):
            raise SystemExit(f'test.py: {path} does not exist')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    load_from = args.checkpoint
    if builds_distiller(cfg.model):
        # Student only; the teacher is never built. An exported student loads
        # as it is, a training checkpoint is first reduced to its student.
        cfg = student_config(cfg)
        state = safe_load(args.checkpoint).get('state_dict', {})
        if any(k.startswith(STUDENT_PREFIX) for k in state):
            load_from = save_student(osp.join(cfg.work_dir, 'student_for_test.pth'), state)
    cfg.load_from = load_from
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'test.py: --out {args.out} must be a .pkl or .pickle file')
    cfg = build_test_config(args)
    runner = Runner.from_cfg(cfg)
    if args.out is not None:
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    return runner.test()


if __name__ == '__main__':
    main()
