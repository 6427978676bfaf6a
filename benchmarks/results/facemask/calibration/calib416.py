import sys; from pathlib import Path
sys.path.insert(0, '/work/main')
import benchmarks.bench_facemask as b
b.PROTOCOLS['calib416'] = dict(b.PROTOCOLS['full'], epochs=3, student_warmup=50, scale=(416, 416),
                               student_cfg='facemask_student_lite0_fpn64.py')
spec = b.run_spec('none', 0, 'calib416', Path('/work/shared/data/facemask'), device='cpu')
print(b.ensure(spec, Path('/tmp/calib_cache'), Path('/tmp/calib_out')))
