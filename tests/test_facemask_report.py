"""The face-mask report's paired comparison: the same seeds, their differences, the
standard error of the mean difference and a verdict only beyond two of them."""
import pytest

from helpers import load_benchmark


def runs(method, maps):
    return [dict(method=method, seed=seed, bbox_mAP=m / 100, bbox_mAP_50=0.0)
            for seed, m in maps.items()]


def test_paired_differences_use_only_the_seeds_both_finished():
    report = load_benchmark('facemask_report')
    plain = runs('none', {0: 17.6, 1: 17.1, 2: 17.8, 3: 15.3})
    vkd = runs('vkd', {0: 16.9, 1: 17.6, 2: 16.6, 4: 19.4}) + [
        dict(method='vkd', seed=3, failed=True)]
    pair = report.paired(vkd, plain)
    assert pair['seeds'] == [0, 1, 2]
    assert pair['diffs'] == [-0.7, 0.5, -1.2]
    assert pair['mean'] == pytest.approx(-1.4 / 3)
    # sample standard deviation over sqrt(n)
    assert pair['se'] == pytest.approx(0.8737 / 3 ** 0.5, abs=1e-4)
    assert pair['verdict'] == 'tie'
    assert pair['method_map'] == pytest.approx(17.0333, abs=1e-4)
    assert pair['plain_map'] == pytest.approx(17.5)


def test_a_gain_needs_more_than_two_standard_errors():
    report = load_benchmark('facemask_report')
    plain = runs('none', {0: 17.0, 1: 17.0, 2: 17.0})
    assert report.paired(runs('x', {0: 19.0, 1: 18.5, 2: 19.5}), plain)['verdict'] == 'gain'
    assert report.paired(runs('x', {0: 15.0, 1: 15.5, 2: 14.5}), plain)['verdict'] == 'loss'
    assert report.paired(runs('x', {0: 19.0, 1: 16.0, 2: 18.0}), plain)['verdict'] == 'tie'
    # +1.0 with a standard error of 0.58: more than one, less than two
    assert report.paired(runs('x', {0: 19.0, 1: 17.0, 2: 18.0}), plain)['verdict'] == 'tie'
    assert report.paired(runs('x', {0: 19.0}), plain)['verdict'] == 'one seed'
    assert report.paired(runs('x', {7: 19.0}), plain)['verdict'] == 'not run yet'
    rows = report.paired_rows({'none': plain, 'x': runs('x', {0: 19.0, 1: 18.5, 2: 19.5})},
                              {'none': dict(label='plain'), 'x': dict(label='variant')})
    assert rows == ['| variant | 0, 1, 2 | 19.00 | 17.00 | +2.0, +1.5, +2.5 | '
                    '+2.00 ± 0.29: gain | – | – |']


def test_a_protocol_report_lists_the_methods_it_compares_and_each_runs_teacher(tmp_path):
    """The cpu-hires report has rows for its own methods (prediction mimicking among
    them, although it is no VkD ablation) and none for methods it never runs; it
    names the teacher weights of every distilled run."""
    import json
    bench = load_benchmark('bench_facemask')
    report = load_benchmark('facemask_report')
    run = dict(protocol='cpu-hires', epochs=12, bbox_mAP=0.2, bbox_mAP_50=0.35,
               train_seconds=60.0, per_epoch=[dict(epoch=12, bbox_mAP=0.2, bbox_mAP_50=0.35)])
    for method, seed, sha in [('none', 0, None), ('pm', 0, 'ab' * 32), ('vkd', 1, 'cd' * 32)]:
        (tmp_path / f'cpu-hires_{method}_s{seed}.json').write_text(json.dumps(
            dict(run, method=method, seed=seed, teacher_sha256=sha)))
    text = report.write_report(tmp_path, 'cpu-hires', bench.PROTOCOLS, bench.METHODS,
                               bench.MAIN_METHODS, bench.ABLATION_NOTE).read_text()
    rows = [line.split(' | ')[0][2:] for line in text.splitlines() if line.startswith('| ')]
    labels = {name: bench.METHODS[name]['label'] for name in bench.METHODS}
    for name in ('pm', 'vkd_pm', 'pkd'):
        assert labels[name] in rows, name
    for name in ('fitnet', 'mmrazor_pkd', 'vkd_head', 'vkd_weight1'):
        assert labels[name] not in rows, name
    assert f'`{"ab" * 8}`: pm s0; `{"cd" * 8}`: vkd s1.' in text
