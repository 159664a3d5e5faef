'''Fixtures of the policy node's tests: one small trained checkpoint per test session.'''

from pathlib import Path

import pytest


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    '''A real, briefly trained image-based AM checkpoint (32 px, point-world data).'''
    from am_learning.testing import train_tiny_checkpoint

    return train_tiny_checkpoint(tmp_path_factory.mktemp('policy_ckpt'), image_size=32,
                                 updates=40, seed=0)
