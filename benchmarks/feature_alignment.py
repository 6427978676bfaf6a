"""How much of the teacher's features a trained student's features explain.

A diagnostic for the face-mask benchmark's question "why does VkD tie with no
distillation here?". VkD asks the student's standardised features, mapped by a
1x1 orthonormal map, to match the teacher's standardised features. This script
measures, on val images, for students already trained (cached benchmark runs):

- ``r2_orthonormal``: the share of the teacher's standardised variance that the
  best orthonormal map of the student's standardised features explains (the L2
  version of VkD's objective, at its optimum map; it can be negative, since the map
  cannot scale: a student uncorrelated with the teacher scores ``-C_s/C_t``);
- ``r2_linear``: the same for the best unconstrained linear map (how much of the
  teacher is linearly readable from the student at all);
- ``ceiling``: the most any ``C_s``-channel student could reach through a linear map
  (the teacher's top ``C_s`` principal components).

If the distilled student explains much more of the teacher than the plain one, the
imitation worked and the tie says the imitated features do not carry what the
student's detection lacks; if not, the distillation did not move the features.

Both detectors see the same preprocessed tensor (the student's data preprocessor,
as in ``VkDDistiller``). ``--tap`` picks the features as a distiller's tap does:
``neck`` (the default: every FPN level) or a head tower such as
``bbox_head.cls_convs`` (its output at every level). Levels pair by index; a student
wider than the teacher is refused (VkD maps the narrower side into the wider).

Usage::

    python benchmarks/feature_alignment.py RUN_DIR [RUN_DIR ...] [--teacher RUN_DIR]
        [--tap neck | bbox_head.cls_convs | ...] [--images N] [--out F.md]

where each RUN_DIR is a cached run of ``bench_facemask.py`` (``work_dirs/bench_facemask/
<method>_s<seed>_<key>``); the distilled ones must share one teacher.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class CrossMoments:
    """Running first and second moments of a (student, teacher) feature pair at one
    level, over all images and positions, in float64.

    ``add(s, t)``: ``s`` ``(N, C_s, H, W)``, ``t`` ``(N, C_t, H, W)``."""

    def __init__(self):
        self.n = 0
        self.sums = None

    def add(self, s: torch.Tensor, t: torch.Tensor) -> None:
        if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
            raise ValueError(f'feature_alignment: student map {tuple(s.shape)} and teacher map '
                             f'{tuple(t.shape)} differ in batch or size; levels pair by index')
        s = s.detach().double().transpose(0, 1).flatten(1)  # (C_s, N*H*W)
        t = t.detach().double().transpose(0, 1).flatten(1)
        sums = dict(s=s.sum(1), t=t.sum(1), ss=s @ s.T, tt=t @ t.T, ts=t @ s.T)
        self.sums = sums if self.sums is None else {k: self.sums[k] + v for k, v in sums.items()}
        self.n += s.shape[1]

    def correlations(self):
        """The standardised covariances ``(C_ss, C_tt, C_ts)``: correlation matrices."""
        n, m = self.n, self.sums
        mu_s, mu_t = m['s'] / n, m['t'] / n
        cov_ss = m['ss'] / n - torch.outer(mu_s, mu_s)
        cov_tt = m['tt'] / n - torch.outer(mu_t, mu_t)
        cov_ts = m['ts'] / n - torch.outer(mu_t, mu_s)
        # the same epsilon as VkD's standardisation, so a dead channel counts as zero
        from vkd_mmdet.models.feature_norm import STANDARDIZE_EPS
        r_s = torch.rsqrt(cov_ss.diagonal().clamp_min(0) + STANDARDIZE_EPS)
        r_t = torch.rsqrt(cov_tt.diagonal().clamp_min(0) + STANDARDIZE_EPS)
        return (r_s[:, None] * cov_ss * r_s, r_t[:, None] * cov_tt * r_t,
                r_t[:, None] * cov_ts * r_s)


def alignment(moments: CrossMoments) -> dict:
    """``r2_orthonormal``, ``r2_linear`` and ``ceiling`` of one level (see the module)."""
    c_ss, c_tt, c_ts = moments.correlations()
    c_s, c_t = c_ss.shape[0], c_tt.shape[0]
    if c_s > c_t:
        raise ValueError(f'feature_alignment: the student ({c_s} channels) is wider than the '
                         f'teacher ({c_t}); only narrower-or-equal students are measured')
    var_t = c_tt.trace()
    # E|t - W s|^2 = tr C_tt + tr(W^T W C_ss) - 2<C_ts, W>; with W^T W = I the middle term
    # is tr C_ss, and the best W (polar factor of C_ts) makes <C_ts, W> its nuclear norm.
    nuclear = torch.linalg.svdvals(c_ts).sum()
    r2_orth = (2 * nuclear - c_ss.trace()) / var_t
    r2_lin = (c_ts @ torch.linalg.pinv(c_ss, hermitian=True) @ c_ts.T).trace() / var_t
    top = torch.linalg.eigvalsh(c_tt).flip(0)[:c_s].clamp_min(0).sum() / var_t
    return dict(r2_orthonormal=float(r2_orth), r2_linear=float(r2_lin), ceiling=float(top),
                student_channels=c_s, teacher_channels=c_t, positions=moments.n)


def config_of(run_dir: Path) -> Path:
    """The config a run was trained with: mmengine dumps it into the run's folder."""
    configs = sorted(run_dir.glob('*.py'))
    if len(configs) != 1:
        raise SystemExit(f'feature_alignment: {run_dir} holds {len(configs)} config files '
                         f'({[p.name for p in configs]}); one, the run\'s, was expected')
    return configs[0]


def finished_run(run_dir: Path) -> dict:
    """The ``result.json`` of a finished, successful benchmark run, or a ``SystemExit``
    saying why ``run_dir`` is not one."""
    path = Path(run_dir) / 'result.json'
    if not path.is_file():
        raise SystemExit(f'feature_alignment: {run_dir} is not a finished bench_facemask run '
                         f'(no {path.name}); name a run folder whose training has ended')
    result = json.loads(path.read_text())
    if result.get('failed'):
        raise SystemExit(f'feature_alignment: the run in {run_dir} failed '
                         f'({result.get("error", "no error recorded")}); it has no model to measure')
    return result


def student_files(run_dir: Path):
    """The plain mmdet detector of a cached run: ``(config, checkpoint, result)``.
    Distiller runs export their student (``student/``); runs without distillation, and
    the teacher's, are one."""
    result = finished_run(run_dir)
    exported = run_dir / 'student' / 'student_final.pth'
    if exported.is_file():
        return run_dir / 'student' / 'student_config.py', exported, result
    if result['method'] not in ('none', 'teacher'):
        raise SystemExit(f'feature_alignment: {run_dir} ({result["method"]}) has no exported '
                         f'student ({exported}); only runs without distillation or through '
                         f'VkDDistiller can be measured')
    return config_of(run_dir), Path(result['checkpoint']), result


def build_detector(config: Path, checkpoint: Path):
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from vkd_mmdet.checkpoint import load_teacher_checkpoint
    cfg = Config.fromfile(str(config))
    model = MODELS.build(cfg.model)
    load_teacher_checkpoint(model, str(checkpoint))
    return model.eval(), cfg


def teacher_checkpoint(run_dirs, teacher: str = None) -> Path:
    """The teacher's checkpoint: ``teacher`` (a teacher run folder or a checkpoint) or
    the one every distilled run names (runs without distillation name none)."""
    if teacher:
        path = Path(teacher)
        return Path(finished_run(path)['checkpoint']) if path.is_dir() else path
    named = {json.loads((Path(d) / 'spec.json').read_text()).get('teacher_ckpt')
             for d in run_dirs} - {None}
    if len(named) != 1:
        raise SystemExit(f'feature_alignment: the distilled runs name '
                         f'{len(named)} teachers ({sorted(named)}); pass --teacher, a teacher '
                         f'run folder, to say which one to measure against')
    return Path(named.pop())


class TapFeatures:
    """A detector's features at a tap, as the distiller records them: ``neck`` through
    ``extract_feat``, anything else (a head tower) through a recorder on the full
    forward pass, one level per call."""

    def __init__(self, model, tap: str):
        from vkd_mmdet.models.feature_recorder import FeatureRecorder
        self.model, self.tap = model, tap
        self.recorder = None if tap == 'neck' else FeatureRecorder(model, [tap])

    def __call__(self, inputs):
        from vkd_mmdet.models.taps import feature_levels
        if self.recorder is None:
            return self.model.extract_feat(inputs)
        with self.recorder.record() as out:
            self.model._forward(inputs)
        return feature_levels(out[self.tap], self.tap, 'model')


def measure(run_dirs, teacher: str = None, images: int = None, batch_size: int = 8,
            tap: str = 'neck') -> dict:
    """Per run, per level and averaged over levels, the alignment of its student with
    the teacher (see ``teacher_checkpoint``) at ``tap`` on the first ``images`` val
    images (all by default)."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    import vkd_mmdet  # noqa: F401  (registers the plugin's modules)
    init_default_scope('mmdet')
    teacher_ckpt = teacher_checkpoint(run_dirs, teacher)
    teacher, _ = build_detector(config_of(teacher_ckpt.parent), teacher_ckpt)
    teacher_feats = TapFeatures(teacher, tap)
    students = []
    for d in map(Path, run_dirs):
        config, ckpt, result = student_files(d)
        model, cfg = build_detector(config, ckpt)
        students.append((d, result, TapFeatures(model, tap), cfg))
    loader_cfg = dict(students[0][3].val_dataloader, batch_size=batch_size, num_workers=0,
                      persistent_workers=False)
    if images:
        loader_cfg['dataset'] = dict(loader_cfg['dataset'], indices=images)
    loader = Runner.build_dataloader(loader_cfg)
    moments = [None] * len(students)
    with torch.no_grad():
        for batch in loader:
            inputs = students[0][2].model.data_preprocessor(batch, False)['inputs']
            t_feats = teacher_feats(inputs)
            for i, (_, _, features, _) in enumerate(students):
                s_feats = features(inputs)
                if moments[i] is None:
                    moments[i] = [CrossMoments() for _ in s_feats]
                for m, s, t in zip(moments[i], s_feats, t_feats):
                    m.add(s, t)
    out = {}
    for (d, result, _, _), levels in zip(students, moments):
        per_level = [alignment(m) for m in levels]
        mean = {k: sum(l[k] for l in per_level) / len(per_level)
                for k in ('r2_orthonormal', 'r2_linear', 'ceiling')}
        out[d.name] = dict(method=result['method'], seed=result['seed'], tap=tap,
                           protocol=result['protocol'], bbox_mAP=result.get('bbox_mAP'),
                           levels=per_level, mean=mean)
    return out


def markdown(results: dict, command: str, tap: str = 'neck') -> str:
    where = 'FPN' if tap == 'neck' else f"'{tap}'"
    lines = [f'# Feature alignment of trained students with their teacher ({tap})', '',
             f'Reproduce: `{command}`', '',
             f'Shares of the teacher\'s standardised {where} variance (val images, mean over '
             'levels) that a student\'s standardised features explain: through the best '
             'orthonormal 1x1 map (VkD\'s constraint), through the best linear map, and the '
             'most any student of that width could (see benchmarks/feature_alignment.py).', '',
             '| run | protocol | method | seed | bbox mAP | orthonormal | linear | ceiling | '
             'orthonormal per level |', '|---|---|---|---|---|---|---|---|---|']
    for name, r in results.items():
        m = r['mean']
        per_level = ', '.join(f'{l["r2_orthonormal"]:.2f}' for l in r['levels'])
        mAP = '' if r['bbox_mAP'] is None else f'{100 * r["bbox_mAP"]:.1f}'
        lines.append(f'| {name} | {r["protocol"]} | {r["method"]} | {r["seed"]} | {mAP} | '
                     f'{m["r2_orthonormal"]:.3f} | {m["r2_linear"]:.3f} | {m["ceiling"]:.3f} | '
                     f'{per_level} |')
    return '\n'.join(lines) + '\n'


def _shown(path) -> str:
    """A run folder as the reproduce line names it: relative to the project if inside."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', help='cached bench_facemask run folders')
    parser.add_argument('--teacher', help='the teacher run folder (default: the one the '
                                          'distilled runs name)')
    parser.add_argument('--tap', default='neck',
                        help="'neck' (default: the FPN levels) or a head tower such as "
                             "'bbox_head.cls_convs' (every level)")
    parser.add_argument('--images', type=int, help='the first N val images (default: all)')
    parser.add_argument('--out', help='write the table here (.md) and the numbers beside it '
                                      '(.json)')
    args = parser.parse_args(argv)
    results = measure(args.runs, args.teacher, args.images, tap=args.tap)
    command = 'python benchmarks/feature_alignment.py ' + ' '.join(
        ([f'--teacher {_shown(args.teacher)}'] if args.teacher else []) +
        ([f'--tap {args.tap}'] if args.tap != 'neck' else []) +
        ([f'--images {args.images}'] if args.images else []) + [_shown(r) for r in args.runs])
    text = markdown(results, command, args.tap)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix('.json').write_text(json.dumps(results, indent=1))
    return results


if __name__ == '__main__':
    main()
