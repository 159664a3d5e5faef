'''The offline generator: episodes written with EpisodeWriter, read back with rosbags.'''

import json
import logging
import subprocess
import sys

import numpy as np
from rosbags.highlevel import AnyReader

from am_dataset_recorder.episode_writer import list_episodes
from am_learning import cli_train
from am_learning import conventions as conv
from am_learning.envs import JOINT_VELOCITY_DIMS, decode_state
from am_learning.envs.operator import decode_scene_state
from am_sim.generate import GenerateConfig, generate, parse_args

STEPS = 12


def read_bag(bag):
    out: dict[str, list] = {}
    with AnyReader([bag]) as reader:
        for conn, stamp, raw in reader.messages():
            out.setdefault(conn.topic, []).append((stamp, reader.deserialize(raw, conn.msgtype)))
    return out


def test_visual_episodes_read_back(tmp_path):
    config = GenerateConfig(episodes=2, steps=STEPS, image_size=32, out=str(tmp_path / 'v'),
                            seed=3)
    summaries = generate(config, progress=False)
    assert len(summaries) == 2
    episodes = list_episodes(tmp_path / 'v')
    assert [e.complete for e in episodes] == [True, True]
    for info in episodes:
        counts = info.message_counts
        for topic in (conv.CAMERA_TOPIC, conv.JOINT_STATES_TOPIC, conv.EE_POSE_TOPIC,
                      conv.SIM_STATE_TOPIC):
            assert counts[topic] == STEPS + 1  # observations 0..M
        assert counts[conv.TWIST_TOPIC] == counts[conv.GRIPPER_TOPIC] == STEPS
        assert counts[conv.EPISODE_EVENTS_TOPIC] == 2
        msgs = read_bag(info.path)
        # API.md D: observation k at t0 + k/20 s, its command 1 ms later.
        t_obs = np.array([t for t, _ in msgs[conv.JOINT_STATES_TOPIC]])
        t_cmd = np.array([t for t, _ in msgs[conv.TWIST_TOPIC]])
        assert np.all(np.diff(t_obs) == 50_000_000)
        assert np.all(t_cmd - t_obs[:-1] == 1_000_000)
        assert t_obs[0] == info.start_ns
        image = msgs[conv.CAMERA_TOPIC][0][1]
        pixels = image.data.reshape(32, 32, 3)
        assert image.encoding == 'rgb8' and pixels.std() > 5
        # The commands move the arm the way they say: +x twist -> +x motion next steps.
        ee = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z]
                       for _, m in msgs[conv.EE_POSE_TOPIC]])
        vel = np.array([[m.twist.linear.x, m.twist.linear.y, m.twist.linear.z]
                        for _, m in msgs[conv.TWIST_TOPIC]])
        commanded = vel.sum(axis=0) * 0.05
        moved = ee[-1] - ee[0]
        assert np.dot(commanded, moved) > 0
        state = msgs[conv.SIM_STATE_TOPIC][0][1].data
        assert np.allclose(decode_state(state, 1)['proprio/effector_pos'], ee[0], atol=1e-4)


def test_state_only_is_deterministic(tmp_path):
    for name in ('a', 'b'):
        generate(GenerateConfig(episodes=1, steps=STEPS, out=str(tmp_path / name),
                                state_only=True, seed=5), progress=False)
    (a,), (b,) = list_episodes(tmp_path / 'a'), list_episodes(tmp_path / 'b')
    assert conv.CAMERA_TOPIC not in a.message_counts
    sa = np.array([m.data for _, m in read_bag(a.path)[conv.SIM_STATE_TOPIC]])
    sb = np.array([m.data for _, m in read_bag(b.path)[conv.SIM_STATE_TOPIC]])
    assert sa.shape == (STEPS + 1, 28) and np.array_equal(sa, sb)


def test_command_line(tmp_path):
    out = tmp_path / 'cli'
    run = [sys.executable, '-m', 'am_sim.generate', '--episodes', '2', '--steps', '5',
           '--state-only', '--workers', '2', '--out', str(out)]
    done = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '2 episodes, 10 transitions' in done.stdout
    assert len(list_episodes(out)) == 2
    again = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and 'exist already' in again.stderr  # nothing overwritten
    assert parse_args(['--out', 'x', '--image-size', '48']).image_size == 48


def test_puzzle_episode(tmp_path):
    '''The 3x3 button puzzle: the operator presses buttons, the bag shows their states move.'''
    generate(GenerateConfig(scene='puzzle-3x3', episodes=1, steps=80, out=str(tmp_path),
                            state_only=True, seed=1), progress=False)
    (info,) = list_episodes(tmp_path)
    states = np.array([m.data for _, m in read_bag(info.path)[conv.SIM_STATE_TOPIC]])
    assert states.shape == (81, 55)
    buttons = states[:, 19:].reshape(81, 9, 4)[:, :, :2].argmax(axis=2)  # one-hot states
    assert (buttons[0] != buttons[-1]).any()


def test_scene_episode(tmp_path):
    '''`scene`: the operator's subtasks show in the bag (a button, the drawer, the window or
    the cube changed).'''
    generate(GenerateConfig(scene='scene', episodes=1, steps=150, out=str(tmp_path),
                            state_only=True, seed=0), progress=False)
    (info,) = list_episodes(tmp_path)
    states = np.array([m.data for _, m in read_bag(info.path)[conv.SIM_STATE_TOPIC]])
    assert states.shape == (151, 40)
    decoded = [decode_scene_state(s) for s in (states[0], states[-1])]
    changes = {
        'buttons': (decoded[0]['button_states'] != decoded[1]['button_states']).any(),
        'drawer': abs(decoded[1]['privileged/drawer_pos'][0]
                      - decoded[0]['privileged/drawer_pos'][0]) > 0.04,
        'window': abs(decoded[1]['privileged/window_pos'][0]
                      - decoded[0]['privileged/window_pos'][0]) > 0.04,
        'cube': np.linalg.norm(decoded[1]['privileged/block_0_pos']
                               - decoded[0]['privileged/block_0_pos']) > 0.03,
    }
    assert any(changes.values()), changes


def test_state_training_on_sim_bags_leaves_out_the_joint_velocities(tmp_path, caplog):
    '''The state arrays carry their layout's label; the dataset cache keeps it, and
    am-train leaves out what that layout's default says (OGBench's joint velocities) unless
    network.state_ignore is given.'''
    generate(GenerateConfig(episodes=2, steps=30, out=str(tmp_path / 'bags'),
                            state_only=True, seed=2), progress=False)
    common = ['--bags', str(tmp_path / 'bags'), '--cache', str(tmp_path / 'cache'),
              '--observation', 'state', '--updates', '4', '--set', 'batch_size=8',
              '--set', 'num_threads=1', '--set', 'network.trunk_dim=32',
              '--set', 'network.hidden_dims=[32]', '--set', 'log_interval=4', '--no-progress']

    def ignored(run: str) -> list[int]:
        return json.loads((tmp_path / run / 'config.json').read_text())['network'][
            'state_ignore']

    with caplog.at_level(logging.INFO, logger='am_learning.am_train'):
        assert cli_train.main([*common, '--run-dir', str(tmp_path / 'auto')]) == 0
    manifest = json.loads((tmp_path / 'cache' / 'manifest.json').read_text())
    assert manifest['state_layout'] == conv.OGBENCH_STATE_LAYOUT
    assert ignored('auto') == list(JOINT_VELOCITY_DIMS)
    assert 'network.state_ignore=[] keeps them' in caplog.text
    assert cli_train.main([*common, '--run-dir', str(tmp_path / 'kept'),
                           '--set', 'network.state_ignore=[]']) == 0
    assert ignored('kept') == []
    config = tmp_path / 'cfg.yaml'
    config.write_text('network:\n  state_ignore: [0]\n')
    assert cli_train.main([*common, '--run-dir', str(tmp_path / 'file'),
                           '--config', str(config)]) == 0
    assert ignored('file') == [0]
