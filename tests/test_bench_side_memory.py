"""benchmarks/bench_side_memory.py at a small size, so it cannot rot."""
import json

from helpers import load_benchmark


def test_small_run_measures_each_setting_in_its_own_process(tmp_path):
    bench = load_benchmark('bench_side_memory')
    bench.main(['--shape', '4', '16', '32', '32', '--settings', 'None', str(16 * 32 * 32),
                '--repeats', '2', '--out', str(tmp_path)])
    result = json.loads((tmp_path / 'side_memory.json').read_text())
    runs = {r['chunk_elements']: r for r in result['runs']}
    assert runs[None]['blocks'] == 1 and runs[16 * 32 * 32]['blocks'] == 4
    # (a tiny map's step can round to 0.00 s)
    assert all(r['peak_above_start_mib'] >= 0 and r['seconds'] >= 0 for r in runs.values())
    # the median of the two rounds, inside their range
    assert all(lo <= r['seconds'] <= hi for r in runs.values() for lo, hi in [r['seconds_range']])
    assert '| None | 1 |' in (tmp_path / 'side_memory.md').read_text()
