"""The calibration run of calib416_none_s0.json: the Lite0 student without distillation
at 416 px for 3 epochs, alone (no teacher), under a temporary protocol name."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))
import benchmarks.bench_facemask as b  # noqa: E402

b.PROTOCOLS['calib416'] = dict(b.PROTOCOLS['full'], epochs=3, student_warmup=50, scale=(416, 416),
                               student_cfg='facemask_student_lite0_fpn64.py')
spec = b.run_spec('none', 0, 'calib416', ROOT.parent / 'shared' / 'data' / 'facemask', device='cpu')
print(b.ensure(spec, Path('/tmp/calib_cache'), Path('/tmp/calib_out')))
