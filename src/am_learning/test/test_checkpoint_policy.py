'''Checkpoints round-trip and refuse bad files; the policy validates what it is given.'''

import json
from pathlib import Path
import pickle

import numpy as np
import pytest
import torch

from am_learning.checkpoint import CheckpointError, load_checkpoint, read_metadata
from am_learning.config import TrainConfig
from am_learning.policy import GoalReachingPolicy, PolicyStep
from am_learning.testing import PointWorld, render_point, train_tiny_checkpoint


@pytest.fixture(scope='module')
def tiny(tmp_path_factory) -> Path:
    '''The API-C helper: a real, tiny image AM model (also what the policy node tests use).'''
    return train_tiny_checkpoint(tmp_path_factory.mktemp('tiny') / 'ckpt', image_size=32,
                                 updates=150)


def copy_checkpoint(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_round_trip_keeps_weights_config_and_manifest(tiny: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(tiny)
    meta = read_metadata(tiny)
    assert meta['format'] == 'am_learning.checkpoint/1'
    assert ckpt.step == 150 and ckpt.config.agent == 'am'
    assert ckpt.dataset_manifest['source'] == 'am_learning.testing.make_point_dataset'
    assert ckpt.code_version
    from am_learning.checkpoint import save_checkpoint
    again = load_checkpoint(save_checkpoint(tmp_path / 'again', ckpt.config, ckpt.network,
                                            step=ckpt.step))
    assert again.config == ckpt.config
    for (k, a), (_, b) in zip(ckpt.network.state_dict().items(),
                              again.network.state_dict().items()):
        assert torch.equal(a, b), k
    # Same weights, same decisions.
    world = PointWorld(32, seed=0)
    goal = world.load_reach_task(seed=1)
    p1 = GoalReachingPolicy(ckpt, seed=3)
    p2 = GoalReachingPolicy.from_checkpoint(tmp_path / 'again', seed=3)
    for p in (p1, p2):
        p.set_goal(goal)
    s1, s2 = p1.act(world.render(), world.proprio()), p2.act(world.render(), world.proprio())
    np.testing.assert_array_equal(s1.action, s2.action)
    assert s1.q_value == s2.q_value


def test_policy_acts_in_range_and_reports_its_q(tiny: Path) -> None:
    policy = GoalReachingPolicy.from_checkpoint(tiny, cem_samples=32, cem_iterations=2)
    assert policy.uses_images and policy.image_size == 32 and policy.proprio_dim == 7
    assert policy.cem.samples == 32 and policy.cem.iterations == 2
    world = PointWorld(32, seed=0)
    policy.set_goal(world.load_reach_task(seed=2))
    step = policy.act(world.render(), world.proprio())
    assert isinstance(step, PolicyStep)
    assert step.action.shape == (5,) and step.action.dtype == np.float32
    assert np.all(np.abs(step.action) <= 1) and 0.0 <= step.q_value <= 1.0
    q = policy.q_value(world.render(), world.proprio(), step.action)
    assert q == pytest.approx(step.q_value, abs=1e-5)


def test_warm_start_searches_from_the_last_action_until_the_goal_changes(tiny: Path) -> None:
    '''Both policies draw the same samples; only where the search starts differs. A new goal
    drops the last action, so the first step for it is the same as without warm starts.'''
    world = PointWorld(32, seed=0)
    goal = world.load_reach_task(seed=4)
    warm = GoalReachingPolicy.from_checkpoint(tiny, cem_warm_start=True, seed=5)
    cold = GoalReachingPolicy.from_checkpoint(tiny, cem_warm_start=False, seed=5)
    assert warm.cem.warm_start and not cold.cem.warm_start
    image, proprio = world.render(), world.proprio()

    def step_both() -> tuple[np.ndarray, np.ndarray]:
        return warm.act(image, proprio).action, cold.act(image, proprio).action

    for policy in (warm, cold):
        policy.set_goal(goal)
    first_warm, first_cold = step_both()
    np.testing.assert_array_equal(first_warm, first_cold)
    second_warm, second_cold = step_both()
    assert not np.array_equal(second_warm, second_cold)
    for policy in (warm, cold):
        policy.set_goal(goal)
    again_warm, again_cold = step_both()
    np.testing.assert_array_equal(again_warm, again_cold)


def test_new_configs_act_warm_and_configs_saved_before_act_cold() -> None:
    assert TrainConfig().act_cem.warm_start
    saved = TrainConfig().to_dict()
    del saved['act_cem']['warm_start']  # as a checkpoint saved before the field existed
    assert not TrainConfig.from_dict(saved).act_cem.warm_start


def test_images_of_another_size_are_resized(tiny: Path) -> None:
    '''A 96x96 camera frame and goal give the same decision as their 32x32 area-resized copies.'''
    import cv2

    policy = GoalReachingPolicy.from_checkpoint(tiny, seed=0)
    big_obs = render_point(np.array([0.3, 0.6]), 96)
    big_goal = render_point(np.array([0.7, 0.4]), 96)
    proprio = np.zeros(7, np.float32)
    policy.set_goal(big_goal)
    q_big = policy.q_value(big_obs, proprio, np.zeros(5, np.float32))
    small = [cv2.resize(x, (32, 32), interpolation=cv2.INTER_AREA) for x in (big_obs, big_goal)]
    policy.set_goal(small[1])
    assert policy.q_value(small[0], proprio, np.zeros(5, np.float32)) == pytest.approx(q_big)


@pytest.mark.parametrize('goal, message', [
    (np.zeros((32, 32), np.uint8), r'\(H, W, 3\) uint8'),
    (np.zeros((32, 32, 4), np.uint8), r'\(H, W, 3\) uint8'),
    (np.zeros((32, 32, 3), np.float32), 'dtype float32'),
    (np.zeros(7, np.float32), r'\(H, W, 3\) uint8'),
])
def test_bad_goals_are_refused_and_the_old_goal_kept(tiny: Path, goal, message) -> None:
    policy = GoalReachingPolicy.from_checkpoint(tiny)
    good = render_point(np.array([0.5, 0.5]), 32)
    policy.set_goal(good)
    with pytest.raises(ValueError, match=message):
        policy.set_goal(goal)
    assert policy.has_goal
    policy.act(good, np.zeros(7, np.float32))  # still usable


def test_bad_observations_and_missing_goal(tiny: Path) -> None:
    policy = GoalReachingPolicy.from_checkpoint(tiny)
    image = render_point(np.array([0.5, 0.5]), 32)
    with pytest.raises(RuntimeError, match='no goal set'):
        policy.act(image, np.zeros(7, np.float32))
    policy.set_goal(image)
    with pytest.raises(ValueError, match='proprio must have shape'):
        policy.act(image, np.zeros(6, np.float32))
    with pytest.raises(ValueError, match='non-finite'):
        policy.act(image, np.full(7, np.nan, np.float32))
    with pytest.raises(ValueError, match='action must have shape'):
        policy.q_value(image, np.zeros(7, np.float32), np.zeros(4, np.float32))


def test_missing_and_corrupt_checkpoints(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match='no such checkpoint'):
        GoalReachingPolicy.from_checkpoint(tmp_path / 'nowhere')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(CheckpointError, match='not a checkpoint'):
        load_checkpoint(empty)
    bad = copy_checkpoint(tiny, tmp_path / 'truncated')
    data = (bad / 'model.safetensors').read_bytes()
    (bad / 'model.safetensors').write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match='corrupt weights'):
        load_checkpoint(bad)
    bad_json = copy_checkpoint(tiny, tmp_path / 'badjson')
    (bad_json / 'checkpoint.json').write_text('{"format": "am_learning.checkpoint/1", ')
    with pytest.raises(CheckpointError, match='corrupt metadata'):
        load_checkpoint(bad_json)


def test_a_pickle_is_never_unpickled(tiny: Path, tmp_path: Path) -> None:
    '''A pickle posing as the weights is refused without running its payload.'''
    evil = copy_checkpoint(tiny, tmp_path / 'evil')
    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (evil / 'model.safetensors').write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match='corrupt weights'):
        load_checkpoint(evil)
    assert not marker.exists()


def test_a_config_that_does_not_fit_the_weights_names_the_field(tiny: Path,
                                                                tmp_path: Path) -> None:
    for field, value, expect in [('trunk_dim', 128, 'network.trunk_dim'),
                                 ('image_size', 64, 'network.image_size'),
                                 ('conv_channels', [16, 32, 64], 'network.conv_channels'),
                                 ('hidden_dims', [32], 'network.hidden_dims'),
                                 ('actor_head', True, 'network.actor_head')]:
        bad = copy_checkpoint(tiny, tmp_path / f'bad_{field}')
        meta = json.loads((bad / 'checkpoint.json').read_text())
        meta['config']['network'][field] = value
        (bad / 'checkpoint.json').write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match=expect):
            GoalReachingPolicy.from_checkpoint(bad)
    # An unknown config field is refused by name, too.
    bad = copy_checkpoint(tiny, tmp_path / 'bad_unknown')
    meta = json.loads((bad / 'checkpoint.json').read_text())
    meta['config']['network']['depth'] = 3
    (bad / 'checkpoint.json').write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match='depth'):
        load_checkpoint(bad)


def test_expected_config_mismatch_names_the_field(tiny: Path) -> None:
    config = load_checkpoint(tiny).config
    other = config.with_overrides({'network.proprio_dim': 0})
    with pytest.raises(CheckpointError, match=r'network.proprio_dim: checkpoint 7 != requested 0'):
        load_checkpoint(tiny, expect=other)


def test_config_files_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / 'cfg.yaml'
    path.write_text('agent: her_neg\nnetwork:\n  image_size: 48\n  conv_channels: [16, 32]\n'
                    'relabel:\n  num_negatives: 8\n')
    cfg = TrainConfig.from_file(path)
    assert cfg.agent == 'her_neg' and cfg.network.conv_channels == (16, 32)
    assert cfg.relabel.num_negatives == 8 and cfg.network.image_size == 48
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert cfg.with_overrides({'relabel.negative_weight': 2}).relabel.negative_weight == 2.0
    with pytest.raises(ValueError, match='unknown field'):
        TrainConfig.from_dict({'lr': 1e-3, 'learning_rate': 1e-3})
    with pytest.raises(ValueError, match='expected an integer'):
        TrainConfig.from_dict({'batch_size': '128'})
    with pytest.raises(ValueError, match='is not one of'):
        TrainConfig.from_dict({'target_max': 'argmax'})
    with pytest.raises(ValueError, match='unknown config field'):
        cfg.with_overrides({'relabel.nope': 1})
    with pytest.raises(ValueError, match='relabel.hindsight_goal_prob'):
        cfg.with_overrides({'relabel.hindsight_goal_prob': 1.5}).validate()
    # An optional number: unset (follows gamma), a number, or an error naming the field.
    assert cfg.relabel.offset_discount is None
    assert cfg.with_overrides({'relabel.offset_discount': 0.9}).relabel.offset_discount == 0.9
    with pytest.raises(ValueError, match='relabel.offset_discount: expected a number'):
        TrainConfig.from_dict({'relabel': {'offset_discount': 'fast'}})
    with pytest.raises(ValueError, match='relabel.offset_discount: 1.0'):
        cfg.with_overrides({'relabel.offset_discount': 1.0}).validate()
    with pytest.raises(ValueError, match='set relabel.offset_discount'):
        cfg.with_overrides({'gamma': 1.0}).validate()
    cfg.with_overrides({'gamma': 1.0, 'relabel.offset_discount': 0.99}).validate()
