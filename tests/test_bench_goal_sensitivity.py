'''bench/goal_sensitivity.py on real, tiny checkpoints trained on point-world data laid out
as an OGBench state vector (the point's position where OGBench keeps the effector's).'''

from dataclasses import replace
from pathlib import Path
import sys

import numpy as np
import pytest

from am_learning.conventions import GRIPPER_INDEX, YAW_INDEX
from am_learning.data import EpisodeDataset
from am_learning.testing import make_point_dataset, tiny_config
from am_learning.train import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))
import goal_sensitivity  # noqa: E402

STATE_DIM = 20


def ogbench_layout(points: EpisodeDataset) -> EpisodeDataset:
    '''Point positions at OGBench's effector entries (x10, as OGBench scales them).'''
    states = np.zeros((points.num_frames, STATE_DIM), np.float32)
    states[:, 12:14] = points.states * 10.0
    return replace(points, images=None, states=states)


@pytest.fixture(scope='module')
def dataset() -> EpisodeDataset:
    return ogbench_layout(make_point_dataset(40, 40, image_size=None, seed=0))


def train(tmp: Path, dataset: EpisodeDataset, agent: str, actor: bool = False) -> Path:
    config = tiny_config('state', updates=600, agent=agent).with_overrides(
        {'network.actor_head': actor, 'network.actor_trunk': actor})
    config = replace(config, network=replace(config.network, state_dim=STATE_DIM),
                     relabel=replace(config.relabel, max_cut_length=5))
    trainer = Trainer(config, dataset)
    trainer.train()
    return trainer.save(tmp / agent)


@pytest.mark.parametrize('agent, actor', [('gcbc', False), ('am', False), ('am', True)])
def test_a_goal_conditioned_policy_acts_towards_a_moved_effector(tmp_path, dataset, agent,
                                                                 actor):
    checkpoint = train(tmp_path, dataset, agent, actor)  # am: CEM over Q (around the actor)
    row = goal_sensitivity.measure(checkpoint, dataset, samples=512, seed=0)
    assert row['agent'] == agent and row['updates'] == 600
    assert row['actor_proposal'] == actor
    if actor:  # told to, it measures the same checkpoint acting by CEM alone
        alone = goal_sensitivity.measure(checkpoint, dataset, samples=512, seed=0,
                                         use_actor=False)
        assert not alone['actor_proposal'] and alone['towards_goal'] > 0.25, alone
    # The data's action knows nothing of the random offset; the policy steers by it, and
    # the point world's state holds no motion to copy.
    assert abs(row['data_towards_goal']) < 0.1
    assert row['towards_goal'] > 0.25, row
    assert abs(row['copies_data']) < 0.2, row


def test_a_checkpoint_that_does_not_fit_the_dataset_is_a_clear_error(tmp_path, dataset):
    checkpoint = train(tmp_path, dataset, 'gcbc')
    narrower = replace(dataset, states=dataset.states[:, :STATE_DIM - 1])
    with pytest.raises(SystemExit, match='network.state_dim=20 but dataset states have 19'):
        goal_sensitivity.measure(checkpoint, narrower, samples=16, seed=0)


def test_grasp_timing_follows_where_the_data_closes_the_gripper(tmp_path, dataset):
    '''Point-world data whose gripper target closes exactly while the point is right of the
    middle: the onsets are those crossings, and a policy trained on it closes the gripper
    where the data does (the bench's question, asked of a rule that can be learnt).'''
    x = dataset.states[:, 12] - np.median(dataset.states[:, 12])
    actions = dataset.actions.copy()
    actions[:, GRIPPER_INDEX] = np.where(x > 0, 1.0, -1.0)
    closing = replace(dataset, actions=actions)
    onsets = goal_sensitivity.grasp_onsets(closing, before=2, after=3)
    assert len(onsets) > 20
    assert np.all(x[onsets] > 0) and np.all(x[onsets - 1] <= 0)

    checkpoint = train(tmp_path, closing, 'gcbc')
    result = goal_sensitivity.grasp_timing(checkpoint, closing, samples=256, seed=0, lead=3,
                                           offsets=(-3, -1, 0, 3))
    assert result['onsets'] == len(goal_sensitivity.grasp_onsets(closing, before=3, after=4))
    rows = {row['offset']: row for row in result['rows']}
    assert (rows[-1]['data_closes'], rows[0]['data_closes']) == (0.0, 1.0)
    # Agreement away from the frame before the crossing, where a small network errs most.
    assert all(rows[offset]['agree'] >= 0.8 for offset in (-3, 0, 3)), result

    # Data that never closes the gripper has no onsets: an empty timing, not an error.
    open_only = replace(closing, actions=np.where(
        np.arange(actions.shape[1]) == GRIPPER_INDEX, -1.0, actions).astype(np.float32))
    assert goal_sensitivity.grasp_timing(checkpoint, open_only, samples=16, seed=0) == {
        'checkpoint': str(checkpoint), 'onsets': 0, 'rows': []}


@pytest.mark.parametrize('agent', ['gcbc', 'am'])
def test_approach_yaw_follows_where_the_data_turns(tmp_path, dataset, agent):
    '''Point-world data that closes the gripper as above and turns its yaw one way or the
    other by which side of the middle the point is in y: a policy trained on it turns the
    way the data does before the onsets; for a Q-function the data's action rates above
    the same action with its x/y reversed.'''
    x = dataset.states[:, 12] - np.median(dataset.states[:, 12])
    y = dataset.states[:, 13] - np.median(dataset.states[:, 13])
    actions = dataset.actions.copy()
    actions[:, GRIPPER_INDEX] = np.where(x > 0, 1.0, -1.0)
    actions[:, YAW_INDEX] = np.where(y > 0, 0.6, -0.6)
    turning = replace(dataset, actions=actions)
    checkpoint = train(tmp_path, turning, agent)
    result = goal_sensitivity.approach_yaw(checkpoint, turning, samples=256, seed=0, lead=3,
                                           offsets=(-3, -1))
    assert result['onsets'] == len(goal_sensitivity.grasp_onsets(turning, before=3, after=4))
    for row in result['rows']:
        assert row['turning'] == 1.0
        assert row['same_way'] >= 0.8, result
        if agent == 'gcbc':
            assert row['q_data'] is None
        else:
            assert 0.0 <= row['q_xy_reversed'] < row['q_data'] <= 1.0, result
            assert 0.0 <= row['q_yaw_reversed'] <= 1.0
