"""Report of the few-labels protocol (cpu-fewlabels): a labelled quarter L of the
face-mask training set, the rest U without labels; every method paired with the
student trained on L alone, and set against the oracle (the same student on all
labels: cpu-hires's runs without distillation, same iterations and machine)."""
import statistics
from pathlib import Path

from benchmarks.facemask_report import PAIRED_HEADER, _load, paired_methods, paired_rows

ORACLE_PROTOCOL = 'cpu-hires'


def gap_closed_rows(runs: dict, oracle: list, methods: dict) -> list:
    """Per method, the share of the label gap it closes: (method - none) / (oracle -
    none), with the paired means on the method's seeds and the oracle's mean."""
    oracle_ok = [100 * r['bbox_mAP'] for r in oracle if not r.get('failed')]
    if not oracle_ok:
        return ['(the oracle has not run on this machine yet)']
    oracle_map = statistics.fmean(oracle_ok)
    rows = ['| method | paired difference (mAP) | oracle - none (mAP) | share of the gap closed |',
            '|---|---|---|---|']
    for name, pair in paired_methods(runs, methods):
        gap = oracle_map - pair['plain_map']
        rows.append(f'| {methods[name]["label"]} | {pair["mean"]:+.2f} | {gap:.2f} | '
                    f'{pair["mean"] / gap:+.0%} |' if gap > 0 else
                    f'| {methods[name]["label"]} | {pair["mean"]:+.2f} | {gap:.2f} | – |')
    return rows


def write_fewlabels_report(out: Path, protocol: str, protocols: dict, methods: dict,
                           command: str) -> Path:
    runs = _load(Path(out), protocol)
    oracle = _load(Path(out), ORACLE_PROTOCOL).get('none', [])
    p = protocols[protocol]
    teacher = runs.get('teacher', [{}])[0]
    plain = [r for r in runs.get('none', []) if not r.get('failed')]
    lines = [f'# Face-mask benchmark, few labels ({protocol})', '',
             f'Reproduce: `{command}` (finished runs are cached; `python '
             f'benchmarks/bench_facemask.py --protocol {protocol} report` rebuilds this file).',
             '',
             f"Split: benchmarks/splits/{p['labelled_split']} (labelled L and unlabelled U image "
             f'ids, drawn once with seed 0); U\'s boxes are removed before anything reads it. '
             f"Students train {p['student_iters']} iterations, validated every "
             f"{p['student_val_iters']}; methods that read U take {p['unlabelled_per_batch']} of "
             f'its images beside the 8 labelled ones a step.', '']
    machines = sorted({r['machine'] for rs in runs.values() for r in rs if r.get('machine')})
    if machines:
        lines += [f'Machine: {"; ".join(machines)}.', '']
    if teacher.get('bbox_mAP') is not None:
        lines += [f"Teacher (trained on L only): {100 * teacher['bbox_mAP']:.1f} bbox mAP, "
                  f"{100 * teacher['bbox_mAP_50']:.1f} mAP50, "
                  f"{teacher['train_seconds'] / 60:.0f} min."]
        if plain:
            mean = statistics.fmean(100 * r['bbox_mAP'] for r in plain)
            lines += [f'Student without distillation on L: {mean:.2f} bbox mAP over seeds '
                      f"{', '.join(str(r['seed']) for r in plain)}: the teacher leads by "
                      f"{100 * teacher['bbox_mAP'] - mean:+.2f}."]
        lines += ['']
    oracle_ok = [r for r in oracle if not r.get('failed')]
    if oracle_ok:
        lines += [f"Oracle (the same student on all 677 labels, {ORACLE_PROTOCOL}'s runs without "
                  f"distillation, 1020 iterations): "
                  f"{statistics.fmean(100 * r['bbox_mAP'] for r in oracle_ok):.2f} bbox mAP over "
                  f"seeds {', '.join(str(r['seed']) for r in oracle_ok)}"
                  + (f"; the label gap to the student on L: "
                     f"{statistics.fmean(100 * r['bbox_mAP'] for r in oracle_ok) - statistics.fmean(100 * r['bbox_mAP'] for r in plain):+.2f}"
                     if plain else '') + '.', '']
    shas = sorted({r['teacher_sha256'] for rs in runs.values() for r in rs
                   if r.get('teacher_sha256')})
    if shas:
        lines += [f"Students' teacher weights (sha256): {', '.join(shas)}.", '']
    lines += ['## Paired with the student on L alone', '',
              'bbox mAP at the last validation; a verdict only where the mean paired '
              'difference is beyond twice its standard error.', '', *PAIRED_HEADER,
              *paired_rows(runs, methods), '', '## Share of the label gap closed', '',
              *gap_closed_rows(runs, oracle, methods), '',
              '## bbox mAP at each validation', '', *curve_rows(runs, methods), '']
    path = Path(out) / f'report_{protocol}.md'
    path.write_text('\n'.join(lines))
    _plot(Path(out), protocol, runs, methods)
    return path


def validation_curves(runs: dict) -> dict:
    """``{method: (iterations, mean bbox mAP % of its seeds at each, seeds)}``."""
    curves = {}
    for name, rs in runs.items():
        ok = [r for r in rs if not r.get('failed') and r.get('per_validation')]
        if not ok or name == 'teacher':
            continue
        points = [e['iteration'] for e in ok[0]['per_validation']]
        means = [statistics.fmean(100 * r['per_validation'][i]['bbox_mAP'] for r in ok
                                  if len(r['per_validation']) > i) for i in range(len(points))]
        curves[name] = (points, means, len(ok))
    return curves


def curve_rows(runs: dict, methods: dict) -> list:
    """Mean bbox mAP of each method's seeds at each validation point."""
    rows = [f"| {methods.get(name, {}).get('label', name)} | {seeds} | "
            + ' | '.join(f'{it}: {m:.1f}' for it, m in zip(points, means)) + ' |'
            for name, (points, means, seeds) in validation_curves(runs).items()]
    return ['| method | seeds | iteration: mAP ... |', '|---|---|---|', *rows] if rows else []


def _plot(out: Path, protocol: str, runs: dict, methods: dict) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (points, means, seeds) in validation_curves(runs).items():
        ax.plot(points, means, marker='o',
                label=f"{methods.get(name, {}).get('label', name)} ({seeds} seeds)")
    ax.set_xlabel('iteration')
    ax.set_ylabel('face-mask val bbox mAP (%)')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f'map_per_validation_{protocol}.png', dpi=100)
    plt.close(fig)
