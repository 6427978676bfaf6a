"""benchmarks/bench_facemask_cost.py at a small size, so it cannot rot (it once called the
accuracy benchmark's MMRazor builder with an outdated signature)."""
import json

from helpers import load_benchmark


def test_small_run_times_and_measures_every_model(tmp_path):
    bench = load_benchmark('bench_facemask_cost')
    # (a neck-tap and a head-tap distiller and the peer; the student and the teacher
    # forwards they are set against come with them)
    bench.main(['--reps', '1', '--batch', '1', '--out', str(tmp_path),
                '--models', 'vkd', 'pm', 'mmrazor_pkd'])
    result = json.loads((tmp_path / 'facemask_cost.json').read_text())
    models = {'student', 'teacher_forward', 'teacher_forward_head', 'vkd', 'pm', 'mmrazor_pkd'}
    assert set(result['seconds_per_iter_median']) == models
    assert all(s > 0 for s in result['seconds_per_iter_median'].values())
    assert set(result['peak_rss_mib']) == models
    assert all(mib > 100 for mib in result['peak_rss_mib'].values())  # a real process each
    med = result['seconds_per_iter_median']
    assert result['overhead_vs_student_plus_teacher'] == (
        med['vkd'] / (med['student'] + med['teacher_forward']))
    # prediction mimicking reads the teacher's classifier: set against the head forward
    assert result['overhead_per_distiller']['pm'] == (
        med['pm'] / (med['student'] + med['teacher_forward_head']))
    assert 'VkD' in (tmp_path / 'facemask_cost.md').read_text()
