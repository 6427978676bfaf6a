"""benchmarks/bench_cuda_distill.py's checks on the CPU, so the script a GPU machine
runs first cannot rot; they include the maps-ahead and block paths against the plain ones."""
import json

from helpers import load_benchmark


def test_checks_pass_on_the_cpu(tmp_path):
    bench = load_benchmark('bench_cuda_distill')
    status = bench.main(['--device', 'cpu', '--checks-only', '--out', str(tmp_path)])
    checks = json.loads((tmp_path / 'cuda_distill.json').read_text())['checks']
    failed = [c for c in checks if not c['ok']]
    assert status == 0 and not failed, failed
    names = ' '.join(c['check'] for c in checks)
    assert 'orthogonal maps ahead' in names and 'compared in 4 blocks' in names
    assert len(checks) >= 15
