'''The other process of the am_msgs tests: publishes every message type, serves a service
and the ReachGoal action, with field values both sides derive from `sample_messages()`.

Run as `python -m am_testing.msg_peer` (with tests/ on PYTHONPATH).
'''

import time

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from am_msgs.action import ReachGoal
from am_msgs.msg import EpisodeEvent, PolicyStatus, RecorderStatus, SimStatus, TopicStats
from am_msgs.srv import LoadTask, StartEpisode

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


def sample_image(height: int = 4, width: int = 5) -> Image:
    image = Image()
    image.height, image.width, image.encoding = height, width, 'rgb8'
    image.step = width * 3
    image.data = bytes((i * 7) % 256 for i in range(height * width * 3))
    return image


def sample_messages() -> dict:
    '''One message of each am_msgs type, with non-default values in every field.'''
    event = EpisodeEvent(
        event=EpisodeEvent.STOP, episode_id='ep-0007', label='stack', success=True
    )
    event.header.stamp.sec, event.header.frame_id = 12, 'world'
    stats = [
        TopicStats(topic='/camera/image_raw', type='sensor_msgs/msg/Image', received=30,
                   written=29, lost=1),
        TopicStats(topic='/joint_states', type='sensor_msgs/msg/JointState', received=200,
                   written=200, lost=0),
    ]
    recorder = RecorderStatus(
        recording=True, episode_id='ep-0007', label='stack', episodes_finished=6,
        bytes_written=123456789, queue_depth=3, topics=stats, output_dir='/tmp/episodes',
        error='',
    )
    policy = PolicyStatus(
        active=True, emergency_stop=False, goal_set=True, running=True, q_value=0.75,
        decision_latency_ms=1.5, step=42, commander='servo',
        last_stop_reason=PolicyStatus.STOP_Q_BELOW_FLOOR, message='q below floor',
    )
    sim = SimStatus(scene='cube-single', task='task3', task_solved=True, goal_distance=0.03125,
                    step=99, real_time_factor=2.5)
    return {
        'events': (EpisodeEvent, event),
        'recorder_status': (RecorderStatus, recorder),
        'policy_status': (PolicyStatus, policy),
        'sim_status': (SimStatus, sim),
    }


class Peer(Node):
    '''Publishes the sample messages (latched), serves StartEpisode, LoadTask, ReachGoal.'''

    def __init__(self) -> None:
        super().__init__('am_msgs_peer')
        self._pubs = []
        for topic, (msg_type, msg) in sample_messages().items():
            pub = self.create_publisher(msg_type, f'/am_msgs_test/{topic}', LATCHED)
            pub.publish(msg)
            self._pubs.append(pub)
        self.create_service(StartEpisode, '/am_msgs_test/start_episode', self._start)
        self.create_service(LoadTask, '/am_msgs_test/load_task', self._load_task)
        self._action = ActionServer(
            self, ReachGoal, '/am_msgs_test/reach_goal', self._execute,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=lambda _handle: CancelResponse.ACCEPT,
        )

    def _start(self, request: StartEpisode.Request, response: StartEpisode.Response):
        response.success = True
        response.episode_id = f'episode-{request.label}'
        response.path = f'/tmp/episodes/episode-{request.label}'
        response.message = 'recording'
        return response

    def _load_task(self, request: LoadTask.Request, response: LoadTask.Response):
        response.success = request.kind == LoadTask.Request.KIND_EVAL
        response.goal_image = sample_image()
        response.goal_position = [0.1 * request.task_id, 0.2, 0.3]
        return response

    def _execute(self, handle) -> ReachGoal.Result:
        goal = handle.request
        result = ReachGoal.Result()
        # A timeout of 0 asks for a goal that runs until cancelled.
        steps = 3 if goal.timeout_s > 0 else 200
        for step in range(1, steps + 1):
            if handle.is_cancel_requested:
                handle.canceled()
                result.reason, result.steps = ReachGoal.Result.CANCELLED, step
                return result
            feedback = ReachGoal.Feedback(q_value=0.1 * step, step=step, elapsed_s=0.05 * step)
            handle.publish_feedback(feedback)
            time.sleep(0.05)
        handle.succeed()
        result.success, result.reason = True, ReachGoal.Result.REACHED
        result.steps, result.final_q = steps, 0.9
        result.message = f'{goal.goal_image.width}x{goal.goal_image.height}'
        return result


def main() -> None:
    rclpy.init()
    node = Peer()
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
