'''sim_robot: OGBench's UR5e scene behind the interfaces of a real arm with MoveIt Servo.

Publishes the camera, joint states, end-effector pose, the OGBench state vector and a
status; consumes Servo twists and gripper commands; steps at 20 Hz times
`real_time_factor` (publishing /clock when that is not 1). Services reset the scene and
load evaluation or reach tasks. The simulation itself lives in `am_sim.core`.
'''

import signal
import time

from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TwistStamped
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, MultiArrayDimension

from am_learning import conventions as conv
from am_msgs.msg import SimStatus
from am_msgs.srv import LoadTask, ResetScene
from am_sim.core import CONTROL_RATE_HZ, CommandError, Observation, SimConfig, SimCore
from am_sim.params import declare_config

DESCRIPTIONS = {
    'scene': 'Scene: cube-single, cube-double, scene or puzzle-3x3 (start-up only).',
    'image_size': 'Camera image width and height in pixels (start-up only).',
    'camera_rate_hz': 'Camera frame rate; must divide the 20 Hz control rate.',
    'real_time_factor': 'Simulated seconds per wall second; 0 = as fast as possible. '
                        'Not 1: /clock is published and stamps are simulation time.',
    'command_timeout_s': 'A twist older than this means hold still.',
    'seed': 'Seed of the first reset; -1 draws one.',
    'frame_id': 'Frame of the end-effector pose.',
    'draw_arm': 'Draw the faint UR5e links (slower rendering; start-up only).',
}
STATUS_PERIOD_S = 0.5
ASAP_PERIOD_S = 1e-4


def to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def image_message(image: np.ndarray, stamp: Time, frame_id: str) -> Image:
    '''(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8.'''
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = 'rgb8'
    msg.step = 3 * msg.width
    msg.data = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    return msg


class SimRobotNode(Node):
    '''The simulated arm as a ROS node: parameters -> SimConfig -> SimCore.'''

    def __init__(self) -> None:
        super().__init__('sim_robot')
        config = declare_config(self, SimConfig, DESCRIPTIONS)
        start_ns = self.get_clock().now().nanoseconds
        self.core = SimCore(config, start_ns=start_ns)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._image_pub = self.create_publisher(Image, conv.CAMERA_TOPIC, qos_profile_sensor_data)
        self._joint_pub = self.create_publisher(JointState, conv.JOINT_STATES_TOPIC, 10)
        self._pose_pub = self.create_publisher(PoseStamped, conv.EE_POSE_TOPIC, 10)
        self._state_pub = self.create_publisher(Float32MultiArray, conv.SIM_STATE_TOPIC, 10)
        self._status_pub = self.create_publisher(SimStatus, '~/status', 10)
        self._clock_pub = self.create_publisher(Clock, conv.CLOCK_TOPIC, 10)
        self.create_subscription(TwistStamped, conv.TWIST_TOPIC, self._on_twist, 10)
        self.create_subscription(Float64MultiArray, conv.GRIPPER_TOPIC, self._on_gripper, 10)
        self.create_service(ResetScene, '~/reset', self._on_reset)
        self.create_service(LoadTask, '~/load_task', self._on_load_task)

        self._rtf_window: list[tuple[float, int]] = []
        self._step_timer = None
        self._restart_step_timer()
        self.create_timer(STATUS_PERIOD_S, self._publish_status)
        self.get_logger().info(
            f'{config.scene} at {config.image_size}x{config.image_size}, camera '
            f'{config.camera_rate_hz:g} Hz, real-time factor {config.real_time_factor:g}')

    # --- parameters ----------------------------------------------------------------------

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        values = {n: getattr(self.core.config, n) for n in SimConfig.names()}
        for p in params:
            if p.name in values:
                values[p.name] = p.value
        try:
            config = SimConfig(**values)
            self.core.reconfigure(config)
        except (TypeError, ValueError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self._restart_step_timer()
        return SetParametersResult(successful=True)

    def destroy_node(self) -> None:
        self.core.scene.close()  # its GL context, while EGL is still up
        super().destroy_node()

    def _restart_step_timer(self) -> None:
        if self._step_timer is not None:
            self.destroy_timer(self._step_timer)
        rtf = self.core.config.real_time_factor
        period = ASAP_PERIOD_S if rtf == 0 else 1.0 / (CONTROL_RATE_HZ * rtf)
        self._step_timer = self.create_timer(period, self._on_step)

    # --- commands ------------------------------------------------------------------------

    def _wall_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        try:
            self.core.command_twist(np.array([t.linear.x, t.linear.y, t.linear.z]),
                                    float(t.angular.z), self._wall_ns())
        except CommandError as exc:
            self.get_logger().warning(f'ignored twist: {exc}', throttle_duration_sec=1.0)

    def _on_gripper(self, msg: Float64MultiArray) -> None:
        try:
            self.core.command_gripper(list(msg.data))
        except CommandError as exc:
            self.get_logger().warning(f'ignored gripper command: {exc}',
                                      throttle_duration_sec=1.0)

    # --- stepping ------------------------------------------------------------------------

    def _on_step(self) -> None:
        # The cheap topics first (the operator answers the state while the camera renders),
        # then the camera frame with the same stamp.
        obs = self.core.step(self._wall_ns(), image=False)
        self._rtf_window.append((time.monotonic(), self.core.sim_time_ns))
        if self.core.config.uses_sim_time:
            self._clock_pub.publish(Clock(clock=to_stamp(self.core.sim_time_ns)))
        stamp = to_stamp(obs.stamp_ns)
        self._publish(obs, stamp)
        if self.core.camera_due():
            self._image_pub.publish(image_message(self.core.scene.render(), stamp, 'camera'))

    def _publish(self, obs: Observation, stamp: Time) -> None:
        state = Float32MultiArray()
        state.layout.dim = [MultiArrayDimension(label=conv.OGBENCH_STATE_LAYOUT,
                                                size=obs.state.size, stride=obs.state.size)]
        state.data = obs.state.astype(np.float32).tolist()
        self._state_pub.publish(state)
        js = JointState()
        js.header.stamp = stamp
        js.name = [*conv.ARM_JOINTS, conv.GRIPPER_JOINT]
        js.position = [*map(float, obs.joint_positions), obs.gripper]
        js.velocity = [*map(float, obs.joint_velocities), 0.0]
        self._joint_pub.publish(js)
        pose = PoseStamped()
        pose.header.stamp = stamp
        pose.header.frame_id = self.core.config.frame_id
        p, q = obs.ee_position, obs.ee_quaternion
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = map(float, p)
        (pose.pose.orientation.x, pose.pose.orientation.y, pose.pose.orientation.z,
         pose.pose.orientation.w) = map(float, q)
        self._pose_pub.publish(pose)

    def _publish_status(self) -> None:
        now = time.monotonic()
        window = [w for w in self._rtf_window if now - w[0] <= 1.0]
        self._rtf_window = window
        rtf = 0.0
        if len(window) >= 2 and window[-1][0] > window[0][0]:
            rtf = (window[-1][1] - window[0][1]) / 1e9 / (window[-1][0] - window[0][0])
        scene = self.core.scene
        msg = SimStatus()
        msg.header.stamp = to_stamp(self.core.now_ns(self._wall_ns()))
        msg.scene = scene.name
        msg.task = scene.task
        msg.task_solved = scene.task_solved()
        msg.goal_distance = scene.goal_distance()
        msg.step = scene.steps
        msg.real_time_factor = float(rtf)
        self._status_pub.publish(msg)

    # --- services ------------------------------------------------------------------------

    def _stamp_now(self) -> Time:
        return to_stamp(self.core.now_ns(self._wall_ns()))

    def _on_reset(self, request: ResetScene.Request,
                  response: ResetScene.Response) -> ResetScene.Response:
        seed = int(request.seed) if request.use_seed else None
        image = self.core.reset(seed)
        response.success = True
        response.message = f'{self.core.scene.name} reset (seed {seed})'
        response.image = image_message(image, self._stamp_now(), 'camera')
        return response

    def _on_load_task(self, request: LoadTask.Request,
                      response: LoadTask.Response) -> LoadTask.Response:
        seed = int(request.seed) if request.use_seed else None
        try:
            if request.kind == LoadTask.Request.KIND_EVAL:
                goal = self.core.load_eval_task(int(request.task_id), seed)
                position = np.zeros(3)
            elif request.kind == LoadTask.Request.KIND_REACH:
                goal, position = self.core.load_reach_task(seed)
            else:
                raise ValueError(f'kind must be KIND_EVAL (0) or KIND_REACH (1), '
                                 f'got {request.kind}')
        except ValueError as exc:
            response.success = False
            response.message = str(exc)
            return response
        response.success = True
        response.message = f'loaded {self.core.scene.task}'
        response.goal_image = image_message(goal, self._stamp_now(), 'camera')
        response.goal_position = [float(v) for v in position]
        return response


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> None:
    # SIGINT and SIGTERM end the spin with the context still valid, so the final counts
    # still reach the log (rclpy's own handler would invalidate the context first).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    node = None
    code = 0
    try:
        node = SimRobotNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:  # bad start-up parameters: say which, exit 2
        rclpy.logging.get_logger('sim_robot').fatal(f'cannot start: {exc}')
        code = 2
    finally:
        if node is not None:
            counts = ', '.join(f'{k} {v}' for k, v in node.core.counters.items())
            node.get_logger().info(f'steps {node.core.steps_total}: {counts}')
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    if code:
        raise SystemExit(code)


if __name__ == '__main__':
    main()
