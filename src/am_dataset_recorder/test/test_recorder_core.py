'''RecorderCore without ROS: the queue, the writer thread, loss accounting, refusals.'''

from dataclasses import replace
import json
from pathlib import Path
import shutil
import subprocess
import time

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from am_dataset_recorder.core import RecorderConfig, RecorderCore, config_problems
from am_dataset_recorder.episode_writer import (
    EPISODE_EVENTS_TOPIC,
    INCOMPLETE_MARKER,
    make_typestore,
    read_episode_info,
)

TOPICS = ('/camera/image_raw', '/joint_states')
TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/JointState')


@pytest.fixture(scope='module')
def cdr() -> dict[str, bytes]:
    '''One serialised message per topic (a 32x32 image and a joint state).'''
    store = make_typestore()
    types = store.types
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=1, nanosec=0), frame_id='')
    image = types['sensor_msgs/msg/Image'](
        header=header, height=32, width=32, encoding='rgb8', is_bigendian=0, step=96,
        data=np.arange(32 * 32 * 3, dtype=np.uint8))
    joints = types['sensor_msgs/msg/JointState'](
        header=header, name=['j'], position=np.array([0.5]), velocity=np.zeros(0),
        effort=np.zeros(0))
    return {
        TOPICS[0]: bytes(store.serialize_cdr(image, TYPES[0])),
        TOPICS[1]: bytes(store.serialize_cdr(joints, TYPES[1])),
    }


def _config(tmp_path: Path, **kw) -> RecorderConfig:
    return RecorderConfig(output_dir=str(tmp_path / 'episodes'), topics=TOPICS, types=TYPES,
                          min_free_mb=0.0, **kw)


def test_config_validation() -> None:
    assert config_problems(RecorderConfig()) == []
    bad = RecorderConfig(topics=('/a', '/b'), types=('std_msgs/msg/String',))
    assert any('same length' in p for p in config_problems(bad))
    cases = {
        'storage': {'storage': 'rosbag1'},
        'queue_size': {'queue_size': 0},
        'queue_max_mb': {'queue_max_mb': 0.0},
        'status_rate_hz': {'status_rate_hz': -1.0},
        'image_transport': {'image_transport': 'theora'},
        'unknown message type': {'types': ('nope/msg/X',) + RecorderConfig().types[1:]},
        'written by the recorder': {'topics': ('/am/episode_events',)
                                        + RecorderConfig().topics[1:]},
        'output_dir': {'output_dir': ' '},
    }
    for expected, overrides in cases.items():
        problems = config_problems(replace(RecorderConfig(), **overrides))
        assert any(expected in p for p in problems), (expected, problems)
    with pytest.raises(ValueError, match='queue_size'):
        RecorderConfig(queue_size=-3).validate()


def test_compressed_transport_maps_image_topics() -> None:
    topics = RecorderConfig(image_transport='compressed').recorded_topics()
    assert topics['/camera/image_raw/compressed'] == 'sensor_msgs/msg/CompressedImage'
    assert topics['/joint_states'] == 'sensor_msgs/msg/JointState'
    assert '/camera/image_raw' not in topics


def test_records_episode_and_ignores_idle_messages(tmp_path: Path, cdr) -> None:
    core = RecorderCore(_config(tmp_path))
    try:
        assert not core.offer(TOPICS[1], 1, cdr[TOPICS[1]])  # not recording: ignored
        started = core.start_episode('label-1', start_ns=100)
        assert started.ok, started.message
        assert not core.start_episode('again', start_ns=101).ok
        for k in range(20):
            assert core.offer(TOPICS[0], 200 + k, cdr[TOPICS[0]])
            assert core.offer(TOPICS[1], 200 + k, cdr[TOPICS[1]])
        core.count_lost(TOPICS[0], 3)
        result = core.stop_episode(True, stop_ns=1000)
        assert result.ok and result.messages_written == 42  # 40 + START + STOP
        assert not core.stop_episode(True, stop_ns=1001).ok
        snap = core.snapshot()
        assert not snap.recording and snap.episodes_finished == 1 and snap.error == ''
        stats = {c.topic: c for c in snap.topics}
        assert (stats[TOPICS[0]].received, stats[TOPICS[0]].written) == (20, 20)
        assert stats[TOPICS[0]].lost == 3 and stats[TOPICS[1]].lost == 0
    finally:
        core.close(False, 2000)
    info = read_episode_info(Path(result.path))
    assert info.complete and info.label == 'label-1' and info.success
    assert (info.start_ns, info.stop_ns) == (100, 1000)
    assert info.message_counts == {TOPICS[0]: 20, TOPICS[1]: 20, EPISODE_EVENTS_TOPIC: 2}
    meta = (Path(result.path) / 'metadata.yaml').read_text()
    assert json.dumps({TOPICS[0]: 3, TOPICS[1]: 0}) in meta
    with AnyReader([Path(result.path)]) as reader:
        stamps = [t for c, t, _ in reader.messages() if c.topic == TOPICS[1]]
    assert stamps == list(range(200, 220))


def test_sequence_gaps_count_as_lost(tmp_path: Path, cdr) -> None:
    '''Publication sequence numbers: a jump counts the missing messages, per publisher.'''
    core = RecorderCore(_config(tmp_path))
    msg = cdr[TOPICS[1]]
    try:
        core.offer(TOPICS[1], 1, msg, b'pub-a', 7)  # before the episode: only remembered
        assert core.start_episode('', start_ns=10).ok
        for seq in (8, 9, 12, 13):  # 10 and 11 never arrived
            core.offer(TOPICS[1], 10 + seq, msg, b'pub-a', seq)
        for seq in (100, 101, 103):  # a second publisher: first message sets the baseline
            core.offer(TOPICS[1], 10 + seq, msg, b'pub-b', seq)
        core.count_lost(TOPICS[1], 1)  # DDS saw one of the same losses
        result = core.stop_episode(True, stop_ns=500)
    finally:
        core.close(False, 600)
    stats = {s.topic: s for s in result.stats}[TOPICS[1]]
    assert (stats.received, stats.written, stats.sequence_gaps) == (7, 7, 3)
    assert stats.lost == 3  # max(DDS report, sequence gaps): the same losses seen twice


def test_full_queue_drops_and_counts(tmp_path: Path, cdr) -> None:
    '''A byte bound smaller than one image: every image is dropped, each one counted.'''
    image_mb = len(cdr[TOPICS[0]]) / 1e6
    core = RecorderCore(_config(tmp_path, queue_max_mb=image_mb / 2))
    try:
        assert core.start_episode('', start_ns=0).ok
        for k in range(10):
            assert not core.offer(TOPICS[0], k + 1, cdr[TOPICS[0]])
            core.offer(TOPICS[1], k + 1, cdr[TOPICS[1]])
        result = core.stop_episode(False, stop_ns=100)
    finally:
        core.close(False, 200)
    stats = {s.topic: s for s in result.stats}
    assert (stats[TOPICS[0]].received, stats[TOPICS[0]].written) == (10, 0)
    assert stats[TOPICS[0]].lost == 10
    assert stats[TOPICS[1]].received == stats[TOPICS[1]].written + stats[TOPICS[1]].lost == 10
    assert read_episode_info(Path(result.path)).message_counts[TOPICS[0]] == 0


def test_unusable_output_dir_is_refused_then_recovers(tmp_path: Path) -> None:
    blocker = tmp_path / 'episodes'
    blocker.write_text('a file where the output folder should be')
    core = RecorderCore(_config(tmp_path))
    try:
        assert 'not writable' in core.snapshot().error
        refused = core.start_episode('', start_ns=0)
        assert not refused.ok and 'not writable' in refused.message
        assert not core.snapshot().recording
        assert blocker.read_text() == 'a file where the output folder should be'
        blocker.unlink()
        started = core.start_episode('', start_ns=1)
        assert started.ok and core.snapshot().error == ''
        assert core.stop_episode(True, 2).ok
    finally:
        core.close(False, 3)


def test_low_disk_space_is_refused(tmp_path: Path) -> None:
    core = RecorderCore(replace(_config(tmp_path), min_free_mb=1e12))
    try:
        refused = core.start_episode('', start_ns=0)
        assert not refused.ok and 'min_free_mb' in refused.message
        core.reconfigure(replace(core.config, min_free_mb=0.0))
        assert core.start_episode('', start_ns=1).ok
        assert core.snapshot().error == ''
    finally:
        result = core.close(True, 5)
    assert result is not None and result.ok  # close() finished the running episode
    assert read_episode_info(Path(result.path)).success


def test_discard_removes_the_folder(tmp_path: Path, cdr) -> None:
    core = RecorderCore(_config(tmp_path, storage='sqlite3'))
    try:
        started = core.start_episode('', start_ns=0)
        core.offer(TOPICS[1], 1, cdr[TOPICS[1]])
        result = core.stop_episode(False, 2, discard=True)
    finally:
        core.close(False, 3)
    assert result.ok and not Path(started.path).exists()


@pytest.fixture
def tiny_disk(tmp_path: Path):
    '''A 2 MB tmpfs (needs root, as on this project's machines); skipped where mount fails.'''
    mount = tmp_path / 'tiny'
    mount.mkdir()
    if shutil.which('mount') is None:
        pytest.skip('no mount command')
    done = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f'cannot mount a small tmpfs here: {done.stderr.strip()}')
    try:
        yield mount
    finally:
        subprocess.run(['umount', str(mount)], capture_output=True)


def test_disk_full_mid_episode(tiny_disk: Path, cdr) -> None:
    '''ENOSPC while writing: the episode is abandoned (marked), the earlier one untouched,
    the core keeps running and refuses new episodes while the disk stays full.'''
    config = RecorderConfig(output_dir=str(tiny_disk), topics=TOPICS, types=TYPES,
                            min_free_mb=0.5)
    core = RecorderCore(config)
    try:
        assert core.start_episode('kept', start_ns=1).ok
        core.offer(TOPICS[1], 2, cdr[TOPICS[1]])
        kept = core.stop_episode(True, stop_ns=3)
        before = {p.name: p.read_bytes() for p in Path(kept.path).iterdir()}
        started = core.start_episode('too big', start_ns=10)
        assert started.ok
        store = make_typestore()
        types = store.types
        image = bytes(store.serialize_cdr(types['sensor_msgs/msg/Image'](
            header=types['std_msgs/msg/Header'](
                stamp=types['builtin_interfaces/msg/Time'](sec=0, nanosec=0), frame_id=''),
            height=200, width=320, encoding='rgb8', is_bigendian=0, step=960,
            data=np.random.default_rng(0).integers(0, 256, 192_000, dtype=np.uint8),
        ), TYPES[0]))
        for k in range(40):  # 8 MB of payload into 2 MB
            core.offer(TOPICS[0], 11 + k, image)
            time.sleep(0.005)
        assert wait(lambda: 'disk is full' in core.snapshot().error)
        snap = core.snapshot()
        assert not snap.recording and 'INCOMPLETE' in snap.error
        refused = core.start_episode('', start_ns=100)
        assert not refused.ok and 'min_free_mb' in refused.message
    finally:
        core.close(False, 200)
    assert (Path(started.path) / INCOMPLETE_MARKER).exists()
    assert not read_episode_info(Path(started.path)).complete
    assert {p.name: p.read_bytes() for p in Path(kept.path).iterdir()} == before
    assert read_episode_info(Path(kept.path)).label == 'kept'


def wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
