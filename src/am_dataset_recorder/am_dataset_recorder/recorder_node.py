'''The `recorder` node: records configured topics into one rosbag2 bag per episode.

Thin ROS shell around `RecorderCore`: parameters -> RecorderConfig, `raw=True`
subscriptions whose callbacks only queue the CDR bytes, episode services, the ~/status
topic and EpisodeEvent messages on /am/episode_events (so a `ros2 bag record` running
beside it captures the episode boundaries too). SIGINT/SIGTERM finish the running episode
(with success = the `shutdown_success` parameter) before the process exits.
'''

from concurrent.futures import Future
from dataclasses import fields
import functools
import importlib
import signal
import sys
import threading

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.event_handler import (
    QoSMessageLostInfo,
    QoSRequestedIncompatibleQoSInfo,
    SubscriptionEventCallbacks,
)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSPolicyKind,
    QoSProfile,
    QoSReliabilityPolicy,
)
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future as RclpyFuture

from am_dataset_recorder.core import (
    COMPRESSED_IMAGE_TYPE,
    IMAGE_TYPE,
    EpisodeResult,
    RecorderConfig,
    RecorderCore,
    config_problems,
)
from am_dataset_recorder.episode_writer import EPISODE_EVENTS_TOPIC
from am_msgs.msg import EpisodeEvent, RecorderStatus, TopicStats
from am_msgs.srv import StartEpisode, StopEpisode

DESCRIPTIONS = {
    'output_dir': 'Root folder of the episodes; each is the bag <output_dir>/<episode_id>/.',
    'topics': 'Topics to record (fixed at start-up).',
    'types': "Message type of each topic, 'pkg/msg/Type', same order (fixed at start-up).",
    'image_transport': 'raw, or compressed: record <topic>/compressed for Image topics.',
    'reliability': 'auto (match the publishers, like ros2 bag record), reliable or '
                   'best_effort (fixed at start-up).',
    'qos_depth': 'History depth of the non-image subscriptions (fixed at start-up).',
    'image_qos_depth': 'History depth of the image subscriptions (fixed at start-up).',
    'storage': 'Storage of new episodes: mcap or sqlite3.',
    'queue_size': 'Most messages waiting for the writer thread; more are dropped and counted.',
    'queue_max_mb': 'Most megabytes waiting for the writer thread; more are dropped, counted.',
    'min_free_mb': 'Refuse to start an episode with less free disk space than this (MB).',
    'status_rate_hz': 'Rate of ~/status (fixed at start-up).',
    'shutdown_success': 'Success flag of an episode cut short by SIGINT/SIGTERM.',
    'episode_prefix': 'Episode ids are <prefix>_<UTC date>_<time>_<ns>.',
}
STARTUP_ONLY = ('topics', 'types', 'image_transport', 'reliability', 'qos_depth',
                'image_qos_depth', 'status_rate_hz')
DISCOVERY_PERIOD_S = 0.5
SIGNAL_POLL_S = 0.2
'''Longest time between a SIGINT/SIGTERM and the start of the shutdown.'''
'''How often topics still waiting for a publisher (reliability auto) are looked up.'''


def message_class(msgtype: str) -> type:
    ''''pkg/msg/Type' -> the rclpy message class; ValueError when it is not installed.'''
    package, _, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{package}.msg'), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f'message type {msgtype} is not installed: {exc}') from exc


def subscription_qos(config: RecorderConfig, msgtype: str,
                     offered: list[QoSProfile] | None = None) -> QoSProfile:
    '''The QoS to record a topic with; `offered` are its publishers' (reliability auto).

    Reliable only when every publisher is reliable (a reliable reader would get nothing
    from a best-effort writer); volatile always (no replay of old samples into an episode).
    '''
    is_image = msgtype in (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
    reliable = {
        'reliable': True,
        'best_effort': False,
        'auto': bool(offered) and all(
            q.reliability == QoSReliabilityPolicy.RELIABLE for q in offered or []),
    }[config.reliability]
    return QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST,
        depth=config.image_qos_depth if is_image else config.qos_depth,
        reliability=(QoSReliabilityPolicy.RELIABLE if reliable
                     else QoSReliabilityPolicy.BEST_EFFORT),
        durability=QoSDurabilityPolicy.VOLATILE,
    )


class RecorderNode(Node):
    '''Episode recorder: thin shell over RecorderCore (all disk work on its thread).

    Runs in a single-threaded executor: the subscription callbacks only queue bytes, and
    the episode services are coroutines that await the writer thread instead of blocking,
    so messages keep flowing while a stop drains the queue.
    '''

    def __init__(self) -> None:
        super().__init__('recorder')
        defaults = RecorderConfig()
        for f in fields(RecorderConfig):
            value = getattr(defaults, f.name)
            self.declare_parameter(
                f.name, list(value) if isinstance(value, tuple) else value,
                ParameterDescriptor(description=DESCRIPTIONS[f.name],
                                    read_only=f.name in STARTUP_ONLY),
            )
        config = self._config_with({})
        config.validate()  # bad start-up values: the node refuses to start, saying why
        for msgtype in config.recorded_topics().values():
            message_class(msgtype)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._topic_types = {
            self.resolve_topic_name(t): ty for t, ty in config.recorded_topics().items()}
        self._core = RecorderCore(config, self._topic_types, log_error=self.get_logger().error,
                                  log_info=self.get_logger().info)
        self._subs = {}
        self._downgrade: set[str] = set()
        self._subscribe_ready_topics()
        if config.reliability == 'auto':
            self.create_timer(DISCOVERY_PERIOD_S, self._subscribe_ready_topics)

        self._events = self.create_publisher(
            EpisodeEvent, EPISODE_EVENTS_TOPIC,
            QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE,
                       durability=QoSDurabilityPolicy.VOLATILE),
        )
        self._status = self.create_publisher(RecorderStatus, '~/status', 10)
        self._wake = self.create_guard_condition(lambda: None)
        # A service coroutine holds its callback group while it awaits the writer thread:
        # a group of their own keeps subscriptions, timers and the wake-up guard running.
        control_group = MutuallyExclusiveCallbackGroup()
        self.create_service(StartEpisode, '~/start_episode', self._on_start,
                            callback_group=control_group)
        self.create_service(StopEpisode, '~/stop_episode', self._on_stop,
                            callback_group=control_group)
        self.create_timer(1.0 / config.status_rate_hz, self._publish_status)
        self.get_logger().info(
            f'recording {sorted(self._topic_types)} into {self._core.output_root} '
            f'({config.storage}); waiting for ~/start_episode'
        )

    def _subscribe_ready_topics(self) -> None:
        '''Subscribe every topic whose QoS can be decided now (reliability auto: once a
        publisher exists, matching its reliability); re-subscribe best effort a topic where
        a best-effort publisher joined a reliable subscription (which would get nothing).'''
        config = self._core.config
        for topic in sorted(self._downgrade):
            old = self._subs.pop(topic, None)
            if old is not None:
                self.destroy_subscription(old)
        for topic, msgtype in self._topic_types.items():
            if topic in self._subs:
                continue
            offered = None
            if config.reliability == 'auto':
                offered = [i.qos_profile for i in self.get_publishers_info_by_topic(topic)]
                if not offered:
                    continue
            qos = subscription_qos(config, msgtype, offered)
            if topic in self._downgrade:
                qos.reliability = QoSReliabilityPolicy.BEST_EFFORT
            self._subs[topic] = self.create_subscription(
                message_class(msgtype), topic, functools.partial(self._on_message, topic), qos,
                raw=True,
                event_callbacks=SubscriptionEventCallbacks(
                    message_lost=functools.partial(self._on_lost, topic),
                    incompatible_qos=functools.partial(self._on_incompatible, topic)),
            )
            self.get_logger().info(
                f'subscribed {topic} ({msgtype}, {qos.reliability.name.lower()}, '
                f'depth {qos.depth})')
        self._downgrade.clear()

    def _on_incompatible(self, topic: str, info: QoSRequestedIncompatibleQoSInfo) -> None:
        policy = QoSPolicyKind(info.last_policy_kind).name
        sub = self._subs.get(topic)
        if (self._core.config.reliability == 'auto' and policy == 'RELIABILITY'
                and sub is not None
                and sub.qos_profile.reliability == QoSReliabilityPolicy.RELIABLE):
            self.get_logger().warning(
                f'a best-effort publisher joined {topic}: re-subscribing best effort')
            self._downgrade.add(topic)  # done by the discovery timer, outside this callback
        else:
            self.get_logger().error(
                f'a publisher on {topic} offers an incompatible QoS ({policy}): its messages '
                'are not recorded', throttle_duration_sec=5.0)

    # ---- parameters ---------------------------------------------------------------------
    def _config_with(self, overrides: dict) -> RecorderConfig:
        values = {}
        for f in fields(RecorderConfig):
            value = overrides.get(f.name, self.get_parameter(f.name).value)
            values[f.name] = tuple(value) if isinstance(value, list) else value
        return RecorderConfig(**values)

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        try:
            candidate = self._config_with({p.name: p.value for p in params})
        except TypeError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        problems = config_problems(candidate)
        return SetParametersResult(successful=not problems, reason='; '.join(problems))

    def _apply_parameters(self, params: list[Parameter]) -> None:
        self._core.reconfigure(self._config_with({p.name: p.value for p in params}))

    # ---- data path: no disk access here ------------------------------------------------
    def _on_message(self, topic: str, data: bytes, info: dict) -> None:
        self._core.offer(topic, self.get_clock().now().nanoseconds, data,
                         info['publisher_gid']['data'], info['publication_sequence_number'])

    def _on_lost(self, topic: str, info: QoSMessageLostInfo) -> None:
        self._core.count_lost(topic, info.total_count_change)
        self.get_logger().warning(
            f'DDS reports {info.total_count_change} lost message(s) on {topic}',
            throttle_duration_sec=1.0)

    # ---- episode control -----------------------------------------------------------------
    async def _on_start(self, request: StartEpisode.Request,
                        response: StartEpisode.Response) -> StartEpisode.Response:
        start_ns = self.get_clock().now().nanoseconds
        result = await self._wait(self._core.start_episode_async(request.label, start_ns))
        if result.ok:
            self._publish_event(EpisodeEvent.START, result.episode_id, request.label,
                                start_ns, False)
        else:
            self.get_logger().warning(f'start_episode refused: {result.message}')
        response.success = result.ok
        response.message = result.message
        response.episode_id = result.episode_id if result.ok else ''
        response.path = result.path
        return response

    async def _on_stop(self, request: StopEpisode.Request,
                       response: StopEpisode.Response) -> StopEpisode.Response:
        stop_ns = self.get_clock().now().nanoseconds
        label = self._core.snapshot().label
        result = await self._wait(self._core.stop_episode_async(
            request.task_success, stop_ns, discard=request.discard))
        self._after_stop(result, label, stop_ns, request.task_success, request.discard)
        response.success = result.ok
        response.message = result.message
        response.episode_id = result.episode_id if result.ok and not request.discard else ''
        response.path = result.path
        response.messages_written = result.messages_written
        return response

    async def _wait(self, future: Future) -> EpisodeResult:
        '''Await a writer-thread future inside the executor without blocking it.'''
        done = RclpyFuture()
        wake = self._wake

        def _resolve(f: Future) -> None:
            done.set_result(f.result())
            wake.trigger()  # the executor sleeps in its wait set: wake it to resume us

        future.add_done_callback(_resolve)
        return await done

    def _after_stop(self, result: EpisodeResult, label: str, stop_ns: int, success: bool,
                    discard: bool) -> None:
        if result.ok:
            event = EpisodeEvent.DISCARD if discard else EpisodeEvent.STOP
            self._publish_event(event, result.episode_id, label, stop_ns, success)
            lost = {s.topic: s.lost for s in result.stats if s.lost}
            if lost:
                self.get_logger().warning(f'episode {result.episode_id} lost messages: {lost}')
        elif result.message != 'no episode is recording':
            self.get_logger().error(f'stop_episode failed: {result.message}')

    def _publish_event(self, event: int, episode_id: str, label: str, stamp_ns: int,
                       success: bool) -> None:
        msg = EpisodeEvent()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.event = event
        msg.episode_id = episode_id
        msg.label = label
        msg.success = success
        self._events.publish(msg)

    def _publish_status(self) -> None:
        snap = self._core.snapshot()
        msg = RecorderStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.recording = snap.recording
        msg.episode_id = snap.episode_id
        msg.label = snap.label
        msg.episodes_finished = snap.episodes_finished
        msg.bytes_written = snap.bytes_written
        msg.queue_depth = snap.queue_depth
        msg.topics = [
            TopicStats(topic=c.topic, type=c.type, received=c.received, written=c.written,
                       lost=c.lost)
            for c in snap.topics
        ]
        msg.output_dir = snap.output_dir
        msg.error = snap.error
        self._status.publish(msg)

    # ---- shutdown ------------------------------------------------------------------------
    def close(self) -> None:
        '''Finish a running episode (SIGINT/SIGTERM) and stop the writer thread.'''
        snap = self._core.snapshot()
        success = self._core.config.shutdown_success
        stop_ns = self.get_clock().now().nanoseconds
        result = self._core.close(success, stop_ns)
        if result is not None:
            self.get_logger().info(f'shutdown: {result.message}')
            if rclpy.ok(context=self.context):
                self._after_stop(result, snap.label, stop_ns, success, False)
                # Reliable delivery of the STOP event before the publisher goes away.
                self._events.wait_for_all_acked(Duration(seconds=1.0))


def main(args: list[str] | None = None) -> None:
    '''Run the recorder until SIGINT/SIGTERM; the running episode is closed cleanly.

    The signals only set a flag (rclpy's own handlers are off): the executor loop ends
    between two callbacks and the context is still valid, so the STOP event of the cut
    episode is still published before the node goes.
    '''
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        node = RecorderNode()
    except ValueError as exc:  # bad parameters: refuse to start, saying why
        rclpy.logging.get_logger('recorder').fatal(f'cannot start: {exc}')
        rclpy.try_shutdown()
        sys.exit(2)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
