'''The recorder's logic without ROS: configuration, a bounded queue and the writer thread.

Subscription callbacks only call `RecorderCore.offer()` (a counter update and a deque
append under a lock); every disk operation happens on the core's single writer thread:
creating the episode bag, writing messages, finishing or discarding it. Control requests
(start, stop, shutdown) travel through the same queue as the messages, so a stop is
written after exactly the messages that arrived before it, and control requests are
never dropped when the queue is full: only messages are, and each one is counted.
'''

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
import errno
from functools import lru_cache
import json
import os
from pathlib import Path
import tempfile
import threading
import time

from am_dataset_recorder.episode_writer import (
    EPISODE_EVENTS_TOPIC,
    STORAGES,
    EpisodeWriter,
    make_typestore,
    new_episode_id,
)
from am_learning import conventions

DEFAULT_TOPICS = (
    conventions.CAMERA_TOPIC,
    conventions.JOINT_STATES_TOPIC,
    conventions.TWIST_TOPIC,
    conventions.GRIPPER_TOPIC,
    conventions.EE_POSE_TOPIC,
)
DEFAULT_TYPES = (
    'sensor_msgs/msg/Image',
    'sensor_msgs/msg/JointState',
    'geometry_msgs/msg/TwistStamped',
    'std_msgs/msg/Float64MultiArray',
    'geometry_msgs/msg/PoseStamped',
)
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE_TYPE = 'sensor_msgs/msg/CompressedImage'
IMAGE_TRANSPORTS = ('raw', 'compressed')
RELIABILITIES = ('auto', 'reliable', 'best_effort')


@dataclass(frozen=True)
class RecorderConfig:
    '''The recorder's settings; field names are the node's ROS parameter names.'''

    output_dir: str = '~/am_episodes'
    '''Root folder; each episode becomes the bag folder <output_dir>/<episode_id>/.'''
    topics: tuple[str, ...] = DEFAULT_TOPICS
    '''Topics to record (remappable, relative names resolve in the node's namespace).'''
    types: tuple[str, ...] = DEFAULT_TYPES
    '''Message type of each topic, 'pkg/msg/Type', same order and length as topics.'''
    image_transport: str = 'raw'
    '''raw, or compressed: record <topic>/compressed (CompressedImage) for Image topics.'''
    reliability: str = 'auto'
    '''auto: like `ros2 bag record`, match the publishers (reliable when every publisher
    offers reliable, else best effort; a topic is subscribed once a publisher appears).
    reliable or best_effort: subscribe at once with that reliability.'''
    qos_depth: int = 100
    '''History depth of the non-image subscriptions.'''
    image_qos_depth: int = 30
    '''History depth of Image/CompressedImage subscriptions (1 s of a 30 Hz camera).'''
    storage: str = 'mcap'
    '''rosbag2 storage of new episodes: mcap or sqlite3.'''
    queue_size: int = 512
    '''Most messages waiting for the writer thread; beyond it messages are dropped, counted.'''
    queue_max_mb: float = 512.0
    '''Most bytes (MB) waiting for the writer thread; beyond it messages are dropped, counted.'''
    min_free_mb: float = 200.0
    '''Refuse to start an episode when the output disk has less free space than this.'''
    status_rate_hz: float = 2.0
    '''Rate of ~/status messages.'''
    shutdown_success: bool = False
    '''Success flag given to an episode cut short by SIGINT/SIGTERM (it is kept, not lost).'''
    episode_prefix: str = 'episode'
    '''Episode ids are <prefix>_<UTC date>_<time>_<ns>.'''

    def validate(self) -> None:
        '''Raise ValueError with an actionable message for any bad value.'''
        problems = config_problems(self)
        if problems:
            raise ValueError('; '.join(problems))

    def recorded_topics(self) -> dict[str, str]:
        '''topic -> type actually subscribed, after image_transport is applied.'''
        out: dict[str, str] = {}
        for topic, msgtype in zip(self.topics, self.types):
            if self.image_transport == 'compressed' and msgtype == IMAGE_TYPE:
                topic, msgtype = topic.rstrip('/') + '/compressed', COMPRESSED_IMAGE_TYPE
            out[topic] = msgtype
        return out


def config_problems(config: RecorderConfig) -> list[str]:
    '''Every reason `config` is unusable (empty when it is fine).'''
    problems = []
    if not config.output_dir.strip():
        problems.append('output_dir must not be empty')
    if not config.topics:
        problems.append('topics must name at least one topic')
    if len(config.topics) != len(config.types):
        problems.append(
            f'topics ({len(config.topics)}) and types ({len(config.types)}) must have the '
            'same length: one message type per topic'
        )
    if len(set(config.topics)) != len(config.topics):
        problems.append('topics must not repeat')
    for topic in config.topics:
        if not topic or topic.rstrip('/') == '' or ' ' in topic:
            problems.append(f'bad topic name {topic!r}')
        elif topic.rstrip('/').endswith('am/episode_events'):
            problems.append(f'{EPISODE_EVENTS_TOPIC} is written by the recorder itself')
    store_types = _known_types()
    for msgtype in config.types:
        if msgtype.count('/') != 2 or '/msg/' not in msgtype:
            problems.append(f'types must look like pkg/msg/Type, not {msgtype!r}')
        elif msgtype not in store_types:
            problems.append(f'unknown message type {msgtype!r}')
    if config.image_transport not in IMAGE_TRANSPORTS:
        problems.append(f'image_transport must be one of {IMAGE_TRANSPORTS}')
    if config.reliability not in RELIABILITIES:
        problems.append(f'reliability must be one of {RELIABILITIES}')
    if config.storage not in STORAGES:
        problems.append(f'storage must be one of {tuple(STORAGES)}')
    if not 1 <= config.qos_depth <= 10_000:
        problems.append('qos_depth must be in [1, 10000]')
    if not 1 <= config.image_qos_depth <= 1_000:
        problems.append('image_qos_depth must be in [1, 1000]')
    if not 1 <= config.queue_size <= 1_000_000:
        problems.append('queue_size must be in [1, 1000000]')
    if not config.queue_max_mb > 0:
        problems.append('queue_max_mb must be > 0')
    if not config.min_free_mb >= 0:
        problems.append('min_free_mb must be >= 0')
    if not 0 < config.status_rate_hz <= 100:
        problems.append('status_rate_hz must be in (0, 100]')
    if not config.episode_prefix or '/' in config.episode_prefix:
        problems.append('episode_prefix must be a non-empty name without /')
    return problems


@lru_cache(maxsize=1)
def _known_types() -> frozenset[str]:
    return frozenset(make_typestore().types)


@dataclass
class TopicCounts:
    '''Per-topic counters of the current (or last) episode.'''

    topic: str
    type: str
    received: int = 0
    written: int = 0
    dropped: int = 0
    '''Dropped by the full writer queue.'''
    dds_lost: int = 0
    '''Reported lost by DDS (QoS message-lost events) while recording.'''
    sequence_gaps: int = 0
    '''Messages missing between two received ones of the same publisher (publication
    sequence numbers), while recording. Sees losses DDS does not report, e.g. a reliable
    KEEP_LAST history that overflowed.'''

    @property
    def lost(self) -> int:
        '''Dropped by the queue, plus lost in transport (DDS events and sequence gaps see
        the same losses when both see them, so the larger one counts).'''
        return self.dropped + max(self.dds_lost, self.sequence_gaps)


@dataclass(frozen=True)
class StatusSnapshot:
    '''A consistent copy of the core's state, for ~/status.'''

    recording: bool
    episode_id: str
    label: str
    episodes_finished: int
    bytes_written: int
    queue_depth: int
    topics: tuple[TopicCounts, ...]
    output_dir: str
    error: str


@dataclass(frozen=True)
class EpisodeResult:
    '''What start/stop did: ok False means refused or failed, message says why.'''

    ok: bool
    message: str
    episode_id: str = ''
    path: str = ''
    messages_written: int = 0
    stats: tuple[TopicCounts, ...] = field(default_factory=tuple)


class RecorderCore:
    '''Queue + writer thread + episode bookkeeping; thread-safe public methods.

    `offer`, `count_lost` and `snapshot` never block on the disk (ROS callbacks call them).
    `start_episode_async`/`stop_episode_async` return futures the writer thread completes;
    `start_episode`/`stop_episode` are their blocking forms.
    '''

    def __init__(
        self,
        config: RecorderConfig,
        topics: Mapping[str, str] | None = None,
        *,
        log_error: Callable[[str], None] = lambda _msg: None,
        log_info: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        '''topics: resolved topic name -> type (defaults to config.recorded_topics()).
        Probes the output folder once, so a bad one is reported from the start.'''
        config.validate()
        self._config = config
        self._topics = dict(topics if topics is not None else config.recorded_topics())
        self._store = make_typestore()
        self._log_error = log_error
        self._log_info = log_info
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._queued_data = 0
        self._queued_bytes = 0
        self._recording = False
        self._token = 0
        self._episode_id = ''
        self._label = ''
        self._episodes_finished = 0
        self._bytes_written = 0
        self._error = ''
        self._counts = self._fresh_counts()
        self._last_sequence: dict[tuple[str, bytes], int] = {}
        self._lost_outside_episodes = 0
        self._writer: EpisodeWriter | None = None
        self._closed = False
        self.check_output_dir()
        self._thread = threading.Thread(target=self._run, name='episode-writer', daemon=True)
        self._thread.start()

    # ---- called from ROS callbacks (no disk access) ---------------------------------------
    def offer(self, topic: str, stamp_ns: int, data: bytes, publisher: bytes = b'',
              sequence: int | None = None) -> bool:
        '''Queue one received message; False when not recording or dropped (counted).

        publisher/sequence: the sender's id and publication sequence number, when the
        middleware gives them; a jump in the sequence counts the missing messages as lost.
        '''
        with self._cond:
            if sequence is not None:
                key = (topic, publisher)
                last = self._last_sequence.get(key)
                self._last_sequence[key] = sequence
                if self._recording and last is not None and sequence > last + 1:
                    self._counts[topic].sequence_gaps += sequence - last - 1
            if not self._recording:
                return False
            counts = self._counts[topic]
            counts.received += 1
            cfg = self._config
            if (self._queued_data >= cfg.queue_size
                    or self._queued_bytes + len(data) > cfg.queue_max_mb * 1e6):
                counts.dropped += 1
                return False
            self._queue.append(('msg', self._token, topic, stamp_ns, data))
            self._queued_data += 1
            self._queued_bytes += len(data)
            self._cond.notify()
            return True

    def count_lost(self, topic: str, count: int) -> None:
        '''Add DDS-reported lost messages (QoS message-lost event) of `topic`.'''
        with self._cond:
            if self._recording:
                self._counts[topic].dds_lost += int(count)
            else:
                self._lost_outside_episodes += int(count)

    def snapshot(self) -> StatusSnapshot:
        '''A consistent copy of the state, for the status topic.'''
        with self._cond:
            return StatusSnapshot(
                recording=self._recording,
                episode_id=self._episode_id,
                label=self._label,
                episodes_finished=self._episodes_finished,
                bytes_written=self._bytes_written,
                queue_depth=self._queued_data,
                topics=tuple(replace(c) for c in self._counts.values()),
                output_dir=str(self.output_root),
                error=self._error,
            )

    @property
    def config(self) -> RecorderConfig:
        return self._config

    @property
    def topics(self) -> dict[str, str]:
        return dict(self._topics)

    @property
    def output_root(self) -> Path:
        return Path(os.path.expanduser(self._config.output_dir))

    @property
    def lost_outside_episodes(self) -> int:
        '''DDS-reported losses while no episode was recording (not part of any episode).'''
        return self._lost_outside_episodes

    def reconfigure(self, config: RecorderConfig) -> None:
        '''Apply settings that may change at run time (output_dir and storage apply to the
        next episode); the writer thread re-probes the output folder.'''
        config.validate()
        if self._config.recorded_topics() != config.recorded_topics():
            raise ValueError('topics, types and image_transport are fixed at start-up')
        with self._cond:
            self._config = config
            self._queue.append(('check',))
            self._cond.notify()

    # ---- episode control -----------------------------------------------------------------
    def start_episode_async(self, label: str, start_ns: int) -> Future:
        '''Begin an episode: messages offered from now on are queued; the writer thread
        probes the folder and opens the bag. The future gives an EpisodeResult.'''
        reply: Future = Future()
        with self._cond:
            if self._closed:
                reply.set_result(EpisodeResult(False, 'the recorder is shutting down'))
            elif self._recording:
                reply.set_result(EpisodeResult(
                    False, f'episode {self._episode_id} is already recording'))
            else:
                self._token += 1
                self._recording = True
                self._episode_id = new_episode_id(time.time_ns(), self._config.episode_prefix)
                self._label = label
                self._bytes_written = 0
                self._counts = self._fresh_counts()
                self._queue.append(('start', self._token, self._episode_id, label,
                                    int(start_ns), self._config, reply))
                self._cond.notify()
        return reply

    def stop_episode_async(self, success: bool, stop_ns: int, *,
                           discard: bool = False) -> Future:
        '''Stop queueing; the writer thread writes what arrived before, then finishes (or
        discards) the bag. The future gives an EpisodeResult.'''
        reply: Future = Future()
        with self._cond:
            if not self._recording:
                reply.set_result(EpisodeResult(False, 'no episode is recording'))
            else:
                self._recording = False
                self._queue.append(('stop', self._token, bool(success), int(stop_ns),
                                    discard, reply))
                self._cond.notify()
        return reply

    def start_episode(self, label: str, start_ns: int, timeout: float = 30.0) -> EpisodeResult:
        '''Blocking form of start_episode_async.'''
        return self.start_episode_async(label, start_ns).result(timeout)

    def stop_episode(self, success: bool, stop_ns: int, *, discard: bool = False,
                     timeout: float = 120.0) -> EpisodeResult:
        '''Blocking form of stop_episode_async (returns once the bag is closed).'''
        return self.stop_episode_async(success, stop_ns, discard=discard).result(timeout)

    def close(self, success: bool, stop_ns: int, timeout: float = 120.0) -> EpisodeResult | None:
        '''Finish a running episode (as `success`) and end the writer thread.'''
        with self._cond:
            recording = self._recording
        result = self.stop_episode(success, stop_ns, timeout=timeout) if recording else None
        with self._cond:
            self._closed = True
            self._queue.append(('exit',))
            self._cond.notify()
        self._thread.join(timeout)
        return result

    def check_output_dir(self) -> str:
        '''Probe the output folder (create, write a temporary file, free space); return the
        error ('' when usable) and remember it for the status. Touches the disk: called by
        the writer thread (and once by the constructor).'''
        root = self.output_root
        error = ''
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root, prefix='.am_probe_'):
                pass
            free_mb = _free_mb(root)
            if free_mb < self._config.min_free_mb:
                error = (f'output_dir {root} has {free_mb:.0f} MB free, less than min_free_mb '
                         f'= {self._config.min_free_mb:.0f}: free space or lower min_free_mb')
        except OSError as exc:
            error = f'output_dir {root} is not writable: {exc.strerror or exc}'
        with self._cond:
            if error:
                self._error = error
            elif self._error.startswith('output_dir'):
                self._error = ''
        if error:
            self._log_error(error)
        return error

    # ---- the writer thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
                if item[0] == 'msg':
                    self._queued_data -= 1
                    self._queued_bytes -= len(item[4])
            kind = item[0]
            if kind == 'exit':
                return
            try:
                if kind == 'msg':
                    self._write(*item[1:])
                elif kind == 'start':
                    self._start(*item[1:])
                elif kind == 'stop':
                    self._stop(*item[1:])
                elif kind == 'check':
                    self.check_output_dir()
            except Exception as exc:  # the thread must survive anything: report, carry on
                self._fail(f'writer thread error: {type(exc).__name__}: {exc}')
                if kind in ('start', 'stop') and not item[-1].done():
                    item[-1].set_result(EpisodeResult(False, self._error))

    def _start(self, token: int, episode_id: str, label: str, start_ns: int,
               config: RecorderConfig, reply: Future) -> None:
        error = self.check_output_dir()
        if not error:
            try:
                self._writer = EpisodeWriter(
                    Path(os.path.expanduser(config.output_dir)), episode_id, self._topics,
                    label=label, start_ns=start_ns, storage=config.storage,
                    typestore=self._store,
                )
            except (OSError, ValueError) as exc:
                error = f'cannot create episode {episode_id}: {exc}'
                self._fail(error)
        if error:
            self._writer = None
            with self._cond:
                if self._token == token:
                    self._recording = False
            reply.set_result(EpisodeResult(False, f'refused: {error}'))
            return
        with self._cond:
            self._error = ''
        self._log_info(f'recording episode {episode_id} to {self._writer.path}')
        reply.set_result(EpisodeResult(True, f'recording to {self._writer.path}', episode_id,
                                       str(self._writer.path)))

    def _write(self, token: int, topic: str, stamp_ns: int, data: bytes) -> None:
        writer = self._writer
        if writer is None or token != self._token:
            return  # the episode failed to open: it never existed
        try:
            writer.write(topic, stamp_ns, data)
        except OSError as exc:
            self._abort_on_disk_error(exc)
            return
        with self._cond:
            self._counts[topic].written += 1
            self._bytes_written = writer.bytes_written

    def _stop(self, token: int, success: bool, stop_ns: int, discard: bool,
              reply: Future) -> None:
        writer, self._writer = self._writer, None
        with self._cond:
            stats = tuple(replace(c) for c in self._counts.values())
        if writer is None or token != self._token:
            reply.set_result(EpisodeResult(False, self._error or 'the episode was not open',
                                           self._episode_id, stats=stats))
            return
        written = sum(writer.messages_written.values())
        if discard:
            writer.discard()
            self._log_info(f'discarded episode {writer.episode_id}')
            reply.set_result(EpisodeResult(True, f'discarded episode {writer.episode_id}',
                                           writer.episode_id, '', written, stats))
            return
        extra = {
            'am.recorder.received': json.dumps({c.topic: c.received for c in stats}),
            'am.recorder.lost': json.dumps({c.topic: c.lost for c in stats}),
        }
        try:
            path = writer.finish(success, stop_ns, extra_metadata=extra)
        except OSError as exc:
            self._fail(f'cannot finish episode {writer.episode_id}: {exc}; its folder keeps '
                       'the INCOMPLETE marker')
            reply.set_result(EpisodeResult(False, self._error, writer.episode_id, stats=stats))
            return
        written = sum(writer.messages_written.values())
        with self._cond:
            self._episodes_finished += 1
        lost = sum(c.lost for c in stats)
        self._log_info(f'finished episode {writer.episode_id} (success={success}): '
                       f'{written} messages, {lost} lost, {writer.bytes_written / 1e6:.1f} MB')
        reply.set_result(EpisodeResult(True, f'episode written to {path}', writer.episode_id,
                                       str(path), written, stats))

    def _abort_on_disk_error(self, exc: OSError) -> None:
        '''A write failed (disk full, folder gone): stop recording, keep what is on disk.'''
        writer, self._writer = self._writer, None
        reason = 'the disk is full' if exc.errno == errno.ENOSPC else str(exc)
        with self._cond:
            self._recording = False
            dropped = 0
            for item in self._queue:
                if item[0] == 'msg':
                    self._counts[item[2]].dropped += 1
                    dropped += 1
            self._queue = deque(i for i in self._queue if i[0] != 'msg')
            self._queued_data = 0
            self._queued_bytes = 0
            self._error = (f'episode {writer.episode_id if writer else "?"} aborted: {reason}; '
                           'the folder keeps what was written and its INCOMPLETE marker')
        if writer is not None:
            writer.abandon()
        self._log_error(self._error + f' ({dropped} queued messages dropped)')

    def _fail(self, message: str) -> None:
        with self._cond:
            self._error = message
        self._log_error(message)

    def _fresh_counts(self) -> dict[str, TopicCounts]:
        return {t: TopicCounts(t, ty) for t, ty in self._topics.items()}


def _free_mb(path: Path) -> float:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize / 1e6
