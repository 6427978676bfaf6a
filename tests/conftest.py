import pytest
from mmdet.utils import register_all_modules

register_all_modules()  # default scope 'mmdet', as MMDetection's own tools set it

from helpers import small_pair as _small_pair


@pytest.fixture(scope='session')
def small_pair():
    return _small_pair()
