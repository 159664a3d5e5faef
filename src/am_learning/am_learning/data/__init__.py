'''Datasets: rosbag2 episodes -> time-aligned frames -> a memory-mappable cache.

API for the learner: `DatasetConfig`, `build_cache`, `load_dataset`, `dataset_from_bags`
(build when stale, then load) and `EpisodeDataset`; `DatasetError` for every failure that
a user must fix (no bags, no usable episode, a damaged cache). The names load lazily, so
importing `am_learning.data.dataset` alone does not pull in rosbags and OpenCV.
'''

import importlib

_EXPORTS = {
    'DatasetConfig': 'am_learning.data.config',
    'DatasetError': 'am_learning.data.config',
    'EpisodeDataset': 'am_learning.data.dataset',
    'build_cache': 'am_learning.data.cache',
    'dataset_from_bags': 'am_learning.data.cache',
    'is_cache_fresh': 'am_learning.data.cache',
    'load_dataset': 'am_learning.data.cache',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
