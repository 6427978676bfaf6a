"""Export the student of a VkD training checkpoint as a plain MMDetection model.

    python tools/export_student.py work_dirs/x/epoch_12.pth student.pth [--config CFG]

Writes ``student.pth`` (tensors and plain values only) and ``student.py`` (the
student's standalone config) next to it; both load in stock MMDetection without
this plugin. The config is taken from the checkpoint (mmengine stores it) unless
``--config`` is given.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

import vkd_mmdet  # noqa: E402,F401
from mmengine.config import Config  # noqa: E402

from vkd_mmdet.checkpoint import safe_load  # noqa: E402
from vkd_mmdet.export import save_student  # noqa: E402


def export(checkpoint: str, out: str, config: str = None) -> str:
    if not osp.isfile(checkpoint):
        raise SystemExit(f'export_student.py: checkpoint {checkpoint} does not exist')
    ckpt = safe_load(checkpoint)
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    if config is not None:
        cfg = Config.fromfile(config)
    elif isinstance(meta.get('cfg'), str):
        cfg = Config.fromstring(meta['cfg'], '.py')
    else:
        raise SystemExit(f'export_student.py: {checkpoint} carries no config; pass --config')
    keep = {k: meta[k] for k in ('dataset_meta', 'epoch', 'iter') if k in meta}
    keep['exported_from'] = osp.abspath(checkpoint)
    config_path = osp.splitext(out)[0] + '.py'
    save_student(out, ckpt['state_dict'], cfg, keep, config_path=config_path)
    print(f'student checkpoint: {out}\nstudent config:     {config_path}')
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description='Export the student of a VkD checkpoint')
    parser.add_argument('checkpoint', help='a VkDDistiller training checkpoint')
    parser.add_argument('out', help='output .pth path; the config goes next to it as .py')
    parser.add_argument('--config', help='the training config (default: the one stored '
                                         'in the checkpoint)')
    args = parser.parse_args(argv)
    export(args.checkpoint, args.out, args.config)


if __name__ == '__main__':
    main()
