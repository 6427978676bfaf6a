"""benchmarks/bench_gpu_cost.py at toy size on the CPU, so it cannot rot between GPU runs."""
import json

import pytest

from helpers import load_benchmark


def test_tiny_run_times_every_case_and_profiles_the_vkd_step(tmp_path):
    bench = load_benchmark('bench_gpu_cost')
    result = bench.main(['--tiny', '--configs', 'vkd_retinanet_r50', '--profile',
                         '--out', str(tmp_path)])
    r = result['configs']['vkd_retinanet_r50']
    assert set(r['ms']) == {'student', 'teacher', 'vkd', 'vkd_neck'}
    assert all(ms > 0 for ms in r['ms'].values())
    # The VkD step runs the student step and the X101 teacher: it costs more than either.
    assert r['ms']['vkd'] > max(r['ms']['student'], r['ms']['teacher'])
    assert r['ratio'] == pytest.approx(r['ms']['vkd'] / (r['ms']['student'] + r['ms']['teacher']))
    assert r['memory']['vkd'] == {'peak_mib': None}  # no GPU: not measured, and said so
    saved = json.loads((tmp_path / 'gpu_cost_tiny.json').read_text())
    assert saved['machine'] == result['machine'] and 'CPU cores' in saved['machine']
    assert saved['configs']['vkd_retinanet_r50']['ms'] == r['ms']
    table = (tmp_path / 'gpu_cost_tiny.md').read_text()
    assert f'| vkd_retinanet_r50 | {r["ms"]["student"]:.1f} |' in table
    # The profile names the distiller's parts.
    profile = (tmp_path / 'gpu_cost_tiny_profiles.txt').read_text()
    assert profile.startswith('# vkd_retinanet_r50: one VkD training step')
    for part in ('vkd:orthogonal_maps', 'vkd:teacher', 'vkd:student', 'vkd:distill_neck',
                 'vkd:distill_backbone'):
        assert f'| {part} | ' in profile


def test_append_refuses_results_measured_with_other_settings(tmp_path):
    bench = load_benchmark('bench_gpu_cost')
    earlier = dict(device='cuda', amp='fp16', batch=8, size=[800, 1344], tap_options={},
                   reps=10, warmup=3, command='python benchmarks/bench_gpu_cost.py',
                   configs={'vkd_retinanet_r50': {}})
    (tmp_path / 'gpu_cost_tiny.json').write_text(json.dumps(earlier))
    with pytest.raises(SystemExit, match=r'--append to .*gpu_cost_tiny.json, which was measured '
                                         r'with other settings: device cuda \(now cpu\)'):
        bench.main(['--tiny', '--append', '--configs', 'vkd_fcos_r50', '--out', str(tmp_path)])
