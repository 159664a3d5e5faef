'''Reading rosbag2 bags (MCAP or sqlite3, ours or `ros2 bag record`'s) into time series.

A bag becomes a `BagStreams`: per topic, sorted timestamps and decoded values; camera frames
are already at training resolution (a bag never sits in memory at camera resolution).
Which of those samples form a dataset frame is `align`'s business.
'''

from dataclasses import dataclass, field
import functools
import logging
import math
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

from am_learning.data.config import DatasetConfig
from am_learning.data.images import (
    compressed_from_cdr,
    compressed_from_message,
    image_from_cdr,
    image_from_message,
)

log = logging.getLogger(__name__)

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
EVENT_TYPE = 'am_msgs/msg/EpisodeEvent'
# The message types each role accepts (a bag's other topics are never read).
ACCEPTED_TYPES = {
    'camera': (IMAGE_TYPE,),
    'compressed': (COMPRESSED_TYPE,),
    'joints': ('sensor_msgs/msg/JointState',),
    'twist': ('geometry_msgs/msg/TwistStamped', 'geometry_msgs/msg/Twist'),
    'gripper': ('std_msgs/msg/Float64MultiArray', 'std_msgs/msg/Float32MultiArray'),
    'ee_pose': ('geometry_msgs/msg/PoseStamped', 'geometry_msgs/msg/Pose'),
    'events': (EVENT_TYPE,),
    'state': ('std_msgs/msg/Float32MultiArray', 'std_msgs/msg/Float64MultiArray'),
}
STORAGE_SUFFIXES = ('.mcap', '.db3')
INCOMPLETE_MARKER = 'INCOMPLETE'
'''File the recorder's EpisodeWriter keeps in an episode folder until the episode is whole.'''
# Event codes of am_msgs/msg/EpisodeEvent.
EVENT_START, EVENT_STOP, EVENT_DISCARD = 0, 1, 2


class BagReadError(RuntimeError):
    '''A bag (or one of its files) cannot be read: truncated, corrupt, unknown format.'''


@dataclass
class Series:
    '''One topic's samples: (n,) int64 stamps in ns (sorted) and (n, ...) values.'''

    stamps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.stamps)

    @classmethod
    def empty(cls, width: int) -> 'Series':
        return cls(np.zeros(0, np.int64), np.zeros((0, width), np.float64))


@dataclass(frozen=True)
class EpisodeEvent:
    '''An episode marker read from the bag.'''

    stamp_ns: int
    event: int
    episode_id: str
    label: str
    success: bool


@dataclass
class BagStreams:
    '''Everything the dataset needs from one bag, decoded.'''

    path: Path
    topics: dict[str, str]
    '''Every topic of the bag -> its message type.'''
    image_topic: str | None = None
    images: Series | None = None
    '''values: (n, S, S, 3) uint8 RGB at training resolution.'''
    joints: dict[str, Series] = field(default_factory=dict)
    '''Per joint name: values (n,) float64 positions (joints may come in separate messages).'''
    twist: Series | None = None
    '''values: (n, 4) linear x, y, z (m/s) and angular z (rad/s).'''
    gripper: Series | None = None
    '''values: (n,) commanded closure in [0, 1].'''
    ee_pose: Series | None = None
    '''values: (n, 4) position x, y, z (m) and yaw (rad).'''
    state: Series | None = None
    '''values: (n, D) float64.'''
    state_layout: str = ''
    '''The state arrays' MultiArrayLayout label (dim[0].label), '' when they carry none.'''
    events: list[EpisodeEvent] = field(default_factory=list)
    custom_data: dict[str, str] = field(default_factory=dict)
    '''The bag's metadata.yaml custom_data (the recorder's episode metadata).'''
    decode_errors: dict[str, int] = field(default_factory=dict)
    '''Per topic: messages that could not be decoded and were left out.'''
    first_errors: dict[str, str] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    '''Bag receive time of the first and last message read.'''


def find_bags(root: Path) -> list[Path]:
    '''Every bag under `root`, sorted: folders holding metadata.yaml or the recorder's
    INCOMPLETE marker (read_bag refuses those), and storage files (.mcap, .db3) outside
    such folders (e.g. a `ros2 bag record` killed before it wrote metadata.yaml).
    Hidden folders (names starting with '.') are left out: writers keep unfinished work there.
    '''
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix in STORAGE_SUFFIXES else []
    if (root / 'metadata.yaml').is_file() or (root / INCOMPLETE_MARKER).exists():
        return [root]
    bags: list[Path] = []
    for child in sorted(root.iterdir()):
        if child.name.startswith('.'):
            continue
        if child.is_dir():
            bags.extend(find_bags(child))
        elif child.suffix in STORAGE_SUFFIXES:
            bags.append(child)
    return bags


def bag_files(bag: Path) -> list[Path]:
    '''The files a bag consists of (what its fingerprint covers).'''
    if bag.is_file():
        return [bag]
    return sorted(p for p in bag.iterdir() if p.is_file())


def _msgdef_types(msgtype: str, fmt: str, text: str) -> dict:
    if fmt == 'idl':
        sep = '=' * 80 + '\n'
        typs: dict = {}
        parts = text.split(sep)[1:] if text.startswith(f'{sep}IDL: ') else [None, text]
        for part in parts:
            if part is None:
                continue
            idl = part.split('\n', 1)[1] if part.startswith('IDL: ') else part
            typs.update(get_types_from_idl(idl))
        return typs
    return get_types_from_msg(text, msgtype)


@functools.cache
def _default_store() -> object:
    return get_typestore(Stores.ROS2_JAZZY)


@functools.lru_cache(maxsize=16)
def _typestore(definitions: frozenset[tuple[str, str, str]]) -> object:
    '''A typestore holding exactly the given types: each from the definition stored in the
    bag (custom types such as am_msgs come from there), or ROS 2 Jazzy's standard
    definition when the bag stores none (old sqlite3 bags).'''
    typs: dict = {}
    default = _default_store()
    for msgtype, fmt, text in sorted(definitions):
        if fmt in ('msg', 'idl') and text:
            typs.update(_msgdef_types(msgtype, fmt, text))
        elif msgtype in default.fielddefs:
            typs.update(get_types_from_msg(default.generate_msgdef(msgtype)[0], msgtype))
    store = get_typestore(Stores.EMPTY)
    store.register(typs)
    return store


def _definition_key(conn: object) -> tuple[str, str, str]:
    fmt = getattr(getattr(conn.msgdef, 'format', None), 'name', 'NONE').lower()
    return conn.msgtype, fmt if fmt in ('msg', 'idl') else 'none', conn.msgdef.data or ''


def _roles(config: DatasetConfig) -> dict[str, str]:
    '''Role -> topic name for the topics this config reads.'''
    roles = {
        'joints': config.joint_states_topic,
        'twist': config.twist_topic,
        'gripper': config.gripper_topic,
        'ee_pose': config.ee_pose_topic,
        'events': config.events_topic,
    }
    if config.use_images:
        roles['camera'] = config.camera_topic
        if config.compressed_camera_topic:
            roles['compressed'] = config.compressed_camera_topic
    if config.state_topic:
        roles['state'] = config.state_topic
    return roles


def _header_ns(msg: object) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _yaw(q: object) -> float:
    '''Yaw about the world z axis of a quaternion (ZYX convention; also right for a gripper
    pointing down, i.e. Rz(yaw) @ Rx(pi)).'''
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def read_bag(path: Path, config: DatasetConfig, *, fast: bool = True) -> BagStreams:
    '''Decode the topics `config` names from one bag.

    fast: read camera frames straight from the CDR bytes (False: deserialise every image
    message fully first; the naive reference path, same result for raw images).
    Raises BagReadError when the bag cannot be read to its end.'''
    path = Path(path)
    try:
        return _read_bag(path, config, fast)
    except BagReadError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure means a bad bag
        raise BagReadError(f'{type(err).__name__}: {err}') from err


def _read_bag(path: Path, config: DatasetConfig, fast: bool) -> BagStreams:
    if path.is_dir() and (path / INCOMPLETE_MARKER).exists():
        raise BagReadError(
            f'episode folder marked {INCOMPLETE_MARKER}: still being recorded, or its '
            'recorder was killed before finishing it'
        )
    with Reader(path) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        metadata = getattr(reader.storage, 'metadata', None)
        custom = dict(getattr(metadata, 'custom', None) or {})
        streams = BagStreams(path=path, topics=topics, custom_data=custom)
        wanted: dict[str, str] = {}
        for role, topic in _roles(config).items():
            if topic not in topics:
                continue
            if topics[topic] not in ACCEPTED_TYPES[role]:
                log.warning(
                    '%s: topic %s has type %s, expected %s: ignored',
                    path, topic, topics[topic], ' or '.join(ACCEPTED_TYPES[role]),
                )
                continue
            wanted[topic] = role
        if 'camera' in wanted.values() and 'compressed' in wanted.values():
            del wanted[config.compressed_camera_topic]
        conns = [c for c in reader.connections if c.topic in wanted]
        store = _typestore(frozenset(_definition_key(c) for c in conns))
        collector = _Collector(streams, config, store, fast)
        # An empty connection list would mean "every message" to rosbags.
        for conn, timestamp, raw in reader.messages(connections=conns) if conns else ():
            collector.add(wanted[conn.topic], conn.topic, conn.msgtype, timestamp, raw)
        collector.finish()
    for topic, count in streams.decode_errors.items():
        log.warning(
            '%s: %d message(s) on %s could not be decoded and were left out (first: %s)',
            path, count, topic, streams.first_errors[topic],
        )
    return streams


class _Collector:
    '''Accumulates decoded samples per role, then turns them into sorted Series.'''

    def __init__(self, streams: BagStreams, config: DatasetConfig, store: object,
                 fast: bool) -> None:
        self.streams = streams
        self.config = config
        self.store = store
        self.fast = fast
        self.header_time = config.time_source == 'header'
        self.lists: dict[str, tuple[list, list]] = {}
        self.joint_lists: dict[str, tuple[list, list]] = {
            name: ([], []) for name in config.joint_names
        }
        if config.gripper_joint and config.gripper_joint not in self.joint_lists:
            self.joint_lists[config.gripper_joint] = ([], [])
        self.state_dim: int | None = None
        self.first = None
        self.last = None

    def _stamp(self, bag_ns: int, header_ns: int | None) -> int:
        if self.header_time and header_ns:
            return header_ns
        return bag_ns

    def _append(self, role: str, stamp: int, value: object) -> None:
        stamps, values = self.lists.setdefault(role, ([], []))
        stamps.append(stamp)
        values.append(value)

    def add(self, role: str, topic: str, msgtype: str, bag_ns: int, raw: bytes) -> None:
        self.first = bag_ns if self.first is None else self.first
        self.last = bag_ns
        try:
            self._add(role, topic, msgtype, bag_ns, raw)
        except Exception as err:  # noqa: BLE001 - one bad message must not lose the bag
            errors = self.streams.decode_errors
            errors[topic] = errors.get(topic, 0) + 1
            self.streams.first_errors.setdefault(topic, f'{type(err).__name__}: {err}')

    def _add(self, role: str, topic: str, msgtype: str, bag_ns: int, raw: bytes) -> None:
        size = self.config.image_size
        if role in ('camera', 'compressed'):
            self.streams.image_topic = topic
            if self.fast:
                decode = image_from_cdr if role == 'camera' else compressed_from_cdr
                frame, header_ns = decode(raw, size)
            else:
                msg = self.store.deserialize_cdr(raw, msgtype)
                naive = image_from_message if role == 'camera' else compressed_from_message
                frame, header_ns = naive(msg, size), _header_ns(msg)
            self._append('images', self._stamp(bag_ns, header_ns), frame)
            return
        msg = self.store.deserialize_cdr(raw, msgtype)
        header_ns = _header_ns(msg) if hasattr(msg, 'header') else None
        stamp = self._stamp(bag_ns, header_ns)
        if role == 'joints':
            positions = np.asarray(msg.position, dtype=np.float64)
            if len(positions) != len(msg.name):
                raise ValueError(
                    f'JointState with {len(msg.name)} names and {len(positions)} positions'
                )
            for name, position in zip(msg.name, positions):
                if name in self.joint_lists:
                    self.joint_lists[name][0].append(stamp)
                    self.joint_lists[name][1].append(float(position))
        elif role == 'twist':
            twist = getattr(msg, 'twist', msg)
            self._append(role, stamp, (twist.linear.x, twist.linear.y, twist.linear.z,
                                       twist.angular.z))
        elif role == 'gripper':
            if len(msg.data) == 0:
                raise ValueError('empty gripper command')
            self._append(role, stamp, float(msg.data[0]))
        elif role == 'ee_pose':
            pose = getattr(msg, 'pose', msg)
            p = pose.position
            self._append(role, stamp, (p.x, p.y, p.z, _yaw(pose.orientation)))
        elif role == 'state':
            values = np.asarray(msg.data, dtype=np.float64)
            if self.state_dim is None:
                self.state_dim = len(values)
            if len(values) != self.state_dim or len(values) == 0:
                raise ValueError(f'state of size {len(values)}, earlier ones {self.state_dim}')
            if msg.layout.dim and not self.streams.state_layout:
                self.streams.state_layout = str(msg.layout.dim[0].label)
            self._append(role, stamp, values)
        elif role == 'events':
            self.streams.events.append(EpisodeEvent(
                stamp_ns=stamp, event=int(msg.event), episode_id=str(msg.episode_id),
                label=str(msg.label), success=bool(msg.success),
            ))

    def finish(self) -> None:
        streams = self.streams
        streams.start_ns = self.first or 0
        streams.end_ns = self.last or 0
        for role, (stamps, values) in self.lists.items():
            series = _series(stamps, values)
            setattr(streams, role, series)
        for name, (stamps, values) in self.joint_lists.items():
            if stamps:
                streams.joints[name] = _series(stamps, values)
        streams.events.sort(key=lambda e: e.stamp_ns)


def _series(stamps: list, values: list) -> Series:
    stamps_arr = np.asarray(stamps, dtype=np.int64)
    if values and isinstance(values[0], np.ndarray) and values[0].dtype == np.uint8:
        values_arr = np.stack(values)
    else:
        values_arr = np.asarray(values, dtype=np.float64)
    order = np.argsort(stamps_arr, kind='stable')
    if np.any(order != np.arange(len(order))):
        stamps_arr, values_arr = stamps_arr[order], values_arr[order]
    return Series(stamps_arr, values_arr)

