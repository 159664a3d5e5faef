'''The `recorder` node: records configured topics into one rosbag2 bag per episode.

Thin ROS shell around `RecorderCore`: parameters -> RecorderConfig, `raw=True`
subscriptions whose callbacks only queue the CDR bytes, episode services, the ~/status
topic and EpisodeEvent messages on /am/episode_events (so a `ros2 bag record` running
beside it captures the episode boundaries too). SIGINT/SIGTERM finish the running episode
(with success = the `shutdown_success` parameter) before the process exits.
'''

from dataclasses import fields
import functools
import importlib
import sys

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import QoSMessageLostInfo, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_sensor_data,
)

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
    'image_qos': 'QoS of image subscriptions: sensor_data (best effort) or reliable.',
    'qos_depth': 'History depth of the reliable (non-image) subscriptions.',
    'storage': 'Storage of new episodes: mcap or sqlite3.',
    'queue_size': 'Most messages waiting for the writer thread; more are dropped and counted.',
    'queue_max_mb': 'Most megabytes waiting for the writer thread; more are dropped, counted.',
    'min_free_mb': 'Refuse to start an episode with less free disk space than this (MB).',
    'status_rate_hz': 'Rate of ~/status (fixed at start-up).',
    'shutdown_success': 'Success flag of an episode cut short by SIGINT/SIGTERM.',
    'episode_prefix': 'Episode ids are <prefix>_<UTC date>_<time>_<ns>.',
}
STARTUP_ONLY = ('topics', 'types', 'image_transport', 'image_qos', 'qos_depth', 'status_rate_hz')


def message_class(msgtype: str) -> type:
    ''''pkg/msg/Type' -> the rclpy message class; ValueError when it is not installed.'''
    package, _, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{package}.msg'), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f'message type {msgtype} is not installed: {exc}') from exc


class RecorderNode(Node):
    '''Episode recorder: thin shell over RecorderCore (all disk work on its thread).'''

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

        resolved = {self.resolve_topic_name(t): ty for t, ty in config.recorded_topics().items()}
        self._core = RecorderCore(config, resolved, log_error=self.get_logger().error,
                                  log_info=self.get_logger().info)

        data_group = MutuallyExclusiveCallbackGroup()
        self._subscriptions_by_topic = {}
        for topic, msgtype in resolved.items():
            is_image = msgtype in (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
            if is_image and config.image_qos == 'sensor_data':
                qos = qos_profile_sensor_data
            else:
                qos = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=config.qos_depth,
                                 reliability=QoSReliabilityPolicy.RELIABLE)
            self._subscriptions_by_topic[topic] = self.create_subscription(
                message_class(msgtype), topic, functools.partial(self._on_message, topic), qos,
                callback_group=data_group, raw=True,
                event_callbacks=SubscriptionEventCallbacks(
                    message_lost=functools.partial(self._on_lost, topic)),
            )

        self._events = self.create_publisher(
            EpisodeEvent, EPISODE_EVENTS_TOPIC,
            QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE,
                       durability=QoSDurabilityPolicy.VOLATILE),
        )
        self._status = self.create_publisher(RecorderStatus, '~/status', 10)
        control_group = MutuallyExclusiveCallbackGroup()
        self.create_service(StartEpisode, '~/start_episode', self._on_start,
                            callback_group=control_group)
        self.create_service(StopEpisode, '~/stop_episode', self._on_stop,
                            callback_group=control_group)
        self.create_timer(1.0 / config.status_rate_hz, self._publish_status,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f'recording {sorted(resolved)} into {self._core.output_root} ({config.storage}); '
            'waiting for ~/start_episode'
        )

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
    def _on_message(self, topic: str, data: bytes) -> None:
        self._core.offer(topic, self.get_clock().now().nanoseconds, data)

    def _on_lost(self, topic: str, info: QoSMessageLostInfo) -> None:
        self._core.count_lost(topic, info.total_count_change)
        self.get_logger().warning(
            f'DDS reports {info.total_count_change} lost message(s) on {topic}',
            throttle_duration_sec=1.0)

    # ---- episode control -----------------------------------------------------------------
    def _on_start(self, request: StartEpisode.Request,
                  response: StartEpisode.Response) -> StartEpisode.Response:
        start_ns = self.get_clock().now().nanoseconds
        result = self._core.start_episode(request.label, start_ns)
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

    def _on_stop(self, request: StopEpisode.Request,
                 response: StopEpisode.Response) -> StopEpisode.Response:
        stop_ns = self.get_clock().now().nanoseconds
        label = self._core.snapshot().label
        result = self._core.stop_episode(request.task_success, stop_ns,
                                         discard=request.discard)
        self._after_stop(result, label, stop_ns, request.task_success, request.discard)
        response.success = result.ok
        response.message = result.message
        response.episode_id = result.episode_id if result.ok and not request.discard else ''
        response.path = result.path
        response.messages_written = result.messages_written
        return response

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


def main(args: list[str] | None = None) -> None:
    '''Run the recorder until SIGINT/SIGTERM; the running episode is closed cleanly.'''
    rclpy.init(args=args)
    node = None
    exit_code = 0
    try:
        node = RecorderNode()
        executor = MultiThreadedExecutor(num_threads=3)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:  # bad parameters at start-up
        rclpy.logging.get_logger('recorder').fatal(f'cannot start: {exc}')
        exit_code = 2
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    if exit_code:
        sys.exit(exit_code)


if __name__ == '__main__':
    main()
