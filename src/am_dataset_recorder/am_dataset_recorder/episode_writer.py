'''One rosbag2 bag per episode, written with rosbags from raw CDR bytes; no rclpy.

The recorder node and the offline episode generator (am_sim) share this writer, so an
episode recorded live and one generated without DDS are the same kind of folder:

    <root>/<episode_id>/                  a rosbag2 bag (metadata.yaml + <episode_id>.mcap)
    <root>/<episode_id>/INCOMPLETE        present from the start until finish() completed

Episode boundaries travel twice: as am_msgs/msg/EpisodeEvent START and STOP messages on
/am/episode_events inside the bag (the same messages the recorder publishes, so a plain
`ros2 bag record` beside it sees them too), and as `custom_data` in metadata.yaml (keys in
`METADATA_KEYS`), so a reader that has rosbags and nothing else recovers the label, the
success flag and the start/stop stamps.

A process killed mid-episode (kill -9, power cut of the process) leaves its episode folder
without metadata.yaml and with the INCOMPLETE marker: never mistaken for a finished one.
Finished episodes are never reopened, so they stay intact.
'''

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
import os
from pathlib import Path
import shutil
import time

from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore
from ruamel.yaml import YAML

from am_learning import conventions

EPISODE_EVENTS_TOPIC = conventions.EPISODE_EVENTS_TOPIC
'''Topic of the episode boundary events.'''
EPISODE_EVENT_TYPE = 'am_msgs/msg/EpisodeEvent'
INCOMPLETE_MARKER = 'INCOMPLETE'
'''File inside an episode folder while the episode is being written (or was cut short).'''
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
'''Storage ids accepted by `EpisodeWriter` (rosbag2's names).'''

# EpisodeEvent.event values (am_msgs/msg/EpisodeEvent.msg).
EVENT_START = 0
EVENT_STOP = 1
EVENT_DISCARD = 2

METADATA_KEYS = (
    'am.episode_id',
    'am.label',
    'am.success',
    'am.start_ns',
    'am.stop_ns',
    'am.format',
)
'''Keys this writer puts into metadata.yaml custom_data (all values are strings).'''
FORMAT_VERSION = '1'


def _am_msgs_dir() -> Path:
    '''The folder holding am_msgs' .msg files: installed share first, source tree second.'''
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        try:
            installed = Path(get_package_share_directory('am_msgs')) / 'msg'
            if installed.is_dir():
                return installed
        except PackageNotFoundError:
            pass
    except ImportError:  # plain Python without ament_index_python
        pass
    # src/am_dataset_recorder/am_dataset_recorder/episode_writer.py -> src/am_msgs/msg
    source = Path(__file__).resolve().parents[2] / 'am_msgs' / 'msg'
    if source.is_dir():
        return source
    raise FileNotFoundError(
        'am_msgs message definitions not found: neither an installed am_msgs '
        '(source install/setup.bash) nor src/am_msgs/msg next to this package'
    )


@lru_cache(maxsize=1)
def _am_msgs_types() -> dict:
    '''Parsed am_msgs definitions (parsing once per process is enough).'''
    types: dict = {}
    for path in sorted(_am_msgs_dir().glob('*.msg')):
        types.update(get_types_from_msg(path.read_text(), f'am_msgs/msg/{path.stem}'))
    return types


def make_typestore() -> Typestore:
    '''ROS 2 Kilted standard types (same definitions as Jazzy's) plus every am_msgs message.

    A fresh store per call: callers may register more types without affecting others.
    '''
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(_am_msgs_types())
    return store


@dataclass(frozen=True)
class EpisodeInfo:
    '''What a finished (or cut short) episode folder says about itself.'''

    path: Path
    episode_id: str
    label: str
    success: bool | None
    '''Operator's verdict; None when the episode never finished.'''
    start_ns: int | None
    stop_ns: int | None
    complete: bool
    '''metadata.yaml was written and the INCOMPLETE marker removed.'''
    message_counts: Mapping[str, int]
    '''Messages per topic (empty for an incomplete episode).'''


def is_complete(bag_dir: Path) -> bool:
    '''True for an episode folder whose writer finished: metadata.yaml and no marker.'''
    bag_dir = Path(bag_dir)
    return (bag_dir / 'metadata.yaml').is_file() and not (bag_dir / INCOMPLETE_MARKER).exists()


def read_episode_info(bag_dir: Path) -> EpisodeInfo:
    '''Episode metadata from a folder, using rosbags only (custom_data of metadata.yaml).'''
    bag_dir = Path(bag_dir)
    if not is_complete(bag_dir):
        return EpisodeInfo(bag_dir, bag_dir.name, '', None, None, None, False, {})
    with Reader(bag_dir) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    # rosbags' Reader parses custom_data but keeps it private: read the documented field.
    info = YAML(typ='safe').load((bag_dir / 'metadata.yaml').read_text())
    custom = info['rosbag2_bagfile_information'].get('custom_data') or {}
    success = custom.get('am.success')
    start = custom.get('am.start_ns')
    stop = custom.get('am.stop_ns')
    return EpisodeInfo(
        path=bag_dir,
        episode_id=custom.get('am.episode_id', bag_dir.name),
        label=custom.get('am.label', ''),
        success=None if success is None else success == 'true',
        start_ns=None if start is None else int(start),
        stop_ns=None if stop is None else int(stop),
        complete=True,
        message_counts=counts,
    )


def list_episodes(root: Path) -> list[EpisodeInfo]:
    '''Every episode folder under `root` (complete or not), sorted by name.'''
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        p for p in sorted(root.iterdir())
        if p.is_dir() and ((p / 'metadata.yaml').exists() or (p / INCOMPLETE_MARKER).exists())
    ]
    return [read_episode_info(p) for p in found]


def new_episode_id(now_ns: int | None = None, prefix: str = 'episode') -> str:
    '''A sortable, unique-enough folder name: episode_YYYYmmdd_HHMMSS_<ns remainder>.'''
    now_ns = time.time_ns() if now_ns is None else now_ns
    stamp = time.strftime('%Y%m%d_%H%M%S', time.gmtime(now_ns // 1_000_000_000))
    return f'{prefix}_{stamp}_{now_ns % 1_000_000_000:09d}'


class EpisodeWriter:
    '''Writes one episode into its own rosbag2 bag; not thread-safe (one writer thread).

    Messages arrive as raw CDR bytes (what a `raw=True` subscription delivers, or what
    `Typestore.serialize_cdr` returns), so nothing is re-serialised on the hot path.
    '''

    def __init__(
        self,
        root: Path,
        episode_id: str,
        topics: Mapping[str, str],
        *,
        label: str = '',
        start_ns: int,
        storage: str = 'mcap',
        typestore: Typestore | None = None,
    ) -> None:
        '''Create <root>/<episode_id>/ (a rosbag2 bag) and write the START event.

        topics maps topic -> 'pkg/msg/Type'. Raises ValueError for bad arguments,
        FileExistsError when the episode folder exists, OSError when it cannot be written.
        '''
        if storage not in STORAGES:
            raise ValueError(f'storage must be one of {sorted(STORAGES)}, not {storage!r}')
        if not episode_id or '/' in episode_id or episode_id in ('.', '..'):
            raise ValueError(f'episode_id must be a plain folder name, not {episode_id!r}')
        self._store = typestore if typestore is not None else make_typestore()
        for topic, msgtype in topics.items():
            if not topic.startswith('/'):
                raise ValueError(f'topic names must be absolute, not {topic!r}')
            if msgtype not in self._store.types:
                raise ValueError(f'unknown message type {msgtype!r} for topic {topic}')
        events_type = topics.get(EPISODE_EVENTS_TOPIC, EPISODE_EVENT_TYPE)
        if events_type != EPISODE_EVENT_TYPE:
            raise ValueError(f'{EPISODE_EVENTS_TOPIC} is reserved for {EPISODE_EVENT_TYPE}')

        self.root = Path(root)
        self.episode_id = episode_id
        self.label = label
        self.start_ns = int(start_ns)
        self.storage = storage
        self.path = self.root / episode_id
        if self.path.exists():
            raise FileExistsError(f'episode folder {self.path} exists already, not overwriting')
        self.root.mkdir(parents=True, exist_ok=True)

        self._writer = Writer(self.path, version=Writer.VERSION_LATEST,
                              storage_plugin=STORAGES[storage])
        self._writer.open()  # creates the folder
        self._closed = False
        try:
            (self.path / INCOMPLETE_MARKER).write_text(
                f'episode {episode_id} started at {self.start_ns} ns is being written or was '
                'cut short (the writer never finished it): metadata.yaml is missing and the '
                'storage file may lack its index.\n'
            )
            self._connections = {}
            for topic, msgtype in {**topics, EPISODE_EVENTS_TOPIC: EPISODE_EVENT_TYPE}.items():
                self._connections[topic] = self._writer.add_connection(
                    topic, msgtype, typestore=self._store
                )
            self._counts = dict.fromkeys(self._connections, 0)
            self._bytes = 0
            self._write_event(EVENT_START, self.start_ns, success=False)
        except BaseException:
            self._writer.abort()
            self._closed = True
            raise

    @property
    def messages_written(self) -> dict[str, int]:
        '''Messages written so far per topic, the episode events included.'''
        return dict(self._counts)

    @property
    def bytes_written(self) -> int:
        '''Payload bytes (serialised messages) written so far.'''
        return self._bytes

    @property
    def topics(self) -> dict[str, str]:
        '''topic -> message type of every connection in the bag.'''
        return {t: c.msgtype for t, c in self._connections.items()}

    def write(self, topic: str, timestamp_ns: int, cdr: bytes) -> None:
        '''Append one serialised message; KeyError for a topic not given at creation.'''
        if self._closed:
            raise RuntimeError(f'episode {self.episode_id} is closed')
        try:
            connection = self._connections[topic]
        except KeyError:
            raise KeyError(
                f'topic {topic!r} is not part of episode {self.episode_id} '
                f'(topics: {sorted(self._connections)})'
            ) from None
        self._writer.write(connection, int(timestamp_ns), cdr)
        self._counts[topic] += 1
        self._bytes += len(cdr)

    def finish(self, success: bool, stop_ns: int, *,
               extra_metadata: Mapping[str, str] | None = None) -> Path:
        '''Write the STOP event and the metadata, close the bag, drop the marker.

        extra_metadata: more custom_data entries (string values), e.g. loss counters.
        '''
        if self._closed:
            raise RuntimeError(f'episode {self.episode_id} is closed')
        self._write_event(EVENT_STOP, int(stop_ns), success=bool(success))
        custom = {
            'am.episode_id': self.episode_id,
            'am.label': self.label,
            'am.success': 'true' if success else 'false',
            'am.start_ns': str(self.start_ns),
            'am.stop_ns': str(int(stop_ns)),
            'am.format': FORMAT_VERSION,
        }
        for key, value in {**(extra_metadata or {}), **custom}.items():
            self._writer.set_custom_data(key, str(value))
        self._closed = True
        try:
            self._writer.close()
        except BaseException:
            with suppress(OSError):
                self._writer.abort()
            raise
        # Only now is the bag whole: metadata.yaml was written atomically by close().
        os.unlink(self.path / INCOMPLETE_MARKER)
        return self.path

    def discard(self) -> None:
        '''Close the bag and delete the episode folder.'''
        if not self._closed:
            self._closed = True
            with suppress(OSError):
                self._writer.abort()
        shutil.rmtree(self.path, ignore_errors=True)

    def abandon(self) -> None:
        '''Close the storage file without finishing: the folder keeps what was written and
        its INCOMPLETE marker (used after a write error such as a full disk).'''
        if not self._closed:
            self._closed = True
            with suppress(OSError):  # closing flushes the buffer: fails again on a full disk
                self._writer.abort()

    @property
    def closed(self) -> bool:
        return self._closed

    def _write_event(self, event: int, stamp_ns: int, *, success: bool) -> None:
        types = self._store.types
        header = types['std_msgs/msg/Header'](
            stamp=types['builtin_interfaces/msg/Time'](
                sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
            ),
            frame_id='',
        )
        message = types[EPISODE_EVENT_TYPE](
            header=header, event=event, episode_id=self.episode_id, label=self.label,
            success=success,
        )
        cdr = bytes(self._store.serialize_cdr(message, EPISODE_EVENT_TYPE))
        self.write(EPISODE_EVENTS_TOPIC, stamp_ns, cdr)
