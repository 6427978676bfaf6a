import os

ON_XDIST_WORKER = bool(os.environ.get('PYTEST_XDIST_WORKER'))
if ON_XDIST_WORKER:
    # `pytest -n 2` (the README's command): two workers share the two cores, so each
    # computes on one thread, and so do the processes its tests start.
    os.environ['OMP_NUM_THREADS'] = '1'

import pytest  # noqa: E402
import torch  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

if ON_XDIST_WORKER:
    torch.set_num_threads(1)

register_all_modules()  # default scope 'mmdet', as MMDetection's own tools set it

from helpers import small_pair as _small_pair  # noqa: E402


@pytest.fixture(scope='session')
def small_pair():
    return _small_pair()
