'''sim_robot + scripted_teleop + recorder over DDS, faster than real time: real bags.'''

from pathlib import Path

from am_testing.fixtures import wait_for
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from am_dataset_recorder.episode_writer import list_episodes
from am_learning import conventions as conv
from am_sim.bag_messages import TOPICS

pytestmark = pytest.mark.ros
EPISODES, STEPS = 2, 20


def read_bag(bag: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with AnyReader([bag]) as reader:
        for conn, stamp, raw in reader.messages():
            out.setdefault(conn.topic, []).append((stamp, reader.deserialize(raw, conn.msgtype)))
    return out


def test_scripted_teleop_records_episodes(start_node, tmp_path):
    out = tmp_path / 'episodes'
    sim = start_node('am_sim', 'sim_robot', params={
        'image_size': 32, 'real_time_factor': 2.0, 'seed': 0})
    recorder = start_node('am_dataset_recorder', 'recorder', params={
        'output_dir': str(out), 'topics': list(TOPICS), 'types': list(TOPICS.values()),
        'min_free_mb': 0.0, 'use_sim_time': True})
    teleop = start_node('am_sim', 'scripted_teleop', params={
        'episodes': EPISODES, 'steps': STEPS, 'seed': 7, 'label': 'play',
        'use_sim_time': True, 'service_timeout_s': 30.0})
    assert wait_for(lambda: not teleop.alive(), 90), teleop.log()
    assert teleop.popen.returncode == 0, teleop.log() + recorder.log() + sim.log()
    assert sim.alive() and recorder.alive()

    episodes = list_episodes(out)
    assert len(episodes) == EPISODES and all(e.complete for e in episodes)
    for info in episodes:
        assert info.label == 'play' and info.success is False
        counts = info.message_counts
        # Every command the operator sent is in the bag (reliable, answered per state).
        assert counts[conv.TWIST_TOPIC] == STEPS
        assert counts[conv.GRIPPER_TOPIC] == STEPS
        for topic in (conv.JOINT_STATES_TOPIC, conv.EE_POSE_TOPIC, conv.SIM_STATE_TOPIC,
                      conv.CAMERA_TOPIC):
            # Plus what the robot published during the start and stop service round trips.
            assert STEPS - 2 <= counts[topic] <= STEPS + 12, (topic, counts)
        msgs = read_bag(info.path)
        image = msgs[conv.CAMERA_TOPIC][0][1]
        assert (image.height, image.width, image.encoding) == (32, 32, 'rgb8')
        # Stamps are simulation time: 20 steps span about 1 s of it (2 s of wall time / 2).
        stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
                  for _, m in msgs[conv.JOINT_STATES_TOPIC]]
        assert np.allclose(np.diff(stamps), 0.05, atol=1e-6)
        # The operator moved the arm.
        ee = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z]
                       for _, m in msgs[conv.EE_POSE_TOPIC]])
        assert np.linalg.norm(ee[-1] - ee[0]) > 0.01
