import pytest

from helpers import small_pair as _small_pair


@pytest.fixture(scope='session')
def small_pair():
    return _small_pair()
