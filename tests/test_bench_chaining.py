'''bench/chaining.py: the episode split on a real (tiny) dataset cache built from bags.'''

from pathlib import Path
import sys

import numpy as np

from am_learning.config import RelabelConfig
from am_learning.data import DatasetConfig, build_cache, load_dataset
from am_learning.data.synthetic import EpisodeSpec, write_synthetic_bag
from am_learning.relabel import RelabelSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))
import chaining  # noqa: E402


def test_split_ends_cuts_every_episode_at_its_midpoint():
    assert list(chaining.split_ends(np.array([6, 11, 15]))) == [3, 6, 8, 11, 13, 15]
    # Too short to give two episodes with a transition each (3 frames): left whole.
    assert list(chaining.split_ends(np.array([3, 10]))) == [3, 6, 10]


def test_split_cache_keeps_frames_and_cuts_episodes(tmp_path):
    config = DatasetConfig(use_images=False, require_state=True)
    bags = tmp_path / 'bags'
    write_synthetic_bag(bags / 'a', [EpisodeSpec(8)], config=config, state_dim=4, seed=1)
    write_synthetic_bag(bags / 'b', [EpisodeSpec(7)], config=config, state_dim=4, seed=2)
    source = build_cache(bags, tmp_path / 'cache', config, progress=False, workers=1)
    full = load_dataset(source)
    manifest = chaining.split_cache(source, tmp_path / 'split')
    split = load_dataset(tmp_path / 'split', mmap=False)

    assert list(full.episode_ends) == [8, 15]
    assert list(split.episode_ends) == [4, 8, 11, 15]
    for name in ('actions', 'proprio', 'states'):
        assert np.array_equal(getattr(split, name), getattr(full, name)), name
    assert manifest['counts']['episodes'] == 4
    entries = split.manifest['episodes']
    assert [(e['start_index'], e['end_index'], e['half']) for e in entries] == [
        (0, 4, 0), (4, 8, 1), (8, 11, 0), (11, 15, 1)]
    assert [e['split_of'] for e in entries] == [0, 0, 1, 1]
    assert entries[0]['episode_id'] == entries[0]['source_episode_id'] + '_half0'
    assert split.manifest['normalization'] == full.manifest['normalization']

    # Training never sees a transition across a cut, nor a hindsight goal beyond it.
    sampler = RelabelSampler(split, RelabelConfig(), np.random.default_rng(0), gamma=0.99)
    batch = sampler.sample(2000)
    episode = split.episode_index()
    assert np.all(episode[batch.obs] == episode[batch.next_obs])
    assert np.all(episode[batch.obs] == episode[batch.cut])
    assert not np.any(np.isin(batch.obs, [3, 10]))  # last frames of first halves
