'''The dataset cache: bad bags skipped with a warning, clear errors, rebuilt only when stale,
memory-mapped loading, bags from the recorder's EpisodeWriter, and the am-dataset command.'''

import json
import logging
import os
from pathlib import Path
import shutil

import cv2
import numpy as np
import pytest

from am_dataset_recorder.episode_writer import INCOMPLETE_MARKER, EpisodeWriter, make_typestore
from am_learning.cli_dataset import main as am_dataset
from am_learning.conventions import ARM_JOINTS, GRIPPER_JOINT, ActionScale, action_to_twist
from am_learning.data import (
    DatasetConfig,
    DatasetError,
    build_cache,
    dataset_from_bags,
    is_cache_fresh,
    load_dataset,
)
from am_learning.data.synthetic import EpisodeSpec, frame_colour, write_synthetic_bag

CONFIG = DatasetConfig(image_size=16)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.fixture
def bags(tmp_path) -> Path:
    '''Two good bags (6 + 5 frames).'''
    root = tmp_path / 'bags'
    write_synthetic_bag(root / 'a', [EpisodeSpec(6)], config=CONFIG, seed=1)
    write_synthetic_bag(root / 'b', [EpisodeSpec(5)], config=CONFIG, storage='sqlite3', seed=2)
    return root


def test_truncated_and_corrupt_bags_are_skipped_with_a_warning(bags, tmp_path, caplog):
    shutil.copytree(bags / 'a', bags / 'truncated')
    mcap = next((bags / 'truncated').glob('*.mcap'))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    shutil.copytree(bags / 'b', bags / 'corrupt')
    db3 = next((bags / 'corrupt').glob('*.db3'))
    db3.write_bytes(b'this is not a sqlite database' * 100)
    (bags / 'stray.mcap').write_bytes(b'\x89MCAP0\r\n' + b'\0' * 50)
    with caplog.at_level(logging.WARNING, logger='am_learning'):
        ds = dataset_from_bags(bags, tmp_path / 'cache', CONFIG, progress=False)
    assert list(ds.episode_ends) == [6, 11]
    warnings = _warnings(caplog)
    for name in ('truncated', 'corrupt', 'stray.mcap'):
        assert any('skipping bag' in w and name in w for w in warnings), (name, warnings)
    counts = ds.manifest['counts']
    assert (counts['bags'], counts['bags_skipped'], counts['episodes']) == (5, 3, 2)


def test_a_bad_message_is_left_out_and_the_rest_kept(tmp_path, caplog):
    '''One camera message with a cut pixel buffer: dropped, the episode survives.'''
    from rosbags.rosbag2 import Reader, Writer

    write_synthetic_bag(tmp_path / 'good', [EpisodeSpec(6)], config=CONFIG, markers=False)
    with Reader(tmp_path / 'good') as reader, \
            Writer(tmp_path / 'bags' / 'bad', version=9) as writer:
        store = make_typestore()
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=store)
                 for c in reader.connections}
        images = 0
        for conn, stamp, raw in reader.messages():
            if conn.topic == '/camera/image_raw' and (images := images + 1) == 3:
                raw = raw[: len(raw) // 2]
            writer.write(conns[conn.id], stamp, raw)
    with caplog.at_level(logging.WARNING, logger='am_learning'):
        ds = dataset_from_bags(tmp_path / 'bags', tmp_path / 'cache', CONFIG, progress=False)
    assert ds.num_frames == 6
    # Frame 2 has no image of its own: it shows the newest earlier one (frame 1's).
    np.testing.assert_array_equal(ds.images[:, 0, 0, 0], [0, 1, 1, 3, 4, 5])
    assert any('/camera/image_raw' in w and 'bad' in w for w in _warnings(caplog))
    assert ds.manifest['episodes'][0]['max_image_age_ms'] == 50.0


def test_no_usable_episode_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match='no rosbag2 bags'):
        build_cache(tmp_path, tmp_path / 'cache', CONFIG, progress=False)
    with pytest.raises(DatasetError, match='does not exist'):
        build_cache(tmp_path / 'nope', tmp_path / 'cache', CONFIG, progress=False)
    root = tmp_path / 'bags'
    write_synthetic_bag(root / 'nocam', [EpisodeSpec(5)], config=DatasetConfig(
        camera_topic='/other/image', compressed_camera_topic=None))
    write_synthetic_bag(root / 'noactions', [EpisodeSpec(5)], config=CONFIG,
                        commands=False, ee_pose=False)
    write_synthetic_bag(root / 'short', [EpisodeSpec(1)], config=CONFIG)
    write_synthetic_bag(root / 'unrelated', [EpisodeSpec(3)], markers=False, config=DatasetConfig(
        camera_topic='/a', compressed_camera_topic=None, joint_states_topic='/b',
        twist_topic='/c', gripper_topic='/d', ee_pose_topic='/e'))
    with pytest.raises(DatasetError) as err:
        build_cache(root, tmp_path / 'cache', CONFIG, progress=False)
    message = str(err.value)
    assert 'no usable episode' in message
    assert 'nocam' in message and 'no camera frames on /camera/image_raw' in message
    assert '/other/image' in message  # the image topics the bag does have
    assert 'noactions' in message and 'actions cannot be derived' in message
    assert 'short' in message and 'min_episode_frames' in message
    assert 'unrelated' in message and 'image topics in the bag: /a' in message
    assert not (tmp_path / 'cache').exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.cache')]


def test_cache_is_reused_until_a_source_or_the_config_changes(bags, tmp_path, caplog):
    cache = tmp_path / 'cache'
    first = dataset_from_bags(bags, cache, CONFIG, progress=False)
    inode = (cache / 'images.npy').stat().st_ino
    created = first.manifest['created_utc']
    with caplog.at_level(logging.INFO, logger='am_learning'):
        again = dataset_from_bags(bags, cache, CONFIG, progress=False)
    assert (cache / 'images.npy').stat().st_ino == inode
    assert again.manifest['created_utc'] == created
    assert any('up to date' in r.getMessage() for r in caplog.records)
    assert is_cache_fresh(bags, cache, CONFIG)

    # Touching a source file makes the cache stale: rebuilt.
    source = next((bags / 'b').glob('*.db3'))
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not is_cache_fresh(bags, cache, CONFIG)
    dataset_from_bags(bags, cache, CONFIG, progress=False)
    assert (cache / 'images.npy').stat().st_ino != inode
    inode = (cache / 'images.npy').stat().st_ino
    assert is_cache_fresh(bags, cache, CONFIG)

    # So does another config, and a new bag.
    other = DatasetConfig(image_size=8)
    assert not is_cache_fresh(bags, cache, other)
    assert dataset_from_bags(bags, cache, other, progress=False).images.shape[1:] == (8, 8, 3)
    write_synthetic_bag(bags / 'c', [EpisodeSpec(4)], config=CONFIG)
    assert not is_cache_fresh(bags, cache, other)
    assert dataset_from_bags(bags, cache, other, progress=False).num_frames == 15
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.cache')]


def test_memmap_load_and_manifest(bags, tmp_path):
    cache = build_cache(bags, tmp_path / 'cache', CONFIG, progress=False)
    mapped = load_dataset(cache, mmap=True)
    loaded = load_dataset(cache, mmap=False)
    for name in ('images', 'actions', 'proprio'):
        array = getattr(mapped, name)
        assert isinstance(array, np.memmap) and not array.flags.writeable, name
        np.testing.assert_array_equal(array, getattr(loaded, name))
        assert not isinstance(getattr(loaded, name), np.memmap)
    manifest = json.loads((cache / 'manifest.json').read_text())
    assert manifest['counts'] == {'bags': 2, 'bags_skipped': 0, 'episodes': 2,
                                  'episodes_skipped': 0, 'frames': 11}
    assert [s['bag'] for s in manifest['sources']] == ['a', 'b']
    assert all(f['size'] > 0 and f['mtime_ns'] > 0 for s in manifest['sources']
               for f in s['files'])
    assert manifest['action_scale'] == ActionScale().to_dict()
    assert manifest['rates']['measured_median_hz']['images'] == pytest.approx(20.0)
    proprio = manifest['normalization']['proprio']
    np.testing.assert_allclose(proprio['mean'], loaded.proprio.mean(0), atol=1e-5)
    np.testing.assert_allclose(proprio['std'], loaded.proprio.std(0), atol=1e-5)
    assert manifest['proprio_names'] == [*ARM_JOINTS, GRIPPER_JOINT]
    assert manifest['topics']['in_bags']['/camera/image_raw'] == 'sensor_msgs/msg/Image'


def test_damaged_cache_and_foreign_folder_are_refused(bags, tmp_path):
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('keep me')
    with pytest.raises(DatasetError, match='refusing to replace'):
        build_cache(bags, foreign, CONFIG, progress=False)
    assert (foreign / 'notes.txt').read_text() == 'keep me'
    with pytest.raises(DatasetError, match='not a dataset cache'):
        load_dataset(foreign)
    cache = build_cache(bags, tmp_path / 'cache', CONFIG, progress=False)
    (cache / 'actions.npy').write_bytes((cache / 'actions.npy').read_bytes()[:200])
    with pytest.raises(DatasetError, match='actions.npy'):
        load_dataset(cache)


def test_parallel_build_equals_serial(tmp_path):
    root = tmp_path / 'bags'
    for i in range(3):
        write_synthetic_bag(root / f'b{i}', [EpisodeSpec(4 + i)], config=CONFIG, seed=i)
    serial = load_dataset(build_cache(root, tmp_path / 's', CONFIG, progress=False, workers=1))
    parallel = load_dataset(build_cache(root, tmp_path / 'p', CONFIG, progress=False,
                                        workers=2))
    np.testing.assert_array_equal(serial.images, parallel.images)
    np.testing.assert_array_equal(serial.actions, parallel.actions)
    np.testing.assert_array_equal(serial.episode_ends, parallel.episode_ends)


def _record_with_episode_writer(root: Path, episode_id: str, frames: int, *,
                                finish: bool) -> np.ndarray:
    '''An episode as the recorder writes it; returns the commanded actions.'''
    store = make_typestore()
    t = store.types
    topics = {'/camera/image_raw': 'sensor_msgs/msg/Image',
              '/joint_states': 'sensor_msgs/msg/JointState',
              '/servo_node/delta_twist_cmds': 'geometry_msgs/msg/TwistStamped',
              '/gripper_controller/commands': 'std_msgs/msg/Float64MultiArray'}
    t0 = 1_750_000_000_000_000_000
    dt = 50_000_000
    writer = EpisodeWriter(root, episode_id, topics, label='stack', start_ns=t0,
                           typestore=store)
    rng = np.random.default_rng(3)
    actions = rng.uniform(-1, 1, (frames, 5)).astype(np.float32)

    def header(stamp: int) -> object:
        return t['std_msgs/msg/Header'](
            stamp=t['builtin_interfaces/msg/Time'](sec=stamp // 10**9, nanosec=stamp % 10**9),
            frame_id='')

    for k in range(frames):
        stamp = t0 + k * dt
        image = t['sensor_msgs/msg/Image'](
            header=header(stamp), height=24, width=32, encoding='bgr8', is_bigendian=0,
            step=96, data=np.full((24, 32, 3), frame_colour(k)[::-1], np.uint8).reshape(-1))
        writer.write('/camera/image_raw', stamp,
                     bytes(store.serialize_cdr(image, 'sensor_msgs/msg/Image')))
        joints = t['sensor_msgs/msg/JointState'](
            header=header(stamp), name=[*ARM_JOINTS, GRIPPER_JOINT],
            position=np.full(7, 0.01 * k), velocity=np.zeros(0), effort=np.zeros(0))
        writer.write('/joint_states', stamp,
                     bytes(store.serialize_cdr(joints, 'sensor_msgs/msg/JointState')))
        linear, yaw_rate, closure = action_to_twist(actions[k], ActionScale())
        v3 = t['geometry_msgs/msg/Vector3']
        twist = t['geometry_msgs/msg/TwistStamped'](
            header=header(stamp + 10**6), twist=t['geometry_msgs/msg/Twist'](
                linear=v3(x=linear[0], y=linear[1], z=linear[2]),
                angular=v3(x=0.0, y=0.0, z=yaw_rate)))
        writer.write('/servo_node/delta_twist_cmds', stamp + 10**6,
                     bytes(store.serialize_cdr(twist, 'geometry_msgs/msg/TwistStamped')))
        grip = t['std_msgs/msg/Float64MultiArray'](
            layout=t['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0),
            data=np.array([closure]))
        writer.write('/gripper_controller/commands', stamp + 10**6,
                     bytes(store.serialize_cdr(grip, 'std_msgs/msg/Float64MultiArray')))
    if finish:
        writer.finish(success=True, stop_ns=t0 + (frames - 1) * dt + 2 * 10**6)
    return actions


def test_reads_bags_of_the_recorders_episode_writer(tmp_path, caplog):
    root = tmp_path / 'episodes'
    actions = _record_with_episode_writer(root, 'episode_001', 8, finish=True)
    _record_with_episode_writer(root, 'episode_002', 5, finish=False)  # still "recording"
    assert (root / 'episode_002' / INCOMPLETE_MARKER).exists()
    with caplog.at_level(logging.WARNING, logger='am_learning'):
        ds = dataset_from_bags(root, tmp_path / 'cache', CONFIG, progress=False)
    assert ds.num_frames == 8
    episode = ds.manifest['episodes'][0]
    assert (episode['episode_id'], episode['label'], episode['success']) == (
        'episode_001', 'stack', True)
    np.testing.assert_allclose(ds.actions, actions, atol=1e-6)
    np.testing.assert_array_equal(ds.images[:, 0, 0], [frame_colour(k) for k in range(8)])
    assert any('episode_002' in w and INCOMPLETE_MARKER in w for w in _warnings(caplog))


def test_am_dataset_build_and_inspect(bags, tmp_path, capsys):
    cache = tmp_path / 'cache'
    assert am_dataset(['build', str(bags), '--out', str(cache), '--image-size', '16',
                       '--rate', '20', '--no-progress']) == 0
    out = capsys.readouterr().out
    assert 'episodes     2' in out and 'frames       11' in out
    sheet = tmp_path / 'sheet.png'
    assert am_dataset(['inspect', str(cache), '--contact-sheet', str(sheet)]) == 0
    out = capsys.readouterr().out
    assert 'dx' in out and 'gripper' in out and '/camera/image_raw' in out
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] == 2 * 98 and image.shape[1] == 8 * 98
    assert am_dataset(['inspect', str(cache), '--json']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['frames'] == 11 and len(summary['action_stats']['mean']) == 5

    assert am_dataset(['build', str(tmp_path / 'empty'), '--out', str(cache)]) == 1
    assert 'does not exist' in capsys.readouterr().err
    assert am_dataset(['inspect', str(tmp_path)]) == 1
    assert 'not a dataset cache' in capsys.readouterr().err
    assert am_dataset(['build', str(bags), '--out', str(cache), '--rate', '0']) == 2
    assert 'control_rate_hz' in capsys.readouterr().err


def test_config_validation():
    with pytest.raises(ValueError, match='control_rate_hz'):
        DatasetConfig(control_rate_hz=10, action_scale=ActionScale(control_rate_hz=20))
    with pytest.raises(ValueError, match='image_size'):
        DatasetConfig(image_size=2)
    with pytest.raises(ValueError, match='time_source'):
        DatasetConfig(time_source='wall')
    with pytest.raises(ValueError, match='duplicates'):
        DatasetConfig(joint_names=('a', 'a'))
    config = DatasetConfig(image_size=48, control_rate_hz=10)
    assert config.action_scale.control_rate_hz == 10 and config.period_ns == 100_000_000
    assert DatasetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match='unknown'):
        DatasetConfig.from_dict({'image_size': 64, 'colour': 'red'})


@pytest.mark.slow
def test_reads_episodes_generated_by_am_sim(tmp_path):
    '''The real producer: am_sim's generator (SimCore + scripted operator + EpisodeWriter).'''
    generate = pytest.importorskip('am_sim.generate')
    steps = 25
    generate.generate(generate.GenerateConfig(scene='cube-single', episodes=2, steps=steps,
                                              image_size=32, out=str(tmp_path / 'bags')),
                      progress=False)
    config = DatasetConfig(image_size=32)
    ds = dataset_from_bags(tmp_path / 'bags', tmp_path / 'cache', config, progress=False)
    # Observations 0..steps, commands 0..steps-1 per episode (API.md D's timing).
    assert list(ds.episode_ends) == [steps + 1, 2 * (steps + 1)]
    assert ds.images.shape == (2 * (steps + 1), 32, 32, 3) and ds.states.shape[1] > 0
    assert all(e['action_source'] == 'commands' and e['commanded_frames'] == steps
               for e in ds.manifest['episodes'])
    assert ds.images.std() > 5  # a rendered scene, not a blank frame
    # The same bags without their commands: actions from the end-effector motion. The arm
    # lags its targets, so the size differs, but the directions must agree.
    motion = DatasetConfig(image_size=32, twist_topic='/unused', gripper_topic='/unused')
    ds_motion = dataset_from_bags(tmp_path / 'bags', tmp_path / 'cache_motion', motion,
                                  progress=False)
    assert ds_motion.manifest['episodes'][0]['action_source'] == 'ee_motion'
    commanded, moved = np.asarray(ds.actions), np.asarray(ds_motion.actions)
    for dim in range(3):
        assert np.corrcoef(commanded[:, dim], moved[:, dim])[0, 1] > 0.7, dim
    assert np.mean(np.sign(commanded[:, 4]) == np.sign(moved[:, 4])) > 0.8


def test_concurrent_builds_of_one_cache_leave_a_whole_cache(bags, tmp_path):
    import threading

    cache = tmp_path / 'cache'
    errors = []

    def build() -> None:
        try:
            build_cache(bags, cache, CONFIG, progress=False, workers=1, force=True)
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert load_dataset(cache).num_frames == 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bags', 'cache']


def test_installs_that_finish_together_take_turns(tmp_path):
    '''The race behind a CI failure: builds of one cache that finish at the same moment swap
    their folders in one after the other (under a lock on the parent folder); unlocked, a
    build could find the cache gone between its check and its rename (FileNotFoundError).'''
    import tempfile
    import threading

    from am_learning.data import cache as cache_module

    def build_and_install(root: Path, errors: list) -> None:
        built = Path(tempfile.mkdtemp(prefix='.cache.building-', dir=root))
        (built / cache_module.MANIFEST).write_text('{}')
        try:
            cache_module._install(built, root / 'cache')
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    for round_ in range(40):
        root = tmp_path / str(round_)
        root.mkdir()
        errors = []
        threads = [threading.Thread(target=build_and_install, args=(root, errors))
                   for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], round_
        assert [p.name for p in root.iterdir()] == ['cache']
        assert (root / 'cache' / cache_module.MANIFEST).is_file()
