'''The `policy` node: goal images in, arm commands out, safely.

Thin by design: parameters -> PolicyNodeConfig -> PolicyCore (core.py) and a Commander
(commanders.py); callbacks convert messages and hand over. Callback groups keep the
control path (camera + control timer) apart from services and the action, so a goal
being set or an action waiting never delays a control step, and the multi-threaded
executor never waits on the CEM (about a millisecond, run inline in the control group).
'''

import math
import signal
import sys
import time

from geometry_msgs.msg import PointStamped, PoseStamped, TwistStamped
import numpy as np
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32, Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from am_learning.conventions import ActionScale
from am_msgs.action import ReachGoal
from am_msgs.msg import PolicyStatus
from am_policy_node.commanders import (
    CommanderUnavailableError,
    GripperActionSender,
    MoveItPyBackend,
    MoveItPyCommander,
    ServoCommander,
    gripper_message,
)
from am_policy_node.config import PolicyNodeConfig, parameter_specs
from am_policy_node.conversions import ImageError, decode, rgb_to_image
from am_policy_node.core import Outcome, PolicyCore, StepResult
from am_policy_node.goals import FrameIndex, index_bag, yaw_from_quaternion

# Goals are latched: a policy started after the goal was published still gets it.
LATCHED_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


class StartupError(RuntimeError):
    '''The node cannot start (bad checkpoint, missing commander); one-line reason.'''


def load_policy(config: PolicyNodeConfig):
    '''The checkpoint's GoalReachingPolicy, checked against the node's inputs.'''
    import torch

    from am_learning.policy import CheckpointError, GoalReachingPolicy

    torch.set_num_threads(config.torch_threads)
    if not config.checkpoint:
        raise StartupError('parameter checkpoint is empty: give the trained checkpoint path')
    try:
        policy = GoalReachingPolicy.from_checkpoint(
            config.checkpoint, config.device,
            cem_samples=config.cem_samples or None,
            cem_iterations=config.cem_iterations or None, use_actor=config.use_actor,
            seed=config.seed)
    except (CheckpointError, FileNotFoundError) as exc:
        raise StartupError(f'cannot load checkpoint {config.checkpoint}: {exc}') from exc
    if not policy.uses_images:
        raise StartupError(f'checkpoint {config.checkpoint} is a state-vector model; the '
                           'policy node needs an image-based one')
    if policy.proprio_dim not in (0, len(config.joint_names)):
        raise StartupError(
            f'checkpoint {config.checkpoint} expects {policy.proprio_dim} proprioception values '
            f'but joint_names has {len(config.joint_names)}: {config.joint_names}')
    return policy


class PolicyNode(Node):
    '''ROS wiring around PolicyCore; see the package README for the interface.'''

    def __init__(self) -> None:
        super().__init__('policy')
        for name, default, description, read_only in parameter_specs():
            self.declare_parameter(name, default, ParameterDescriptor(
                description=description, read_only=read_only))
        self.config = PolicyNodeConfig().with_values(
            **{name: self.get_parameter(name).value for name, *_ in parameter_specs()})
        try:
            self.config.validate()
        except ValueError as exc:
            raise StartupError(f'bad parameter: {exc}') from exc
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        policy = load_policy(self.config)
        scale = getattr(policy, 'action_scale', None) or ActionScale(
            control_rate_hz=self.config.control_rate_hz)
        self.core = PolicyCore(self.config, policy, scale)
        self.frames: FrameIndex | None = self._load_frames()

        # One thread: rclpy's MultiThreadedExecutor re-dispatched still-pending events and
        # its bookkeeping took 85-100% of a core here (measured with cProfile), leaving most
        # camera images undecided. Every callback is short (a decision is about 1 ms), the
        # action waits as a coroutine, and moveit_py plans in its own thread.
        self._control_group = ReentrantCallbackGroup()
        self._input_group = self._control_group
        self._service_group = self._control_group
        self._action_runs: dict[int, tuple] = {}  # run_id -> (goal handle, future, last step)
        cfg = self.config

        self._twist_pub = self.create_publisher(TwistStamped, cfg.twist_topic, 10)
        self._gripper_pub = (self.create_publisher(Float64MultiArray, cfg.gripper_topic, 10)
                             if cfg.gripper_topic else None)
        self._q_pub = self.create_publisher(Float32, '~/q_value', 10)
        self._status_pub = self.create_publisher(PolicyStatus, '~/status', 10)
        self._display_pub = self.create_publisher(Image, '~/goal_image_display', LATCHED_QOS)
        self.commander = self._make_commander()

        if cfg.camera_compressed:
            self.create_subscription(CompressedImage, cfg.camera_topic + '/compressed',
                                     self._on_camera, qos_profile_sensor_data,
                                     callback_group=self._control_group)
        else:
            self.create_subscription(Image, cfg.camera_topic, self._on_camera,
                                     qos_profile_sensor_data, callback_group=self._control_group)
        self.create_subscription(JointState, cfg.joint_states_topic, self._on_joint_state,
                                 qos_profile_sensor_data, callback_group=self._input_group)
        self.create_subscription(PoseStamped, cfg.ee_pose_topic, self._on_ee_pose, 10,
                                 callback_group=self._input_group)
        self.create_subscription(Image, '~/goal_image', self._on_goal_image, LATCHED_QOS,
                                 callback_group=self._service_group)
        self.create_subscription(CompressedImage, '~/goal_image/compressed',
                                 self._on_goal_image, LATCHED_QOS,
                                 callback_group=self._service_group)
        self.create_subscription(PointStamped, '/clicked_point', self._on_clicked_point, 10,
                                 callback_group=self._service_group)
        self.create_subscription(PoseStamped, '/goal_pose', self._on_goal_pose, 10,
                                 callback_group=self._service_group)

        self.create_service(SetBool, '~/activate', self._on_activate,
                            callback_group=self._service_group)
        self.create_service(SetBool, '~/emergency_stop', self._on_emergency_stop,
                            callback_group=self._service_group)
        self.create_service(Trigger, '~/capture_goal', self._on_capture_goal,
                            callback_group=self._service_group)
        self._action_server = ActionServer(
            self, ReachGoal, '~/reach_goal', execute_callback=self._execute_goal,
            goal_callback=lambda _: GoalResponse.ACCEPT,
            cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=self._service_group)

        self.create_timer(cfg.period_s, self._on_control_timer,
                          callback_group=self._control_group)
        self.create_timer(1.0 / cfg.status_rate_hz, self._publish_status,
                          callback_group=self._service_group)
        self._latency_ms = math.nan
        self.get_logger().info(
            f'policy ready: checkpoint {cfg.checkpoint} ({policy.image_size} px), commander '
            f'{self.commander.name}, {cfg.control_rate_hz:g} Hz, trigger {cfg.trigger}; '
            'inactive until ~/activate')

    # --- setup helpers ---------------------------------------------------------------------
    def _make_commander(self):
        cfg = self.config
        gripper_goal = None
        try:
            if cfg.gripper_action:
                gripper_goal = GripperActionSender(
                    self, cfg.gripper_action, lambda: self.config.gripper_max_position,
                    lambda: self.config.gripper_max_effort)
            if cfg.commander == 'moveit_py':
                backend = MoveItPyBackend(cfg.moveit_node_name, cfg.moveit_group,
                                          cfg.moveit_ee_link)

                def gripper(closure: float) -> None:
                    if self._gripper_pub is not None:
                        self._gripper_pub.publish(gripper_message(closure))
                    if gripper_goal is not None:
                        gripper_goal(closure)
                return MoveItPyCommander(
                    backend, lambda: self.config.frame_id, cfg.period_s, gripper=gripper,
                    on_error=lambda text: self.get_logger().warning(
                        text, throttle_duration_sec=2.0))
        except CommanderUnavailableError as exc:
            raise StartupError(str(exc)) from exc
        return ServoCommander(
            publish_twist=self._twist_pub.publish,
            now=lambda: self.get_clock().now().to_msg(),
            frame_id=lambda: self.config.frame_id,
            publish_gripper=self._gripper_pub.publish if self._gripper_pub else None,
            gripper_goal=gripper_goal)

    def _load_frames(self) -> FrameIndex | None:
        cfg = self.config
        if cfg.goal_frames_dataset:
            raise StartupError('goal_frames_dataset is not supported yet: the dataset cache '
                               'stores no end-effector poses; use goal_frames_bag')
        if not cfg.goal_frames_bag:
            return None
        try:
            frames = index_bag(cfg.goal_frames_bag, cfg.camera_topic, cfg.ee_pose_topic)
        except (OSError, ValueError, ImageError) as exc:
            raise StartupError(f'goal_frames_bag {cfg.goal_frames_bag}: {exc}') from exc
        self.get_logger().info(f'{len(frames)} recorded frames for rviz goal picking')
        return frames

    # --- parameters ------------------------------------------------------------------------
    def _candidate(self, params: list[Parameter]) -> PolicyNodeConfig:
        return self.config.with_values(**{p.name: p.value for p in params
                                          if hasattr(self.config, p.name)})

    def _check_parameters(self, params: list[Parameter]) -> SetParametersResult:
        try:
            self._candidate(params).validate()
        except (ValueError, TypeError) as exc:
            self.get_logger().warning(f'parameter change rejected: {exc}')
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        self.config = self._candidate(params)
        self.core.update_config(self.config)

    # --- outputs ---------------------------------------------------------------------------
    def _apply(self, result: StepResult) -> None:
        if result.stop:
            self.commander.stop()
        if result.command is not None:
            self.commander.send(result.command)
            received = self.core.image_received_s
            if result.q_value is not None and received is not None:
                self._latency_ms = (time.monotonic() - received) * 1e3
        if result.q_value is not None:
            self._q_pub.publish(Float32(data=float(result.q_value)))
        if self.core.run is not None:
            self._send_feedback(self.core.run)
        if result.finished is not None:
            run = result.finished
            self._send_feedback(run)  # its last step's, before the result
            waiting = self._action_runs.pop(run.run_id, None)
            if waiting is not None:
                waiting[1].set_result(run)
            self.get_logger().info(f'goal from {run.source} ended: {run.outcome.name} '
                                   f'({run.message}), {run.steps} steps from {run.images} '
                                   'camera images')
            self._publish_status()

    def _publish_status(self) -> None:
        core = self.core
        msg = PolicyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.active = core.active
        msg.emergency_stop = core.estop
        msg.goal_set = core.goal is not None
        run = core.run or core.last_run
        msg.running = core.run is not None
        msg.q_value = float(core.last_q)
        msg.decision_latency_ms = float(self._latency_ms)
        msg.step = run.steps if run is not None else 0
        msg.commander = self.commander.name
        msg.last_stop_reason = int(core.last_stop_reason)
        msg.message = core.message
        self._status_pub.publish(msg)

    def _reject(self, text: str) -> None:
        self.get_logger().error(text)
        self.core.message = text
        self._publish_status()

    # --- inputs ----------------------------------------------------------------------------
    def _on_camera(self, msg: Image | CompressedImage) -> None:
        now = time.monotonic()
        try:
            image = decode(msg)
        except ImageError as exc:
            self.get_logger().error(f'camera image dropped: {exc}', throttle_duration_sec=2.0)
            return
        self.core.on_image(image.rgb, now)
        if self.config.trigger == 'image':
            self._apply(self.core.step(now, on_timer=False))

    def _on_control_timer(self) -> None:
        self._apply(self.core.step(time.monotonic(), on_timer=True))
        for run_id, (goal_handle, _, _) in list(self._action_runs.items()):
            if goal_handle.is_cancel_requested:
                self._apply(self.core.cancel(run_id))

    def _send_feedback(self, run) -> None:
        '''The action's feedback for each new step of `run`, if an action goal owns it.

        Called from _apply, which every step passes through (camera- or timer-triggered),
        so the client also gets the step that ends the run before its result.'''
        waiting = self._action_runs.get(run.run_id)
        if waiting is None or run.steps == waiting[2][0]:
            return
        waiting[2][0] = run.steps
        feedback = ReachGoal.Feedback()
        feedback.q_value = float(run.last_q)
        feedback.step = run.steps
        feedback.elapsed_s = float(run.elapsed(time.monotonic()))
        waiting[0].publish_feedback(feedback)

    def _on_joint_state(self, msg: JointState) -> None:
        problem = self.core.on_joint_state(list(msg.name), list(msg.position), time.monotonic())
        if problem:
            self.get_logger().warning(f'{problem} (it names {list(msg.name)[:8]})',
                                      throttle_duration_sec=5.0)

    def _on_ee_pose(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.core.on_ee_pose(np.array([p.x, p.y, p.z]), time.monotonic())

    def _set_goal(self, rgb: np.ndarray, source: str, start: bool = True) -> bool:
        ok, message, result = self.core.set_goal(rgb, source, time.monotonic(), start=start)
        self._apply(result)
        if not ok:
            self._reject(message)
            return False
        self.get_logger().info(message)
        self._display_pub.publish(rgb_to_image(rgb, stamp=self.get_clock().now().to_msg()))
        self._publish_status()
        return True

    def _on_goal_image(self, msg: Image | CompressedImage) -> None:
        try:
            rgb = decode(msg).rgb
        except ImageError as exc:
            self._reject(f'goal image rejected, previous goal kept: {exc}')
            return
        self._set_goal(rgb, 'topic')

    def _pick_goal(self, position: np.ndarray, yaw: float | None, source: str) -> None:
        if self.frames is None:
            self._reject(f'{source} ignored: no goal_frames_bag configured for picking goals')
            return
        i = self.frames.nearest(position, yaw, self.config.pick_yaw_weight)
        try:
            rgb = self.frames.image(i)
        except (OSError, ImageError) as exc:
            self._reject(f'{source}: cannot read the picked frame: {exc}')
            return
        gap = float(np.linalg.norm(self.frames.positions[i] - position))
        self.get_logger().info(f'{source}: recorded frame {i} is {gap * 100:.1f} cm away')
        self._set_goal(rgb, source)

    def _on_clicked_point(self, msg: PointStamped) -> None:
        self._pick_goal(np.array([msg.point.x, msg.point.y, msg.point.z]), None, 'clicked point')

    def _on_goal_pose(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        self._pick_goal(np.array([p.x, p.y, p.z]), yaw_from_quaternion(q.x, q.y, q.z, q.w),
                        'goal pose')

    # --- services --------------------------------------------------------------------------
    def _on_activate(self, request: SetBool.Request, response: SetBool.Response):
        message, result = self.core.set_active(request.data, time.monotonic())
        self._apply(result)
        self.get_logger().info(message)
        self._publish_status()
        response.success, response.message = True, message
        return response

    def _on_emergency_stop(self, request: SetBool.Request, response: SetBool.Response):
        message, result = self.core.set_emergency_stop(request.data)
        self._apply(result)
        if request.data:
            self.get_logger().warning(message)
        else:
            self.get_logger().info(message)
        self._publish_status()
        response.success, response.message = True, message
        return response

    def _on_capture_goal(self, request: Trigger.Request, response: Trigger.Response):
        ok, message = self.core.capture_goal(time.monotonic())
        if ok and self.core.goal is not None:
            self._display_pub.publish(rgb_to_image(self.core.goal))
            self.get_logger().info(message)
        else:
            self._reject(f'capture_goal failed: {message}')
        self._publish_status()
        response.success, response.message = ok, message
        return response

    # --- action ----------------------------------------------------------------------------
    async def _execute_goal(self, goal_handle) -> ReachGoal.Result:
        '''Runs as a coroutine: waits for the run's end without holding the executor.'''
        request = goal_handle.request
        image = request.goal_image
        rgb = None
        if image.height or image.width or len(image.data) or image.encoding:
            try:
                rgb = decode(image).rgb
            except ImageError as exc:
                return self._end_goal(goal_handle, Outcome.INVALID_GOAL,
                                      f'goal image rejected: {exc}', None)
        run, outcome, message, result = self.core.start_action_run(
            rgb, float(request.timeout_s), time.monotonic())
        self._apply(result)
        if run is None:
            return self._end_goal(goal_handle, outcome, message, None)
        if rgb is not None:
            self._display_pub.publish(rgb_to_image(rgb))
        self._publish_status()
        finished = Future()
        self._action_runs[run.run_id] = (goal_handle, finished, [-1])
        await finished
        return self._end_goal(goal_handle, run.outcome, run.message, run)

    def _end_goal(self, goal_handle, outcome: Outcome, message: str, run) -> ReachGoal.Result:
        result = ReachGoal.Result()
        result.success = outcome == Outcome.REACHED
        result.reason = int(outcome)
        result.message = message
        result.steps = run.steps if run is not None else 0
        result.final_q = float(run.last_q) if run is not None else math.nan
        if outcome in (Outcome.INVALID_GOAL, Outcome.NOT_ACTIVE):
            self._reject(f'reach_goal refused: {message}')
        if outcome == Outcome.CANCELLED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def close(self) -> None:
        '''Stop the arm if it was being commanded, and release the commander.'''
        try:
            if self.core.active and self.context.ok():
                self.commander.stop()
        except RCLError as exc:
            self.get_logger().warning(f'could not send the final stop: {exc}')
        self.commander.close()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f'signal {signum}')


def main(args: list[str] | None = None) -> None:
    # Our own signal handling: SIGINT/SIGTERM end spin() with the context still valid, so
    # the arm gets a final stop before shutdown.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _raise_interrupt)  # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _raise_interrupt)
    node = None
    code = 0
    try:
        node = PolicyNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except StartupError as exc:
        rclpy.logging.get_logger('policy').fatal(str(exc))
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    if code:
        sys.exit(code)


if __name__ == '__main__':
    main()
