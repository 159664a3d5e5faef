'''Relabeling invariants: goals come from the right episode and position; targets match.'''

import numpy as np
import pytest

from am_learning.config import RelabelConfig
from am_learning.data.dataset import EpisodeDataset
from am_learning.relabel import ObservationGatherer, RelabelSampler, gather


def ragged_dataset() -> EpisodeDataset:
    '''Episodes of lengths 1 (unusable), 2, 7 and 30; states encode (episode, position).'''
    lengths = [1, 2, 7, 30]
    ends = np.cumsum(lengths)
    episode = np.repeat(np.arange(len(lengths)), lengths)
    position = np.concatenate([np.arange(n) for n in lengths])
    states = np.stack([episode, position], axis=1).astype(np.float32)
    n = int(ends[-1])
    return EpisodeDataset(actions=np.zeros((n, 5), np.float32), episode_ends=ends,
                          proprio=np.zeros((n, 7), np.float32), states=states)


def test_goals_come_from_the_cut_of_the_same_episode() -> None:
    ds = ragged_dataset()
    sampler = RelabelSampler(ds, RelabelConfig(hindsight_goal_prob=0.5),
                             np.random.default_rng(0), gamma=0.99)
    b = sampler.sample(20000)
    ep, pos = ds.states[:, 0], ds.states[:, 1]
    # s_t and s_{t+1} are consecutive frames of one episode, never of the unusable one.
    assert np.all(ep[b.obs] == ep[b.next_obs])
    assert np.all(pos[b.next_obs] == pos[b.obs] + 1)
    assert not np.any(ep[b.obs] == 0)
    # The cut s_i lies in the same episode, after s_t (t < i).
    assert np.all(ep[b.cut] == ep[b.obs])
    assert np.all(pos[b.cut] > pos[b.obs])
    # Hindsight goals are the cut; the rest are random dataset frames from everywhere.
    assert np.all(b.goal[b.hindsight] == b.cut[b.hindsight])
    assert abs(b.hindsight.mean() - 0.5) < 0.02
    assert set(np.unique(ep[b.goal[~b.hindsight]])) == {0, 1, 2, 3}


def test_rewards_and_masks_follow_algorithm_1() -> None:
    ds = ragged_dataset()
    b = RelabelSampler(ds, RelabelConfig(goal_offset='uniform'),
                       np.random.default_rng(1)).sample(20000)
    arrival = b.next_obs == b.cut
    # Reward 1 exactly when the hindsight goal is reached by this transition.
    np.testing.assert_array_equal(b.reward, (b.hindsight & arrival).astype(np.float32))
    # Goal chaining: the final transition of a random-goal cut bootstraps from Q(s_i, a_i, g).
    np.testing.assert_array_equal(b.chain, (~b.hindsight & arrival).astype(np.float32))
    # Everything else bootstraps from max_a Q(s_{t+1}, a, g); the three cases are exclusive.
    np.testing.assert_array_equal(b.bootstrap, (~arrival).astype(np.float32))
    np.testing.assert_array_equal(b.reward + b.chain + b.bootstrap, np.ones(len(b)))
    assert not np.any(b.goal_negative)


def test_cut_positions_are_uniform_prefixes() -> None:
    '''t is uniform in 0..i-1 and i uniform in 1..L-1 (one 30-frame episode).'''
    ds = EpisodeDataset(actions=np.zeros((30, 5), np.float32), episode_ends=np.array([30]),
                        proprio=np.zeros((30, 0), np.float32),
                        states=np.arange(30, dtype=np.float32)[:, None])
    b = RelabelSampler(ds, RelabelConfig(goal_offset='uniform'),
                       np.random.default_rng(2)).sample(60000)
    counts = np.bincount(b.cut, minlength=30)
    assert counts[0] == 0 and np.all(counts[1:] > 0)
    assert counts[1:].std() / counts[1:].mean() < 0.1
    # P(arrival) = E[1/i] over i uniform in 1..29.
    expected = np.mean(1.0 / np.arange(1, 30))
    assert abs(np.mean(b.next_obs == b.cut) - expected) < 0.01


@pytest.mark.parametrize('offset', ['uniform', 'geometric'])
def test_max_cut_length_and_goal_chaining_switch(offset: str) -> None:
    ds = ragged_dataset()
    cfg = RelabelConfig(goal_offset=offset, max_cut_length=3, goal_chaining=False)
    b = RelabelSampler(ds, cfg, np.random.default_rng(3), gamma=0.99).sample(5000)
    assert np.all(b.cut - b.obs <= 3)
    assert not np.any(b.chain) and not np.any(b.chained)
    np.testing.assert_array_equal(b.bootstrap, 1.0 - b.reward)


def test_geometric_offsets_cover_transitions_uniformly() -> None:
    '''t uniform over the transitions; i - t geometric, clipped at the episode's last frame.'''
    ds = EpisodeDataset(actions=np.zeros((400, 5), np.float32), episode_ends=np.array([400]),
                        proprio=np.zeros((400, 0), np.float32),
                        states=np.arange(400, dtype=np.float32)[:, None])
    cfg = RelabelConfig(goal_offset='geometric', offset_discount=0.9)
    b = RelabelSampler(ds, cfg, np.random.default_rng(7)).sample(100000)
    counts = np.bincount(b.obs, minlength=400)
    assert counts[399] == 0 and counts[:399].std() / counts[:399].mean() < 0.1
    steps = b.cut - b.obs
    assert np.all((steps >= 1) & (b.cut <= 399))
    inside = b.obs < 300  # far from the end: unclipped, mean 1 / (1 - 0.9) = 10
    assert abs(steps[inside].mean() - 10.0) < 0.3
    assert abs(np.mean(steps[inside] == 1) - 0.1) < 0.01
    # Chained examples are exactly the random goals (no negatives here).
    np.testing.assert_array_equal(b.chained, ~b.hindsight)


def test_geometric_offsets_follow_gamma_unless_set() -> None:
    ds = EpisodeDataset(actions=np.zeros((4000, 5), np.float32), episode_ends=np.array([4000]),
                        proprio=np.zeros((4000, 0), np.float32),
                        states=np.zeros((4000, 1), np.float32))

    def mean_offset(cfg: RelabelConfig, gamma: float | None) -> float:
        b = RelabelSampler(ds, cfg, np.random.default_rng(8), gamma=gamma).sample(50000)
        inside = b.obs < 3000  # far from the end: unclipped
        return float(np.mean((b.cut - b.obs)[inside]))

    assert abs(mean_offset(RelabelConfig(), 0.95) - 20.0) < 0.6  # 1 / (1 - gamma)
    assert abs(mean_offset(RelabelConfig(), 0.99) - 100.0) < 3.0
    assert abs(mean_offset(RelabelConfig(offset_discount=0.9), 0.99) - 10.0) < 0.3
    with pytest.raises(ValueError, match='discount in'):
        RelabelSampler(ds, RelabelConfig(), np.random.default_rng(0))  # no gamma, none set
    with pytest.raises(ValueError, match='discount in'):
        RelabelSampler(ds, RelabelConfig(), np.random.default_rng(0), gamma=1.0)
    # Uniform offsets need no discount at all.
    RelabelSampler(ds, RelabelConfig(goal_offset='uniform'), np.random.default_rng(0))


def test_her_neg_random_goal_negatives_have_target_zero() -> None:
    ds = ragged_dataset()
    sampler = RelabelSampler(ds, RelabelConfig(), np.random.default_rng(4), gamma=0.99)
    b = sampler.sample(20000, hindsight_goal_prob=1.0, goal_chaining=False,
                       random_goal_negative_prob=0.3)
    neg = b.goal_negative.astype(bool)
    assert abs(neg.mean() - 0.3) < 0.02
    assert np.all(b.reward[neg] == 0) and np.all(b.bootstrap[neg] == 0)
    assert np.all(b.chain == 0)
    assert np.all(b.goal[~neg] == b.cut[~neg])


def test_offsets_stay_inside_episodes() -> None:
    ds = ragged_dataset()
    sampler = RelabelSampler(ds, RelabelConfig(), np.random.default_rng(5), gamma=0.99)
    frames, goals = sampler.sample_offsets(500, 5)
    assert np.all(ds.states[goals, 0] == ds.states[frames, 0])
    assert np.all(ds.states[goals, 1] - ds.states[frames, 1] == 5)
    assert sampler.sample_offsets(10, 200) is None


def test_gather_fetches_the_named_frames() -> None:
    import torch

    ds = ragged_dataset()
    ds.actions[:] = np.arange(len(ds.actions))[:, None]
    b = RelabelSampler(ds, RelabelConfig(), np.random.default_rng(6), gamma=0.99).sample(64)
    t = gather(b, ObservationGatherer(ds, 'state', torch.device('cpu')))
    np.testing.assert_array_equal(t.obs.numpy(), ds.states[b.obs])
    np.testing.assert_array_equal(t.goal.numpy(), ds.states[b.goal])
    np.testing.assert_array_equal(t.next_action[:, 0].numpy(), b.next_obs)


def test_resident_gathering_matches_host_gathering() -> None:
    '''The device-resident path (a GPU's default, forced here on the CPU) gathers the same
    batch as host indexing, every field, the cut rows included.'''
    import torch

    ds = ragged_dataset()
    ds.actions[:] = np.arange(len(ds.actions))[:, None]
    b = RelabelSampler(ds, RelabelConfig(), np.random.default_rng(7), gamma=0.99).sample(128)
    host = gather(b, ObservationGatherer(ds, 'state', torch.device('cpu')))
    resident = ObservationGatherer(ds, 'state', torch.device('cpu'), resident=True)
    dev = gather(b, resident)
    assert resident.resident and not ObservationGatherer(ds, 'state', 'cpu').resident
    for name, value in vars(host).items():
        torch.testing.assert_close(getattr(dev, name), value, msg=name)
    far = b.chained & (b.cut - b.obs > 1)  # only those need Q at the cut
    np.testing.assert_array_equal(dev.cut_rows.numpy(), np.flatnonzero(far))
    np.testing.assert_array_equal(dev.cut_action[:, 0].numpy(), b.cut[far])
    np.testing.assert_array_equal(dev.steps.numpy(), b.cut - b.obs)


def test_a_dataset_without_transitions_is_refused() -> None:
    ds = EpisodeDataset(actions=np.zeros((2, 5), np.float32), episode_ends=np.array([1, 2]),
                        proprio=np.zeros((2, 0), np.float32), states=np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match='no episode with a transition'):
        RelabelSampler(ds, RelabelConfig(), np.random.default_rng(0), gamma=0.99)
    with pytest.raises(ValueError, match='needs a dataset with images'):
        ObservationGatherer(ds, 'image', None)
