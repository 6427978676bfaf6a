"""`make demo QUICK=1` end to end: tools/demo.py --quick, then its outputs."""
import json
import subprocess
import sys

import pytest

from helpers import load_tool, read_scalars
from vkd_mmdet.checkpoint import safe_load

LOAD_IN_STOCK_MMDET = r'''
import sys
from mmdet.apis import init_detector, inference_detector
model = init_detector(sys.argv[1], sys.argv[2], device='cpu')
assert 'vkd_mmdet' not in sys.modules, 'the exported student must not need the plugin'
inference_detector(model, sys.argv[3])
# A checksum of the weights stock mmdet runs with, to compare with the training run's.
print(repr(sum(float(v.double().sum()) for v in model.state_dict().values()
               if v.is_floating_point())))
'''


@pytest.fixture(scope='module')
def quick_demo(tmp_path_factory):
    work = tmp_path_factory.mktemp('demo')
    load_tool('demo').main(['--quick', '--work-dir', str(work)])
    return work / 'quick'


def test_quick_demo_writes_table_plot_and_a_stock_loadable_student(quick_demo, tmp_path):
    results = json.loads((quick_demo / 'results.json').read_text())
    assert results['protocol'] == 'quick' and results['seed'] == 0
    assert list(results['runs']) == ['teacher', 'plain student', 'VkD student']
    for name, run in results['runs'].items():
        assert run['train_seconds'] > 0
        # The reported numbers are the run's own evaluation (quick runs detect
        # nothing: mmdet then logs no mAP, and the demo reports 0 with a note).
        logged = [r for r in read_scalars(run['scalars']) if 'coco/bbox_mAP' in r]
        if logged:
            assert (run['bbox_mAP'], run['bbox_mAP_50']) == (
                logged[-1]['coco/bbox_mAP'], logged[-1]['coco/bbox_mAP_50']), name
        else:
            assert run['note'].startswith('no detections') and run['bbox_mAP'] == 0.0, name
    assert results['runs']['teacher']['cached'] is False

    table = (quick_demo / 'results.md').read_text()
    for name in results['runs']:
        assert f'| {name} |' in table
    assert 'VkD - plain student:' in table

    png = (quick_demo / 'demo.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000
    import matplotlib.image
    height, width = matplotlib.image.imread(str(quick_demo / 'demo.png')).shape[:2]
    assert width > 800 and height > 300

    # The VkD run logged its distillation term, and the plain run had none.
    def keys(run):
        lines = open(results['runs'][run]['scalars']).read().splitlines()
        return set().union(*(json.loads(line) for line in lines))
    assert 'loss_vkd_neck' in keys('VkD student')
    assert 'loss_vkd_neck' not in keys('plain student')

    image = next((quick_demo / 'shapes' / 'val').glob('*.png'))
    out = subprocess.run([sys.executable, '-c', LOAD_IN_STOCK_MMDET,
                          str(quick_demo / 'vkd_student_config.py'),
                          str(quick_demo / 'vkd_student.pth'), str(image)],
                         check=True, cwd=tmp_path, capture_output=True, text=True)
    # Stock mmdet runs the distilled student's trained weights (its last checkpoint).
    trained = safe_load(results['runs']['VkD student']['checkpoint'])['state_dict']
    expected = sum(float(v.double().sum()) for k, v in trained.items()
                   if k.startswith('student.') and v.is_floating_point())
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-9)


def test_quick_demo_reuses_its_cached_teacher(quick_demo):
    demo = load_tool('demo')
    n_train, n_val, teacher_epochs, _ = demo.PROTOCOLS['quick']
    params = dict(num_train=n_train, num_val=n_val, size=128, seed=0)
    cached = demo.teacher(quick_demo, quick_demo / 'shapes', params, teacher_epochs, 0)
    assert cached['cached'] is True
    first = json.loads((quick_demo / 'results.json').read_text())['runs']['teacher']
    assert cached['checkpoint'] == first['checkpoint']
    assert cached['bbox_mAP'] == first['bbox_mAP']
