'''Bags -> frames: real bags written with rosbags in tmp_path, read back by am_learning.data.

Covers MCAP and sqlite3, raw Image in every supported encoding and CompressedImage (jpeg,
png), episode markers (START/STOP kept, DISCARD and unfinished dropped), alignment with
known stamps, actions from end-effector motion, and the fast image path against the naive
one.
'''

import logging
from pathlib import Path

import numpy as np
import pytest

from am_dataset_recorder.episode_writer import make_typestore
from am_learning.conventions import ARM_JOINTS, GRIPPER_JOINT
from am_learning.data import DatasetConfig, build_cache, load_dataset
from am_learning.data.synthetic import (
    T0_NS,
    EpisodeSpec,
    frame_colour,
    write_synthetic_bag,
)

SIZE = 16
CONFIG = DatasetConfig(image_size=SIZE)


def _build(bag_dir: Path, tmp_path: Path, config: DatasetConfig = CONFIG, **kwargs):
    cache = build_cache(bag_dir, tmp_path / 'cache', config, progress=False, workers=1,
                        **kwargs)
    return load_dataset(cache)


def _step_of_frames(images: np.ndarray) -> np.ndarray:
    '''Global step index encoded in the red channel of each frame's top-left pixel.'''
    return images[:, 0, 0, 0].astype(int)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'mono8', 'rgba8', 'bgra8'])
def test_raw_images_every_encoding_and_storage(tmp_path, storage, encoding):
    truth = write_synthetic_bag(tmp_path / 'bags' / 'one', [EpisodeSpec(7)], config=CONFIG,
                                encoding=encoding, storage=storage, markers=False,
                                image_width=40, image_height=30)
    ds = _build(tmp_path / 'bags', tmp_path)
    assert ds.num_frames == 7 and list(ds.episode_ends) == [7]
    assert ds.images.shape == (7, SIZE, SIZE, 3) and ds.images.dtype == np.uint8
    expected = np.array([frame_colour(k) for k in range(7)], np.uint8)
    if encoding == 'mono8':  # grey = luminance of the colour, on every channel
        grey = ds.images[:, 0, 0]
        assert np.all(grey[:, 0] == grey[:, 1]) and np.all(grey[:, 1] == grey[:, 2])
        luma = expected @ np.array([0.299, 0.587, 0.114])
        np.testing.assert_allclose(grey[:, 0], luma, atol=1)
    else:
        np.testing.assert_array_equal(ds.images[:, 0, 0], expected)
    np.testing.assert_allclose(ds.actions, truth.episodes[0].actions, atol=1e-6)
    np.testing.assert_allclose(ds.proprio, truth.episodes[0].proprio, atol=1e-6)


@pytest.mark.parametrize('compression,storage', [('jpeg', 'mcap'), ('png', 'sqlite3')])
def test_compressed_images(tmp_path, compression, storage):
    write_synthetic_bag(tmp_path / 'bags' / 'c', [EpisodeSpec(6)], config=CONFIG,
                        compression=compression, storage=storage, markers=False,
                        image_width=320, image_height=240)
    ds = _build(tmp_path / 'bags', tmp_path)
    assert ds.num_frames == 6
    expected = np.array([frame_colour(k) for k in range(6)], np.float64)
    tolerance = 4 if compression == 'jpeg' else 0
    np.testing.assert_allclose(ds.images[:, 0, 0], expected, atol=tolerance)
    assert ds.manifest['episodes'][0]['image_topic'] == '/camera/image_raw/compressed'


def test_markers_split_episodes_and_drop_discarded_and_unfinished(tmp_path, caplog):
    specs = [EpisodeSpec(6, label='pick', success=True), EpisodeSpec(4, 'discard'),
             EpisodeSpec(5, label='place', success=False), EpisodeSpec(3, 'open')]
    truth = write_synthetic_bag(tmp_path / 'bags' / 'session', specs, config=CONFIG,
                                gap_steps=3)
    with caplog.at_level(logging.INFO, logger='am_learning'):
        ds = _build(tmp_path / 'bags', tmp_path)
    assert list(ds.episode_ends) == [6, 11]
    episodes = ds.manifest['episodes']
    assert [e['episode_id'] for e in episodes] == ['ep0', 'ep2']
    assert [(e['label'], e['success']) for e in episodes] == [('pick', True), ('place', False)]
    kept = [truth.episodes[0], truth.episodes[2]]
    steps = np.concatenate([np.arange(e.first_step, e.first_step + len(e.actions)) for e in kept])
    np.testing.assert_array_equal(_step_of_frames(ds.images), steps)
    np.testing.assert_allclose(ds.actions, np.concatenate([e.actions for e in kept]), atol=1e-6)
    assert any("'ep3' has no STOP" in r.getMessage() and 'session' in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
    assert any("'ep1' was discarded" in r.getMessage() for r in caplog.records)


def _write_known_stamps_bag(path: Path, image_delay_ns: int = 0) -> None:
    '''A hand-made bag: camera at irregular times, joints split over two publishers,
    commands in, between and outside control periods.'''
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = make_typestore()
    t = store.types
    ms = 1_000_000

    def header(stamp: int) -> object:
        return t['std_msgs/msg/Header'](
            stamp=t['builtin_interfaces/msg/Time'](sec=stamp // 10**9, nanosec=stamp % 10**9),
            frame_id='')

    def ser(msg: object, msgtype: str) -> bytes:
        return bytes(store.serialize_cdr(msg, msgtype))

    topics = {
        '/camera/image_raw': 'sensor_msgs/msg/Image',
        '/joint_states': 'sensor_msgs/msg/JointState',
        '/servo_node/delta_twist_cmds': 'geometry_msgs/msg/TwistStamped',
        '/gripper_controller/commands': 'std_msgs/msg/Float64MultiArray',
    }
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {k: writer.add_connection(k, v, typestore=store) for k, v in topics.items()}
        messages = []
        for i, at in enumerate((0, 30, 60, 90, 120, 150, 180, 210)):
            pixels = np.full((6, 8, 3), 10 * i, np.uint8)
            msg = t['sensor_msgs/msg/Image'](header=header(T0_NS + at * ms), height=6, width=8,
                                             encoding='rgb8', is_bigendian=0, step=24,
                                             data=pixels.reshape(-1))
            messages.append(('/camera/image_raw', T0_NS + at * ms + image_delay_ns,
                             ser(msg, 'sensor_msgs/msg/Image')))
        for at in (0, 50, 100, 150, 200):  # arm joints
            msg = t['sensor_msgs/msg/JointState'](
                header=header(T0_NS + at * ms), name=list(ARM_JOINTS),
                position=np.arange(6) + at / 1000, velocity=np.zeros(0), effort=np.zeros(0))
            messages.append(('/joint_states', T0_NS + at * ms,
                             ser(msg, 'sensor_msgs/msg/JointState')))
        for at, opening in ((0, 1.0), (100, 0.5), (200, 0.0)):  # the gripper, on its own
            msg = t['sensor_msgs/msg/JointState'](
                header=header(T0_NS + at * ms), name=[GRIPPER_JOINT],
                position=np.array([opening]), velocity=np.zeros(0), effort=np.zeros(0))
            messages.append(('/joint_states', T0_NS + at * ms,
                             ser(msg, 'sensor_msgs/msg/JointState')))
        v3 = t['geometry_msgs/msg/Vector3']
        for at, (vx, vy, vz, wz) in ((10, (0.2, 0, 0, 0)), (30, (0, -0.4, 0, 1.2)),
                                     (200, (0, 0, -1.0, 0)), (250, (0.5, 0.5, 0.5, 0.5))):
            msg = t['geometry_msgs/msg/TwistStamped'](
                header=header(T0_NS + at * ms), twist=t['geometry_msgs/msg/Twist'](
                    linear=v3(x=vx, y=vy, z=vz), angular=v3(x=0.0, y=0.0, z=wz)))
            messages.append(('/servo_node/delta_twist_cmds', T0_NS + at * ms,
                             ser(msg, 'geometry_msgs/msg/TwistStamped')))
        for at, closure in ((20, 0.8), (160, 0.2)):
            msg = t['std_msgs/msg/Float64MultiArray'](
                layout=t['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0),
                data=np.array([closure]))
            messages.append(('/gripper_controller/commands', T0_NS + at * ms,
                             ser(msg, 'std_msgs/msg/Float64MultiArray')))
        for topic, stamp, raw in sorted(messages, key=lambda m: m[1]):
            writer.write(conns[topic], stamp, raw)


# Ticks every 50 ms from 0 to 200 (the last image is at 210 ms). Per tick, the action:
# 0: twists at 10 and 30 ms in [0, 50): their mean; gripper 0.8 (cmd at 20) -> +0.6
# 1: no twist in [50, 100): the one of 30 ms is 20 ms old, still in force
# 2: no twist in [100, 150): the one of 30 ms is 70 ms old (< 100 ms), still in force
# 3: no twist in [150, 200): 120 ms old, stale -> zero motion; gripper 0.2 (cmd at 160) -> -0.6
# 4: the twist stamped at exactly 200 ms counts; the one at 250 belongs to the next period
KNOWN_ACTIONS = np.array([
    [0.1, -0.2, 0.0, 0.1, 0.6],
    [0.0, -0.4, 0.0, 0.2, 0.6],
    [0.0, -0.4, 0.0, 0.2, 0.6],
    [0.0, 0.0, 0.0, 0.0, -0.6],
    [0.0, 0.0, -1.0, 0.0, -0.6],
], np.float32)
KNOWN_IMAGES = [0, 1, 3, 5, 6]  # newest image at or before each tick (30 ms apart)
KNOWN_GRIPPER_POSITION = [1.0, 1.0, 0.5, 0.5, 0.0]


@pytest.mark.parametrize('time_source', ['bag', 'header'])
def test_alignment_with_known_stamps(tmp_path, time_source):
    # With header time, images arrive 15 ms after their stamps: the result must not change.
    delay = 15_000_000 if time_source == 'header' else 0
    _write_known_stamps_bag(tmp_path / 'bags' / 'known', image_delay_ns=delay)
    ds = _build(tmp_path / 'bags', tmp_path, DatasetConfig(image_size=8,
                                                           time_source=time_source))
    np.testing.assert_allclose(ds.actions, KNOWN_ACTIONS, atol=1e-6)
    np.testing.assert_array_equal(ds.images[:, 0, 0, 0], [10 * i for i in KNOWN_IMAGES])
    arm_expected = np.arange(6)[None] + np.array([0, 0.05, 0.1, 0.15, 0.2])[:, None]
    np.testing.assert_allclose(ds.proprio[:, :6], arm_expected, atol=1e-6)
    np.testing.assert_allclose(ds.proprio[:, 6], KNOWN_GRIPPER_POSITION)
    info = ds.manifest['episodes'][0]
    assert (info['commanded_frames'], info['held_command_frames'], info['idle_frames']) == (
        2, 2, 1)


def test_actions_from_end_effector_motion(tmp_path):
    truth = write_synthetic_bag(tmp_path / 'bags' / 'nocmd', [EpisodeSpec(9)], config=CONFIG,
                                commands=False, ee_pose=True, markers=True)
    ds = _build(tmp_path / 'bags', tmp_path)
    assert ds.manifest['episodes'][0]['action_source'] == 'ee_motion'
    expected = truth.episodes[0].actions
    # The last frame has no next pose in this bag: zero motion, gripper as it is.
    np.testing.assert_allclose(ds.actions[:-1], expected[:-1], atol=1e-5)
    np.testing.assert_allclose(ds.actions[-1, :4], 0.0, atol=1e-6)


def test_gripper_joint_convention_is_configurable(tmp_path):
    config = DatasetConfig(image_size=SIZE, gripper_position_means='opening')
    truth = write_synthetic_bag(tmp_path / 'bags' / 'nocmd', [EpisodeSpec(5)], config=config,
                                commands=False)
    ds = _build(tmp_path / 'bags', tmp_path, config)
    np.testing.assert_allclose(ds.actions[:-1, 4], truth.episodes[0].actions[:-1, 4])


def test_state_vector_topic(tmp_path):
    truth = write_synthetic_bag(tmp_path / 'bags' / 's', [EpisodeSpec(5)], config=CONFIG,
                                state_dim=4)
    ds = _build(tmp_path / 'bags', tmp_path)
    assert ds.states.shape == (5, 4) and ds.manifest['state_dim'] == 4
    np.testing.assert_allclose(ds.states, truth.episodes[0].states)
    state_only = _build(tmp_path / 'bags', tmp_path / 'b',
                        DatasetConfig(use_images=False, require_state=True))
    assert state_only.images is None and state_only.states.shape == (5, 4)


def test_fast_image_path_matches_naive(tmp_path):
    for i, encoding in enumerate(('rgb8', 'bgra8', 'mono8')):
        write_synthetic_bag(tmp_path / 'bags' / f'b{i}', [EpisodeSpec(4)], config=CONFIG,
                            encoding=encoding, image_width=64, image_height=48, seed=i)
    fast = _build(tmp_path / 'bags', tmp_path / 'fast')
    naive = _build(tmp_path / 'bags', tmp_path / 'naive', fast=False)
    np.testing.assert_array_equal(fast.images, naive.images)
    np.testing.assert_array_equal(fast.actions, naive.actions)


def test_bag_without_stored_type_definitions(tmp_path):
    '''Old sqlite3 bags (Humble) store no message definitions: standard ROS 2 types are
    used for them.'''
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    truth = write_synthetic_bag(tmp_path / 'src', [EpisodeSpec(5)], config=CONFIG,
                                storage='sqlite3', markers=False)
    store = make_typestore()
    with Reader(tmp_path / 'src') as reader, Writer(
            tmp_path / 'bags' / 'old', version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        conns = {c.id: w.add_connection(c.topic, c.msgtype, msgdef='',
                                        rihs01=store.hash_rihs01(c.msgtype))
                 for c in reader.connections}
        for conn, stamp, raw in reader.messages():
            w.write(conns[conn.id], stamp, raw)
    ds = _build(tmp_path / 'bags', tmp_path)
    assert ds.num_frames == 5
    np.testing.assert_allclose(ds.actions, truth.episodes[0].actions, atol=1e-6)


def test_episode_without_commands_in_a_commanded_bag_uses_motion(tmp_path):
    '''One recording, two episodes: the second one moved without arm or gripper commands
    (e.g. by hand). Its actions come from the end-effector motion and the gripper joint.'''
    from rosbags.rosbag2 import Reader, Writer

    truth = write_synthetic_bag(tmp_path / 'src', [EpisodeSpec(6), EpisodeSpec(6)],
                                config=CONFIG, gap_steps=2)
    second_start = T0_NS + 8 * CONFIG.period_ns
    store = make_typestore()
    with Reader(tmp_path / 'src') as reader, \
            Writer(tmp_path / 'bags' / 'mixed', version=9) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=store)
                 for c in reader.connections}
        for conn, stamp, raw in reader.messages():
            if conn.topic in (CONFIG.twist_topic, CONFIG.gripper_topic) and \
                    stamp >= second_start:
                continue
            writer.write(conns[conn.id], stamp, raw)
    ds = _build(tmp_path / 'bags', tmp_path)
    assert [e['action_source'] for e in ds.manifest['episodes']] == ['commands', 'ee_motion']
    np.testing.assert_allclose(ds.actions[:6], truth.episodes[0].actions, atol=1e-6)
    # The bag ends with the last frame: no motion after it to measure.
    np.testing.assert_allclose(ds.actions[6:-1], truth.episodes[1].actions[:-1], atol=1e-5)
    np.testing.assert_allclose(ds.actions[-1, :4], 0.0, atol=1e-6)
