'''The recorder node as its own process, driven over DDS by a probe node in the test.

Each test gives its recorder its own node name and topic prefix, so a recorder killed by
an earlier test (whose DDS endpoints linger until their lease ends) is never mistaken for
the live one.
'''

import os
from pathlib import Path
import shutil
import signal
import subprocess
import time

from am_testing.fixtures import wait_for
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from am_dataset_recorder.episode_writer import (
    EPISODE_EVENTS_TOPIC,
    INCOMPLETE_MARKER,
    list_episodes,
    make_typestore,
    read_episode_info,
)

pytestmark = pytest.mark.ros

IMAGE, JOINTS, TWIST = 'sensor_msgs/msg/Image', 'sensor_msgs/msg/JointState', \
    'geometry_msgs/msg/TwistStamped'


class Probe:
    '''The test's side of the graph: publishers, the recorder's services and status.'''

    def __init__(self, node, recorder: str, topics: dict[str, str],
                 reliable_images: bool = False) -> None:
        from geometry_msgs.msg import TwistStamped
        from rcl_interfaces.srv import SetParameters
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState

        from am_msgs.msg import EpisodeEvent, RecorderStatus
        from am_msgs.srv import StartEpisode, StopEpisode

        classes = {IMAGE: Image, JOINTS: JointState, TWIST: TwistStamped}
        self.node = node
        self.topics = topics
        self.publishers = {
            topic: node.create_publisher(
                classes[msgtype], topic,
                qos_profile_sensor_data if msgtype == IMAGE and not reliable_images else 100)
            for topic, msgtype in topics.items()
        }
        self.status = []
        self.events = []
        node.create_subscription(RecorderStatus, f'/{recorder}/status', self.status.append, 10)
        node.create_subscription(EpisodeEvent, EPISODE_EVENTS_TOPIC, self.events.append, 10)
        self.start_client = node.create_client(StartEpisode, f'/{recorder}/start_episode')
        self.stop_client = node.create_client(StopEpisode, f'/{recorder}/stop_episode')
        self.params_client = node.create_client(SetParameters, f'/{recorder}/set_parameters')
        self._start_type, self._stop_type = StartEpisode, StopEpisode
        self.image_size = (48, 64)

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.start_client.wait_for_service(timeout_sec=timeout), 'recorder not up'
        assert self.stop_client.wait_for_service(timeout_sec=timeout)
        assert wait_for(lambda: all(p.get_subscription_count() > 0
                                    for p in self.publishers.values()), timeout)
        assert wait_for(lambda: len(self.status) > 0, timeout), 'no ~/status'

    def start(self, label: str = ''):
        request = self._start_type.Request(label=label)
        return self.start_client.call(request, timeout_sec=20.0)

    def stop(self, success: bool = True, discard: bool = False):
        request = self._stop_type.Request(task_success=success, discard=discard)
        return self.stop_client.call(request, timeout_sec=30.0)

    def latest_stats(self) -> dict:
        return {s.topic: s for s in self.status[-1].topics}

    def publish(self, topic: str, k: int) -> None:
        from geometry_msgs.msg import TwistStamped
        from sensor_msgs.msg import Image, JointState

        msgtype = self.topics[topic]
        if msgtype == IMAGE:
            h, w = self.image_size
            msg = Image(height=h, width=w, encoding='rgb8', step=3 * w,
                        data=np.full(h * w * 3, k % 256, np.uint8).tobytes())
        elif msgtype == JOINTS:
            msg = JointState(name=['j0', 'j1'], position=[float(k), -float(k)])
        else:
            msg = TwistStamped()
            msg.twist.linear.x = float(k)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.publishers[topic].publish(msg)

    def warm_up(self, timeout: float = 20.0) -> None:
        '''Record (then discard) until every topic arrived once: both ends have matched.'''
        assert self.start().success
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for topic in self.topics:
                self.publish(topic, 0)
            time.sleep(0.05)
            if self.status and all(s.received > 0 for s in self.status[-1].topics):
                break
        assert self.stop(discard=True).success
        assert wait_for(lambda: any(e.event == 2 for e in self.events), 5.0)

    def wait_received(self, expected: dict[str, int], timeout: float = 10.0) -> bool:
        return wait_for(lambda: self.status and all(
            self.latest_stats()[t].received >= n for t, n in expected.items()), timeout)


def _topics(prefix: str, *types: str) -> dict[str, str]:
    names = {IMAGE: 'camera/image_raw', JOINTS: 'joint_states', TWIST: 'twist_cmds'}
    return {f'/{prefix}/{names[t]}': t for t in types}


def _start_recorder(start_node, name: str, out: Path, topics: dict[str, str], **params):
    return start_node('am_dataset_recorder', 'recorder', name=name, params={
        'output_dir': str(out), 'topics': list(topics), 'types': list(topics.values()),
        'status_rate_hz': 10.0, 'min_free_mb': 0.0, **params,
    })


def _read(bag: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with AnyReader([bag]) as reader:
        for c, _, raw in reader.messages():
            out.setdefault(c.topic, []).append(reader.deserialize(raw, c.msgtype))
    return out


def test_records_published_topics(start_node, ros_node, tmp_path: Path) -> None:
    topics = _topics('rec', IMAGE, JOINTS, TWIST)
    recorder = _start_recorder(start_node, 'rec_main', tmp_path, topics)
    probe = Probe(ros_node, 'rec_main', topics)
    probe.wait_ready()
    probe.warm_up()
    assert list_episodes(tmp_path) == []  # the discarded warm-up left nothing

    started = probe.start('pick the cube')
    assert started.success, started.message
    n = 25
    for k in range(n):
        for topic in topics:
            probe.publish(topic, k + 1)
        time.sleep(0.02)
    assert probe.wait_received(dict.fromkeys(topics, n)), probe.latest_stats()
    stopped = probe.stop(success=True)
    assert stopped.success and stopped.episode_id == started.episode_id
    assert stopped.messages_written == 3 * n + 2

    bag = Path(stopped.path)
    info = read_episode_info(bag)
    assert info.complete and info.label == 'pick the cube' and info.success
    assert info.start_ns < info.stop_ns
    messages = _read(bag)
    assert {t: len(m) for t, m in messages.items()} == {**dict.fromkeys(topics, n),
                                                        EPISODE_EVENTS_TOPIC: 2}
    joints = [m.position[0] for m in messages['/rec/joint_states']]
    assert joints == [float(k + 1) for k in range(n)]  # all of them, in order
    images = messages['/rec/camera/image_raw']
    assert (images[0].height, images[0].width, images[0].encoding) == (48, 64, 'rgb8')
    assert [int(m.data[0]) for m in images] == [k + 1 for k in range(n)]
    assert [m.twist.linear.x for m in messages['/rec/twist_cmds']] == joints
    with AnyReader([bag]) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == {
            **topics, EPISODE_EVENTS_TOPIC: 'am_msgs/msg/EpisodeEvent'}
        hashes = {c.topic: c.digest for c in reader.connections}

    # The same boundaries went out on /am/episode_events for a `ros2 bag record` beside it.
    assert wait_for(lambda: sum(e.episode_id == started.episode_id for e in probe.events) == 2)
    live = [e for e in probe.events if e.episode_id == started.episode_id]
    assert [e.event for e in live] == [0, 1] and live[1].success
    assert live[0].label == 'pick the cube'
    # The bag's type hashes are the ones rclpy announces on the wire.
    wire = {str(i.topic_type_hash) for i in ros_node.get_publishers_info_by_topic(
        EPISODE_EVENTS_TOPIC)}
    assert hashes[EPISODE_EVENTS_TOPIC] in wire
    image_wire = ros_node.get_publishers_info_by_topic('/rec/camera/image_raw')[0]
    assert hashes['/rec/camera/image_raw'] == str(image_wire.topic_type_hash)
    assert make_typestore().hash_rihs01(IMAGE) == hashes['/rec/camera/image_raw']

    stats = probe.latest_stats()
    assert all((s.received, s.written, s.lost) == (n, n, 0) for s in stats.values())
    # reliability auto matched each publisher: best effort for the camera, else reliable.
    log = recorder.log()
    assert 'subscribed /rec/camera/image_raw (sensor_msgs/msg/Image, best_effort' in log
    assert 'subscribed /rec/joint_states (sensor_msgs/msg/JointState, reliable' in log
    assert not probe.stop().success  # nothing recording
    assert recorder.alive()


def test_kill_9_mid_episode(start_node, ros_node, tmp_path: Path) -> None:
    topics = _topics('kill', JOINTS)
    recorder = _start_recorder(start_node, 'rec_kill', tmp_path, topics)
    probe = Probe(ros_node, 'rec_kill', topics)
    probe.wait_ready()
    first = probe.start('first')
    assert first.success
    for k in range(20):
        probe.publish('/kill/joint_states', k)
        time.sleep(0.01)
    assert probe.wait_received({'/kill/joint_states': 20})
    assert probe.stop(success=True).success
    second = probe.start('second')
    assert second.success
    for k in range(20):
        probe.publish('/kill/joint_states', k)
        time.sleep(0.01)
    assert wait_for(lambda: probe.latest_stats()['/kill/joint_states'].written >= 20)

    recorder.popen.send_signal(signal.SIGKILL)
    recorder.popen.wait(10)
    episodes = {e.episode_id: e for e in list_episodes(tmp_path)}
    done, cut = episodes[first.episode_id], episodes[second.episode_id]
    assert done.complete and done.label == 'first' and done.success
    assert done.message_counts['/kill/joint_states'] == 20
    assert len(_read(done.path)['/kill/joint_states']) == 20
    assert not cut.complete
    assert (cut.path / INCOMPLETE_MARKER).exists()
    assert not (cut.path / 'metadata.yaml').exists()


def _make_unwritable(folder: Path) -> bool:
    '''chmod 555 (and chattr +i as root, where permission bits do not bind); True if it took.'''
    folder.chmod(0o555)
    if os.geteuid() == 0 and shutil.which('chattr'):
        subprocess.run(['chattr', '+i', str(folder)], capture_output=True)
    try:
        (folder / '.probe').touch()
    except OSError:
        return True
    (folder / '.probe').unlink()
    return False


def _make_writable(folder: Path) -> None:
    if shutil.which('chattr'):
        subprocess.run(['chattr', '-i', str(folder)], capture_output=True)
    folder.chmod(0o755)


def test_unwritable_output_dir_is_refused(start_node, ros_node, tmp_path: Path) -> None:
    from rclpy.parameter import Parameter

    topics = _topics('ro', JOINTS)
    out = tmp_path / 'episodes'
    # An episode recorded earlier must survive untouched.
    from am_dataset_recorder.episode_writer import EpisodeWriter
    EpisodeWriter(out, 'old', topics, label='keep me', start_ns=1).finish(True, 2)
    before = {p.name: p.read_bytes() for p in (out / 'old').iterdir()}
    if not _make_unwritable(out):  # no way to take write access here: block the path
        _make_writable(out)
        out = tmp_path / 'a_file' / 'episodes'
        (tmp_path / 'a_file').write_text('not a folder')
    try:
        recorder = _start_recorder(start_node, 'rec_ro', out, topics)
        probe = Probe(ros_node, 'rec_ro', topics)
        probe.wait_ready()
        assert 'not writable' in probe.status[-1].error
        refused = probe.start()
        assert not refused.success and 'not writable' in refused.message
        assert refused.episode_id == ''
        # The status timer may have caught the moment between the request and the writer
        # thread's refusal: the refused episode must be gone from the next status.
        assert recorder.alive() and wait_for(lambda: not probe.status[-1].recording)

        # Parameters: a bad value is rejected by the node; a good folder recovers.
        set_request = probe.params_client.srv_type.Request()
        set_request.parameters = [Parameter('queue_size', value=0).to_parameter_msg()]
        result = probe.params_client.call(set_request, timeout_sec=10.0)
        assert not result.results[0].successful and 'queue_size' in result.results[0].reason
        fresh = tmp_path / 'fresh'
        set_request.parameters = [Parameter('output_dir', value=str(fresh)).to_parameter_msg()]
        assert probe.params_client.call(set_request, timeout_sec=10.0).results[0].successful
        started = probe.start()
        assert started.success and Path(started.path).parent == fresh
        assert wait_for(lambda: probe.status[-1].error == '' and probe.status[-1].recording)
        assert probe.stop().success
    finally:
        if (tmp_path / 'episodes').exists():
            _make_writable(tmp_path / 'episodes')
    after = {p.name: p.read_bytes() for p in (tmp_path / 'episodes' / 'old').iterdir()}
    assert after == before
    assert read_episode_info(tmp_path / 'episodes' / 'old').label == 'keep me'


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_signal_closes_the_bag(start_node, ros_node, tmp_path: Path, sig: int) -> None:
    name = f'rec_{sig.name.lower()}'
    topics = _topics(name, JOINTS)
    shutdown_success = sig == signal.SIGINT  # the parameter decides the flag
    recorder = _start_recorder(start_node, name, tmp_path, topics,
                               shutdown_success=shutdown_success)
    probe = Probe(ros_node, name, topics)
    probe.wait_ready()
    started = probe.start('cut short')
    assert started.success
    for k in range(15):
        probe.publish(f'/{name}/joint_states', k)
        time.sleep(0.01)
    assert probe.wait_received({f'/{name}/joint_states': 15})
    assert recorder.stop(sig, timeout=20.0) == 0, recorder.log()
    # The boundary also went out live, for a `ros2 bag record` running beside it.
    assert wait_for(lambda: [e.event for e in probe.events
                             if e.episode_id == started.episode_id] == [0, 1], 5.0)

    info = read_episode_info(Path(started.path))
    assert info.complete and info.success is shutdown_success and info.label == 'cut short'
    messages = _read(Path(started.path))
    assert len(messages[f'/{name}/joint_states']) == 15
    assert [e.event for e in messages[EPISODE_EVENTS_TOPIC]] == [0, 1]


def test_tiny_queue_loses_counted_messages(start_node, ros_node, tmp_path: Path) -> None:
    topics = _topics('lossy', IMAGE, JOINTS)
    # A 160x120 rgb8 image is 57.6 kB: above a 0.05 MB queue, so every image is dropped.
    recorder = _start_recorder(start_node, 'rec_lossy', tmp_path, topics, queue_max_mb=0.05)
    probe = Probe(ros_node, 'rec_lossy', topics, reliable_images=True)
    probe.image_size = (120, 160)
    probe.wait_ready()
    started = probe.start()
    assert started.success
    n = 10
    for k in range(n):
        probe.publish('/lossy/camera/image_raw', k)
        probe.publish('/lossy/joint_states', k)
        time.sleep(0.03)
    assert probe.wait_received({'/lossy/camera/image_raw': n, '/lossy/joint_states': n})
    stopped = probe.stop()
    assert stopped.success and stopped.messages_written == n + 2
    assert wait_for(lambda: not probe.status[-1].recording)
    stats = probe.latest_stats()
    image, joints = stats['/lossy/camera/image_raw'], stats['/lossy/joint_states']
    assert (image.received, image.written, image.lost) == (n, 0, n)
    assert (joints.received, joints.written, joints.lost) == (n, n, 0)
    bag = Path(stopped.path)
    assert read_episode_info(bag).message_counts['/lossy/camera/image_raw'] == 0
    assert f'"/lossy/camera/image_raw": {n}' in (bag / 'metadata.yaml').read_text()
    assert recorder.alive()


def test_bad_startup_parameters_refuse_to_start(start_node, tmp_path: Path) -> None:
    recorder = start_node('am_dataset_recorder', 'recorder', name='rec_bad', params={
        'output_dir': str(tmp_path), 'topics': ['/a', '/b'], 'types': ['std_msgs/msg/String'],
    })
    assert recorder.popen.wait(30) == 2
    assert 'same length' in recorder.log()


def test_best_effort_publisher_joining_a_reliable_topic(start_node, ros_node,
                                                        tmp_path: Path) -> None:
    '''reliability auto: a best-effort publisher that appears later is recorded too.'''
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState

    topics = _topics('mixed', JOINTS)
    recorder = _start_recorder(start_node, 'rec_mixed', tmp_path, topics)
    probe = Probe(ros_node, 'rec_mixed', topics)
    probe.wait_ready()
    assert wait_for(lambda: 'subscribed /mixed/joint_states (sensor_msgs/msg/JointState, '
                            'reliable' in recorder.log())
    late = ros_node.create_publisher(JointState, '/mixed/joint_states', qos_profile_sensor_data)
    assert wait_for(lambda: 're-subscribing best effort' in recorder.log()
                    and late.get_subscription_count() > 0, 15.0), recorder.log()
    started = probe.start()
    assert started.success
    sent = 20
    for _ in range(sent):
        probe.publish('/mixed/joint_states', 1)
        late.publish(JointState(name=['late'], position=[-1.0]))
        time.sleep(0.02)
    assert probe.wait_received({'/mixed/joint_states': sent + 1}), probe.latest_stats()
    stopped = probe.stop()
    positions = [m.position[0] for m in _read(Path(stopped.path))['/mixed/joint_states']]
    assert positions.count(1.0) == sent and positions.count(-1.0) >= 1


def test_compressed_image_transport(start_node, ros_node, tmp_path: Path) -> None:
    '''image_transport compressed: an Image topic is recorded as <topic>/compressed.'''
    from sensor_msgs.msg import CompressedImage

    recorder = _start_recorder(start_node, 'rec_jpeg', tmp_path,
                               {'/jpeg/camera/image_raw': IMAGE},
                               image_transport='compressed')
    publisher = ros_node.create_publisher(CompressedImage, '/jpeg/camera/image_raw/compressed',
                                          10)
    probe = Probe(ros_node, 'rec_jpeg', {})
    probe.wait_ready()
    assert wait_for(lambda: publisher.get_subscription_count() > 0, 15.0), recorder.log()
    started = probe.start()
    assert started.success
    for k in range(10):
        publisher.publish(CompressedImage(format='jpeg', data=bytes([0xFF, 0xD8, k])))
        time.sleep(0.01)
    assert probe.wait_received({'/jpeg/camera/image_raw/compressed': 10})
    stopped = probe.stop()
    frames = _read(Path(stopped.path))['/jpeg/camera/image_raw/compressed']
    assert [(f.format, bytes(f.data)[2]) for f in frames] == [('jpeg', k) for k in range(10)]
