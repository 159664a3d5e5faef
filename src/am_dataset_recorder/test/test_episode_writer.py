'''EpisodeWriter: real bags written and read back with rosbags alone (no ROS graph).'''

from pathlib import Path
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from am_dataset_recorder.episode_writer import (
    EPISODE_EVENTS_TOPIC,
    INCOMPLETE_MARKER,
    EpisodeWriter,
    is_complete,
    list_episodes,
    make_typestore,
    read_episode_info,
)

TOPICS = {
    '/camera/image_raw': 'sensor_msgs/msg/Image',
    '/joint_states': 'sensor_msgs/msg/JointState',
    '/servo_node/delta_twist_cmds': 'geometry_msgs/msg/TwistStamped',
}


@pytest.fixture(scope='module')
def store():
    return make_typestore()


def _header(store, ns: int):
    types = store.types
    stamp = types['builtin_interfaces/msg/Time'](sec=ns // 10**9, nanosec=ns % 10**9)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id='base')


def _image(store, ns: int, value: int) -> bytes:
    msg = store.types['sensor_msgs/msg/Image'](
        header=_header(store, ns), height=4, width=6, encoding='rgb8', is_bigendian=0,
        step=18, data=np.full(72, value, dtype=np.uint8),
    )
    return bytes(store.serialize_cdr(msg, 'sensor_msgs/msg/Image'))


def _joints(store, ns: int, position: float) -> bytes:
    msg = store.types['sensor_msgs/msg/JointState'](
        header=_header(store, ns), name=['a', 'b'],
        position=np.array([position, -position]), velocity=np.zeros(0), effort=np.zeros(0),
    )
    return bytes(store.serialize_cdr(msg, 'sensor_msgs/msg/JointState'))


def _twist(store, ns: int, vx: float) -> bytes:
    types = store.types
    vec = types['geometry_msgs/msg/Vector3']
    msg = types['geometry_msgs/msg/TwistStamped'](
        header=_header(store, ns),
        twist=types['geometry_msgs/msg/Twist'](linear=vec(x=vx, y=0.0, z=0.0),
                                               angular=vec(x=0.0, y=0.0, z=0.0)),
    )
    return bytes(store.serialize_cdr(msg, 'geometry_msgs/msg/TwistStamped'))


def _read_all(bag: Path) -> list[tuple[str, str, int, object]]:
    with AnyReader([bag]) as reader:
        return [
            (c.topic, c.msgtype, t, reader.deserialize(raw, c.msgtype))
            for c, t, raw in reader.messages()
        ]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_round_trip(tmp_path: Path, store, storage: str) -> None:
    t0 = 1_700_000_000_000_000_000
    writer = EpisodeWriter(tmp_path, 'ep1', TOPICS, label='stack red on blue', start_ns=t0,
                           storage=storage, typestore=store)
    assert (writer.path / INCOMPLETE_MARKER).exists()
    assert not is_complete(writer.path)
    for k in range(10):
        ns = t0 + (k + 1) * 50_000_000
        writer.write('/camera/image_raw', ns, _image(store, ns, k))
        writer.write('/joint_states', ns, _joints(store, ns, 0.1 * k))
        if k % 2 == 0:
            writer.write('/servo_node/delta_twist_cmds', ns + 1_000_000, _twist(store, ns, k))
    stop = t0 + 600_000_000
    assert writer.messages_written == {
        '/camera/image_raw': 10, '/joint_states': 10, '/servo_node/delta_twist_cmds': 5,
        EPISODE_EVENTS_TOPIC: 1,
    }
    path = writer.finish(success=True, stop_ns=stop)

    assert path == tmp_path / 'ep1'
    assert is_complete(path) and not (path / INCOMPLETE_MARKER).exists()
    suffix = '.mcap' if storage == 'mcap' else '.db3'
    assert any(p.suffix == suffix for p in path.iterdir())

    messages = _read_all(path)
    by_topic: dict[str, list] = {}
    for topic, msgtype, stamp, msg in messages:
        assert msgtype == {**TOPICS, EPISODE_EVENTS_TOPIC: 'am_msgs/msg/EpisodeEvent'}[topic]
        by_topic.setdefault(topic, []).append((stamp, msg))
    assert {t: len(v) for t, v in by_topic.items()} == {
        '/camera/image_raw': 10, '/joint_states': 10, '/servo_node/delta_twist_cmds': 5,
        EPISODE_EVENTS_TOPIC: 2,
    }
    images = [m for _, m in by_topic['/camera/image_raw']]
    assert [int(m.data[0]) for m in images] == list(range(10))
    assert images[3].encoding == 'rgb8' and (images[3].height, images[3].width) == (4, 6)
    joints = [m for _, m in by_topic['/joint_states']]
    np.testing.assert_allclose(joints[7].position, [0.7, -0.7])
    twists = [m.twist.linear.x for _, m in by_topic['/servo_node/delta_twist_cmds']]
    assert twists == [0.0, 2.0, 4.0, 6.0, 8.0]

    (start_stamp, start), (stop_stamp, stop_event) = by_topic[EPISODE_EVENTS_TOPIC]
    assert (start.event, stop_event.event) == (0, 1)
    assert (start_stamp, stop_stamp) == (t0, stop)
    assert start.header.stamp.sec * 10**9 + start.header.stamp.nanosec == t0
    assert start.episode_id == stop_event.episode_id == 'ep1'
    assert stop_event.label == 'stack red on blue' and stop_event.success

    info = read_episode_info(path)
    assert (info.episode_id, info.label, info.success) == ('ep1', 'stack red on blue', True)
    assert (info.start_ns, info.stop_ns, info.complete) == (t0, stop, True)
    assert info.message_counts['/camera/image_raw'] == 10


def test_failed_episode_and_listing(tmp_path: Path, store) -> None:
    ok = EpisodeWriter(tmp_path, 'a', TOPICS, start_ns=10, typestore=store)
    ok.finish(success=False, stop_ns=20)
    unfinished = EpisodeWriter(tmp_path, 'b', TOPICS, start_ns=30, typestore=store)
    unfinished.write('/joint_states', 31, _joints(store, 31, 1.0))
    episodes = {e.episode_id: e for e in list_episodes(tmp_path)}
    assert episodes['a'].complete and episodes['a'].success is False
    assert episodes['a'].message_counts == {**dict.fromkeys(TOPICS, 0), EPISODE_EVENTS_TOPIC: 2}
    assert not episodes['b'].complete and episodes['b'].success is None
    unfinished.discard()
    assert not (tmp_path / 'b').exists()
    assert [e.episode_id for e in list_episodes(tmp_path)] == ['a']


def test_bad_use_is_refused(tmp_path: Path, store) -> None:
    with pytest.raises(ValueError, match='storage'):
        EpisodeWriter(tmp_path, 'x', TOPICS, start_ns=0, storage='bag', typestore=store)
    with pytest.raises(ValueError, match='unknown message type'):
        EpisodeWriter(tmp_path, 'x', {'/a': 'nope/msg/Nope'}, start_ns=0, typestore=store)
    with pytest.raises(ValueError, match='absolute'):
        EpisodeWriter(tmp_path, 'x', {'a': 'std_msgs/msg/String'}, start_ns=0, typestore=store)
    with pytest.raises(ValueError, match='folder name'):
        EpisodeWriter(tmp_path, '../x', TOPICS, start_ns=0, typestore=store)
    writer = EpisodeWriter(tmp_path, 'x', TOPICS, start_ns=0, typestore=store)
    with pytest.raises(KeyError, match='/not_recorded'):
        writer.write('/not_recorded', 1, b'')
    writer.finish(success=True, stop_ns=2)
    with pytest.raises(RuntimeError, match='closed'):
        writer.write('/joint_states', 3, _joints(store, 3, 0.0))
    with pytest.raises(FileExistsError):
        EpisodeWriter(tmp_path, 'x', TOPICS, start_ns=0, typestore=store)
    assert read_episode_info(tmp_path / 'x').complete  # the finished bag was not touched
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    with pytest.raises(OSError):
        EpisodeWriter(blocker / 'episodes', 'y', TOPICS, start_ns=0, typestore=store)


def test_type_store_has_am_msgs(store) -> None:
    event = store.types['am_msgs/msg/EpisodeEvent']
    assert event.STOP == 1 and event.DISCARD == 2
    status = store.types['am_msgs/msg/RecorderStatus']
    assert 'topics' in status.__dataclass_fields__


def test_kill_9_leaves_finished_episodes_intact(tmp_path: Path) -> None:
    '''A writer process killed without warning: episode 1 readable, episode 2 marked.'''
    script = textwrap.dedent(f'''
        import sys, time
        import numpy as np
        from am_dataset_recorder.episode_writer import EpisodeWriter, make_typestore
        store = make_typestore()
        topics = {{'/camera/image_raw': 'sensor_msgs/msg/Image'}}
        Image = store.types['sensor_msgs/msg/Image']
        Header = store.types['std_msgs/msg/Header']
        Time = store.types['builtin_interfaces/msg/Time']
        img = Image(header=Header(stamp=Time(sec=0, nanosec=0), frame_id=''), height=64,
                    width=64, encoding='rgb8', is_bigendian=0, step=192,
                    data=np.zeros(64 * 64 * 3, np.uint8))
        cdr = bytes(store.serialize_cdr(img, 'sensor_msgs/msg/Image'))
        for name in ('first', 'second'):
            w = EpisodeWriter({str(tmp_path)!r}, name, topics, start_ns=1, typestore=store)
            for k in range(100):
                w.write('/camera/image_raw', 2 + k, cdr)
            if name == 'first':
                w.finish(success=True, stop_ns=1000)
        print('ready', flush=True)
        time.sleep(60)
    ''')
    proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'ready'
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    first, second = list_episodes(tmp_path)
    assert first.complete and first.success and first.message_counts['/camera/image_raw'] == 100
    assert len([m for m in _read_all(first.path) if m[0] == '/camera/image_raw']) == 100
    assert not second.complete
    assert (second.path / INCOMPLETE_MARKER).exists()
    assert not (second.path / 'metadata.yaml').exists()
