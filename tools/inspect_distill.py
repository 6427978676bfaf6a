"""Dry run of a VkD config: what would be distilled, in seconds, before a launch.

    python tools/inspect_distill.py CONFIG [--cfg-options k=v ...]
        [--image-size H W] [--probe-size H W]

Builds the student and the teacher from the config (no data, no teacher weights:
``teacher_ckpt`` is named, not loaded), runs the distiller's probe once, and
prints per tap and level: the student and teacher modules, feature shapes,
strides, channels, how the levels were paired, the projector and its
parameters, the normalisation, loss and weight, and an estimate of the memory
the tap's distillation side keeps for the backward pass per training image.
A config error exits non-zero with the message training would give.
"""
import argparse
import logging
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

import vkd_mmdet  # noqa: E402,F401
from vkd_mmdet.tool_config import load_config  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

# float32 values per position that one level's VkD side keeps for backward
# (multiples of C_s and C_t). Kept: the student's float32 copy and, at C_t
# channels, the projection, the two standardised sides and their difference.
# Recomputed (the default): only the teacher's map, until the backward pass.
SAVED_PER_POSITION = {False: dict(student=1, teacher=4), True: dict(student=0, teacher=1)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--image-size', type=int, nargs=2, default=(800, 1333),
                        metavar=('H', 'W'), help='training image size for the memory estimate')
    parser.add_argument('--probe-size', type=int, nargs=2, metavar=('H', 'W'),
                        help="the probe's image size (default: the config's probe_size)")
    return parser.parse_args(argv)


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record) -> bool:
        return self.text not in record.getMessage()


def describe_projector(projector) -> str:
    name = type(projector).__name__
    if name == 'OrthogonalProjector':
        kind = 'orthonormal columns' if projector.out_channels > projector.in_channels else (
            'orthogonal' if projector.out_channels == projector.in_channels else 'orthonormal rows')
        return (f'OrthogonalProjector {projector.in_channels}->{projector.out_channels} '
                f'({kind}, map={projector.orthogonal_map}, affine={projector.scale is not None})')
    if name == 'Conv2d':
        return f'linear 1x1 conv {projector.in_channels}->{projector.out_channels}'
    return 'none (identity)'


def _recorded(recorder, path: str) -> str:
    """What a tap on ``path`` records, where that is not simply its one output: the
    tower layer(s) of a ModuleList, and how often they run per pass (one level each)."""
    sources, calls = recorder.sources[path], recorder.calls.get(path, 1)
    if sources == [path] and calls == 1:
        return ''
    names = ', '.join(repr(s) for s in sources)
    return f'{names} ({calls} call{"s" if calls > 1 else ""} per pass)'


def _source(dataset: dict) -> str:
    """``CocoDataset data/coco/annotations/x.json`` or ``UnlabelledImages data/raw/``."""
    root = dataset.get('data_root') or ''
    where = dataset.get('ann_file') or (dataset.get('data_prefix') or {}).get('img', '')
    return f"{dataset.get('type')} {osp.join(root, where) if where else root or '?'}"


def _is_unlabelled(dataset: dict) -> bool:
    while dataset.get('dataset'):  # (wrappers such as RepeatDataset)
        dataset = dataset['dataset']
    return dataset.get('type') == 'UnlabelledImages'


def training_sources(cfg: Config) -> tuple:
    """The training set's sources (a ConcatDataset's parts, or the one set) and, for
    each, whether it is unlabelled."""
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    sources = dataset.get('datasets') if dataset.get('type') == 'ConcatDataset' else [dataset]
    return sources, [_is_unlabelled(d) for d in sources]


def training_mix(cfg: Config) -> list:
    """Report lines: which training images feed the detection loss and which only the
    distillation terms, and how many of each a batch takes."""
    loader = cfg.get('train_dataloader') or {}
    sources, flags = training_sources(cfg)
    if not any(flags):
        return [f'training images: labelled only ({", ".join(_source(d) for d in sources)}); '
                f'batch {loader.get("batch_size")}']
    sampler = loader.get('sampler') or {}
    ratio = sampler.get('source_ratio')
    batch = sampler.get('batch_size', loader.get('batch_size'))
    if not ratio or len(ratio) != len(sources):
        return [f'training images: {sum(flags)} unlabelled source(s) among {len(sources)}, '
                f'sampled by {sampler.get("type")} without a source_ratio per source: how many '
                f'labelled images a batch holds is left to chance. Use GroupMultiSourceSampler '
                f'with source_ratio (docs/unlabelled.md).']
    # (MultiSourceSampler: int(batch * r / sum) per source, the remainder to the first)
    counts = [int(batch * r / sum(ratio)) for r in ratio]
    counts[0] += batch - sum(counts)
    lines = [f'training images, batch {batch}:']
    for d, n, unlabelled in zip(sources, counts, flags):
        role = ('unlabelled: distillation terms only' if unlabelled else
                'labelled: detection loss and distillation terms')
        lines.append(f'  {n} from {_source(d)} ({role})')
    labelled = sum(n for n, u in zip(counts, flags) if not u)
    lines.append(f'  the detection loss sees {labelled} of the {batch} images a batch, every '
                 f'distillation tap all {batch}')
    return lines


def inspect(cfg: Config, image_size, probe_size=None) -> str:
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from vkd_mmdet.export import builds_distiller
    register_all_modules()
    model_cfg = cfg.get('model', {})
    if not builds_distiller(model_cfg):  # VkDDistiller or a registered subclass
        raise SystemExit(f"inspect_distill.py: the config's model is a "
                         f"{model_cfg.get('type')}, not a VkDDistiller")
    model_cfg = model_cfg.copy()
    ckpt = model_cfg.get('teacher_ckpt')
    model_cfg['teacher_ckpt'] = None  # a dry run: no download, no loading
    if probe_size:
        model_cfg['probe_size'] = tuple(probe_size)
    logger = MMLogger.get_current_instance()
    dry_run = _DropMessage('no teacher_ckpt given')  # it is named above, on purpose not loaded
    logger.addFilter(dry_run)
    try:
        model = MODELS.build(model_cfg)
    finally:
        logger.removeFilter(dry_run)
    if any(training_sources(cfg)[1]):
        from vkd_mmdet.models.unlabelled_split import refuse_unsplittable
        try:  # (refused here as the first unlabelled batch would refuse it)
            refuse_unsplittable(model.student)
        except ValueError as exc:
            raise SystemExit(f'inspect_distill.py: {exc}') from None
    size = model.probe_size  # (enlarged where an input scale shrinks one side)
    scales = ('' if (model.student_input_scale, model.teacher_input_scale) == (1.0, 1.0) else
              f'; inputs resized for the student {model.student_input_scale:g}x, for the '
              f'teacher {model.teacher_input_scale:g}x (levels pair by map size)')
    lines = [f'student: {type(model.student).__name__}, teacher: {type(model.teacher).__name__} '
             f'(teacher_ckpt {ckpt!r}: named, not loaded){scales}',
             f'probe {size[0]}x{size[1]}; memory estimated for {image_size[0]}x{image_size[1]} '
             f'training images', *training_mix(cfg), '']
    total_params = total_bytes = 0
    for spec, (s_feats, t_feats) in zip(model.tap_specs, model.probe_features(size)):
        pairing = model.level_pairings[spec.key]
        losses = model.distill_losses[spec.key]
        lines.append(f"tap '{spec.name}': student '{spec.student}' -> teacher '{spec.teacher}', "
                     f'{pairing.describe()}; level_reduction={spec.level_reduction}')
        recorded = [_recorded(recorder, path) for recorder, path in
                    ((model.student_recorder, spec.student), (model.teacher_recorder, spec.teacher))]
        if any(recorded):
            lines.append(f'  records student {recorded[0] or repr(spec.student)}, '
                         f'teacher {recorded[1] or repr(spec.teacher)}')
        for i, (s, t, loss) in enumerate(zip(s_feats, t_feats, losses)):
            stride = pairing.student_strides[pairing.student[i]] or 1
            positions = (-(-image_size[0] // stride)) * (-(-image_size[1] // stride))
            c_s, c_t = loss.student_channels, loss.teacher_channels
            kept = SAVED_PER_POSITION[bool(getattr(loss, 'recompute', False))]
            saved = positions * 4 * (kept['student'] * c_s + kept['teacher'] * c_t)
            params = sum(p.numel() for p in loss.parameters())
            total_params, total_bytes = total_params + params, total_bytes + saved
            compares = (f'{describe_projector(loss.projector)}, {params:,} parameters; norm='
                        f'{loss.norm} ({loss.norm_side})' if hasattr(loss, 'projector')
                        else 'logits as they are (no projection, no norm)')
            lines.append(
                f'  level {pairing.student[i]}<->{pairing.teacher[i]}: student '
                f"{tuple(s.shape)} stride {pairing.own_stride('student', pairing.student[i])}, "
                f"teacher {tuple(t.shape)} stride {pairing.own_stride('teacher', pairing.teacher[i])}; "
                f'{compares}, loss={loss.loss_name}, weight={loss.loss_weight}, '
                f'recompute={loss.recompute}; ~{saved / 2**20:.1f} MiB per image')
    lines += ['', f'total: {sum(len(v) for v in model.distill_losses.values())} level pairs, '
              f'{total_params:,} projector parameters, ~{total_bytes / 2**20:.0f} MiB per image '
              f'kept for backward by the distillation side (estimate)']
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, 'inspect_distill.py')
    report = inspect(cfg, args.image_size, args.probe_size)
    print(report)
    return report


if __name__ == '__main__':
    main()
