'''Arm commanders behind one seam: each turns an ArmCommand into what a robot consumes.

- `ServoCommander`: geometry_msgs/TwistStamped to MoveIt Servo's delta_twist_cmds at the
  control rate, plus the gripper (Float64MultiArray to a forward position controller and/or
  a control_msgs GripperCommand goal).
- `MoveItPyCommander`: each command becomes a pose goal (current end-effector pose moved by
  one period of the command) planned and executed with MoveItPy in a worker thread, so the
  executor never waits on planning. moveit_py is imported only when this commander is built.

No rclpy here: commanders write to sinks (callables) that the node binds to its publishers,
so their output is tested by reading what the sinks received.
'''

from collections.abc import Callable
from dataclasses import dataclass
import math
import threading
from typing import Any, Protocol

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseStamped, TwistStamped
import numpy as np
from std_msgs.msg import Float64MultiArray

from am_policy_node.safety import ArmCommand


class Commander(Protocol):
    '''What the control loop drives. `send` and `stop` never block on the robot.'''

    name: str

    def send(self, command: ArmCommand) -> None:
        '''Command one control step of motion (and the gripper when closure is set).'''

    def stop(self) -> None:
        '''Stop arm motion now (zero velocity / abort the running trajectory).'''

    def close(self) -> None:
        '''Release resources (threads, planners).'''


class CommanderUnavailableError(RuntimeError):
    '''The commander's middleware is missing on this machine; the text says what to install.'''


def twist_message(command: ArmCommand, frame_id: str, stamp: Time) -> TwistStamped:
    '''ArmCommand -> TwistStamped (linear m/s, angular.z = yaw rate rad/s).'''
    msg = TwistStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (
        float(v) for v in command.linear)
    msg.twist.angular.z = float(command.yaw_rate)
    return msg


def gripper_message(closure: float) -> Float64MultiArray:
    '''Gripper closure in [0, 1] -> forward position controller command ([closure]).'''
    msg = Float64MultiArray()
    msg.data = [float(np.clip(closure, 0.0, 1.0))]
    return msg


class ServoCommander:
    '''Twists for MoveIt Servo; gripper to a forward controller and/or a GripperCommand.'''

    name = 'servo'

    def __init__(
        self,
        publish_twist: Callable[[TwistStamped], None],
        now: Callable[[], Time],
        frame_id: Callable[[], str],
        publish_gripper: Callable[[Float64MultiArray], None] | None = None,
        gripper_goal: Callable[[float], None] | None = None,
    ) -> None:
        self._publish_twist = publish_twist
        self._now = now
        self._frame_id = frame_id
        self._publish_gripper = publish_gripper
        self._gripper_goal = gripper_goal
        self._last_closure: float | None = None

    def send(self, command: ArmCommand) -> None:
        self._publish_twist(twist_message(command, self._frame_id(), self._now()))
        if command.closure is None:
            return
        if self._publish_gripper is not None:
            self._publish_gripper(gripper_message(command.closure))
        # An action goal per step would preempt itself 20 times a second: send on change.
        if self._gripper_goal is not None and (
                self._last_closure is None or abs(command.closure - self._last_closure) > 0.02):
            self._gripper_goal(command.closure)
        self._last_closure = command.closure

    def stop(self) -> None:
        self._publish_twist(twist_message(ArmCommand.zero(), self._frame_id(), self._now()))

    def close(self) -> None:
        pass


class GripperActionSender:
    '''control_msgs/action/GripperCommand client; built only where control_msgs imports.'''

    def __init__(self, node: Any, action_name: str, max_position: Callable[[], float],
                 max_effort: Callable[[], float]) -> None:
        try:
            from control_msgs.action import GripperCommand
            from rclpy.action import ActionClient
        except ImportError as exc:
            raise CommanderUnavailableError(
                f'gripper_action={action_name!r} needs control_msgs, which is not installed '
                f'({exc}); leave gripper_action empty to use the forward controller topic'
            ) from exc
        self._action_type = GripperCommand
        self._client = ActionClient(node, GripperCommand, action_name)
        self._max_position = max_position
        self._max_effort = max_effort

    def __call__(self, closure: float) -> None:
        if not self._client.server_is_ready():
            return
        goal = self._action_type.Goal()
        goal.command.position = float(closure) * self._max_position()
        goal.command.max_effort = self._max_effort()
        self._client.send_goal_async(goal)


def yaw_quaternion(yaw: float) -> np.ndarray:
    '''Rotation about z as a quaternion (x, y, z, w).'''
    return np.array([0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    '''Hamilton product a * b of (x, y, z, w) quaternions.'''
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


def step_pose(pose: Pose, command: ArmCommand, period_s: float) -> Pose:
    '''The pose reached by holding `command` for one period from `pose`.

    Translation in the pose's frame; the yaw change is a rotation about that frame's z axis
    applied on the left (so a yaw command turns the tool about the vertical, as Servo does).
    '''
    out = Pose()
    out.position.x = pose.position.x + float(command.linear[0]) * period_s
    out.position.y = pose.position.y + float(command.linear[1]) * period_s
    out.position.z = pose.position.z + float(command.linear[2]) * period_s
    q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z,
                  pose.orientation.w], dtype=np.float64)
    q = quaternion_multiply(yaw_quaternion(command.yaw_rate * period_s), q)
    q /= np.linalg.norm(q)
    out.orientation.x, out.orientation.y, out.orientation.z, out.orientation.w = (
        float(v) for v in q)
    return out


class MotionBackend(Protocol):
    '''What MoveItPyCommander needs from a motion planner.'''

    def current_pose(self) -> Pose:
        '''Current pose of the commanded link in the planning frame.'''

    def plan_and_execute(self, goal: PoseStamped) -> bool:
        '''Plan to `goal` and execute it (blocking); False when planning failed.'''

    def stop(self) -> None:
        '''Abort the running trajectory.'''


class MoveItPyBackend:
    '''MotionBackend on the real moveit_py API (MoveIt 2 Humble .. Kilted).'''

    def __init__(self, node_name: str, group: str, ee_link: str,
                 config_dict: dict | None = None) -> None:
        try:
            from moveit.planning import MoveItPy
        except ImportError as exc:
            raise CommanderUnavailableError(
                'commander "moveit_py" needs MoveIt 2\'s Python bindings (moveit_py: apt '
                f'install ros-$ROS_DISTRO-moveit-py), which do not import here ({exc}); use '
                'commander:=servo'
            ) from exc
        kwargs = {'node_name': node_name}
        if config_dict is not None:
            kwargs['config_dict'] = config_dict
        self._robot = MoveItPy(**kwargs)
        self._component = self._robot.get_planning_component(group)
        self._monitor = self._robot.get_planning_scene_monitor()
        self._ee_link = ee_link

    def current_pose(self) -> Pose:
        with self._monitor.read_only() as scene:
            return scene.current_state.get_pose(self._ee_link)

    def plan_and_execute(self, goal: PoseStamped) -> bool:
        self._component.set_start_state_to_current_state()
        self._component.set_goal_state(pose_stamped_msg=goal, pose_link=self._ee_link)
        result = self._component.plan()
        if not result:
            return False
        self._robot.execute(result.trajectory, controllers=[])
        return True

    def stop(self) -> None:
        # (sic) moveit_py spells the accessor this way.
        self._robot.get_trajactory_execution_manager().stop_execution()


@dataclass
class _Pending:
    command: ArmCommand | None = None
    generation: int = 0


class MoveItPyCommander:
    '''Each command = one pose goal, planned and executed off the executor thread.

    Only the newest command is kept: when planning and execution take longer than a
    control period, stale steps are dropped instead of queueing up behind the robot.
    '''

    name = 'moveit_py'

    def __init__(self, backend: MotionBackend, frame_id: Callable[[], str], period_s: float,
                 gripper: Callable[[float], None] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self._backend = backend
        self._frame_id = frame_id
        self._period_s = period_s
        self._gripper = gripper
        self._on_error = on_error or (lambda text: None)
        self._pending = _Pending()
        self._cond = threading.Condition()
        self._closed = False
        self.executed = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name='moveit_py_commander',
                                        daemon=True)
        self._thread.start()

    def send(self, command: ArmCommand) -> None:
        if command.closure is not None and self._gripper is not None:
            self._gripper(command.closure)
        with self._cond:
            if command.is_zero:
                self._pending.command = None
            else:
                self._pending.command = command
            self._pending.generation += 1
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._pending.command = None
            self._pending.generation += 1
        self._backend.stop()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._pending.command = None
            self._cond.notify()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending.command is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                command = self._pending.command
                self._pending.command = None
            try:
                goal = PoseStamped()
                goal.header.frame_id = self._frame_id()
                goal.pose = step_pose(self._backend.current_pose(), command, self._period_s)
                if self._backend.plan_and_execute(goal):
                    self.executed += 1
                else:
                    self.failed += 1
                    self._on_error('moveit_py: planning to the step pose failed')
            except Exception as exc:  # noqa: BLE001 - a planner error must not kill the thread
                self.failed += 1
                self._on_error(f'moveit_py: {type(exc).__name__}: {exc}')
