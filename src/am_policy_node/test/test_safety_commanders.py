'''Safety limits, the freshness watchdog, and the commanders' output (read from their sinks).'''

import math
import threading
import time

from geometry_msgs.msg import Pose
import numpy as np
import pytest

from am_policy_node.commanders import (
    CommanderUnavailableError,
    GripperActionSender,
    MoveItPyBackend,
    MoveItPyCommander,
    ServoCommander,
    step_pose,
)
from am_policy_node.config import PolicyNodeConfig
from am_policy_node.goals import yaw_from_quaternion
from am_policy_node.safety import (
    ArmCommand,
    Freshness,
    SafetyLimits,
    cap_speed,
    clip_to_workspace,
    limit_command,
)

LIMITS = SafetyLimits((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), max_linear_speed=0.5, max_yaw_rate=1.0)


def test_workspace_clip_stops_at_the_wall() -> None:
    # 0.1 s at 2 m/s would go 0.2 m past x = 0.9; only 0.1 m is left.
    v = clip_to_workspace(np.array([2.0, -3.0, 0.1]), np.array([0.9, 0.05, 0.5]), 0.1, LIMITS)
    np.testing.assert_allclose(v, [1.0, -0.5, 0.1])
    end = np.array([0.9, 0.05, 0.5]) + v * 0.1
    assert np.all(end >= 0) and np.all(end <= 1)


def test_outside_the_box_only_motion_back_in_is_allowed() -> None:
    p = np.array([1.2, -0.1, 0.5])
    v = clip_to_workspace(np.array([0.3, -0.3, 0.0]), p, 0.1, LIMITS)
    np.testing.assert_allclose(v, [0.0, 0.0, 0.0])
    v = clip_to_workspace(np.array([-0.3, 0.3, 0.0]), p, 0.1, LIMITS)
    np.testing.assert_allclose(v, [-0.3, 0.3, 0.0])


def test_speed_cap_keeps_direction_and_yaw_is_clipped() -> None:
    linear, yaw = cap_speed(np.array([3.0, 4.0, 0.0]), -2.5, LIMITS)
    np.testing.assert_allclose(linear, [0.3, 0.4, 0.0])
    assert yaw == -1.0
    linear, yaw = cap_speed(np.array([0.1, 0.0, 0.0]), 0.2, LIMITS)
    np.testing.assert_allclose(linear, [0.1, 0, 0])
    assert yaw == 0.2


def test_limit_command_box_then_cap_and_garbage() -> None:
    cmd, changed = limit_command(ArmCommand(np.array([5.0, 0, 0]), 0.0, 1.7),
                                 np.array([0.95, 0.5, 0.5]), 0.1, LIMITS)
    np.testing.assert_allclose(cmd.linear, [0.5, 0, 0])  # box allows 0.5, cap 0.5
    assert changed and cmd.closure == 1.0
    cmd, changed = limit_command(ArmCommand(np.array([0.1, 0, 0]), 0.1, 0.5), None, 0.1, LIMITS)
    assert not changed and cmd.closure == 0.5
    cmd, changed = limit_command(ArmCommand(np.array([math.nan, 0, 0]), 0.0, 0.5), None, 0.1,
                                 LIMITS)
    assert changed and cmd.is_zero


def test_limits_and_config_validation() -> None:
    LIMITS.validate()
    with pytest.raises(ValueError, match='below workspace_max'):
        SafetyLimits((0, 0, 1), (1, 1, 1), 1.0, 1.0).validate()
    with pytest.raises(ValueError, match='max_linear_speed'):
        SafetyLimits((0, 0, 0), (1, 1, 1), 0.0, 1.0).validate()
    base = PolicyNodeConfig()
    base.validate()
    for bad, match in [
        ({'control_rate_hz': 0.0}, 'control_rate_hz'),
        ({'commander': 'teleport'}, 'commander'),
        ({'trigger': 'sometimes'}, 'trigger'),
        ({'reach_threshold': 1.5}, 'reach_threshold'),
        ({'q_floor': 0.95}, 'q_floor'),
        ({'reach_steps': 0}, 'reach_steps'),
        ({'max_image_age_s': -1.0}, 'max_image_age_s'),
        ({'workspace_min': [0.0, 0.0]}, '3 values'),
        ({'joint_names': ['a', 'a']}, 'joint_names'),
    ]:
        with pytest.raises(ValueError, match=match):
            base.with_values(**bad).validate()


def test_freshness() -> None:
    f = Freshness(max_age_s=0.1)
    assert not f.fresh(0.0) and f.age(0.0) == math.inf
    f.mark(1.0)
    assert f.fresh(1.09) and not f.fresh(1.11)


def test_servo_commander_writes_twists_and_gripper() -> None:
    twists, grippers = [], []
    frame = ['base_link']
    commander = ServoCommander(twists.append, now=lambda: _stamp(7), frame_id=lambda: frame[0],
                               publish_gripper=grippers.append)
    commander.send(ArmCommand(np.array([0.1, -0.2, 0.3]), 0.4, 0.75))
    frame[0] = 'world'
    commander.send(ArmCommand(np.array([0.0, 0.0, 0.0]), 0.0, None))
    commander.stop()
    assert len(twists) == 3 and len(grippers) == 1
    t = twists[0]
    assert (t.header.frame_id, t.header.stamp.sec) == ('base_link', 7)
    assert (t.twist.linear.x, t.twist.linear.y, t.twist.linear.z) == (0.1, -0.2, 0.3)
    assert t.twist.angular.z == 0.4 and t.twist.angular.x == 0.0
    assert twists[1].header.frame_id == 'world'
    assert twists[2].twist.linear.x == 0.0 and twists[2].twist.angular.z == 0.0
    assert list(grippers[0].data) == [0.75]


def _stamp(sec: int):
    from builtin_interfaces.msg import Time
    return Time(sec=sec)


def test_step_pose_moves_and_turns() -> None:
    pose = Pose()
    pose.position.x, pose.position.z = 0.4, 0.2
    # Tool pointing down: 180 degrees about x.
    pose.orientation.x, pose.orientation.w = 1.0, 0.0
    out = step_pose(pose, ArmCommand(np.array([0.2, 0.0, -0.1]), 2.0, None), 0.05)
    assert (out.position.x, out.position.y, out.position.z) == pytest.approx((0.41, 0.0, 0.195))
    q = out.orientation
    assert math.isclose(q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2, 1.0)
    before = yaw_from_quaternion(1.0, 0.0, 0.0, 0.0)
    after = yaw_from_quaternion(q.x, q.y, q.z, q.w)
    assert (after - before) == pytest.approx(0.1)


def test_moveit_py_backend_missing_gives_a_clear_error() -> None:
    try:
        import moveit.planning  # noqa: F401
    except ImportError:
        with pytest.raises(CommanderUnavailableError, match='moveit_py.*commander:=servo'):
            MoveItPyBackend('n', 'ur_manipulator', 'tool0')
    else:
        pytest.skip('moveit_py is installed here')


def test_gripper_action_without_control_msgs_gives_a_clear_error() -> None:
    try:
        import control_msgs  # noqa: F401
    except ImportError:
        with pytest.raises(CommanderUnavailableError, match='needs control_msgs'):
            GripperActionSender(None, '/gripper_controller/gripper_cmd', lambda: 0.8,
                                lambda: 50.0)
    else:
        pytest.skip('control_msgs is installed here')


class RecordingPlanner:
    '''Stands in for MoveIt (not installable here): a slow planner that records its goals.'''

    def __init__(self, plan_time_s: float) -> None:
        self.goals = []
        self.stops = 0
        self.plan_time_s = plan_time_s
        self.pose = Pose()
        self.pose.orientation.w = 1.0
        self.busy = threading.Event()

    def current_pose(self) -> Pose:
        return self.pose

    def plan_and_execute(self, goal) -> bool:
        self.busy.set()
        time.sleep(self.plan_time_s)
        self.goals.append(goal)
        self.pose = goal.pose
        self.busy.clear()
        return goal.pose.position.z >= 0.0

    def stop(self) -> None:
        self.stops += 1


def test_moveit_py_commander_plans_off_thread_and_keeps_only_the_newest() -> None:
    planner = RecordingPlanner(plan_time_s=0.2)
    errors = []
    commander = MoveItPyCommander(planner, lambda: 'base_link', 0.05, on_error=errors.append)
    try:
        t0 = time.monotonic()
        commander.send(ArmCommand(np.array([1.0, 0, 0]), 0.0, None))
        assert planner.busy.wait(1.0)
        for i in range(5):  # arrive while the first plan runs: only the last survives
            commander.send(ArmCommand(np.array([0.0, 0.1 * (i + 1), 0]), 0.0, None))
        assert time.monotonic() - t0 < 0.1, 'send() must not wait for planning'
        deadline = time.monotonic() + 3
        while len(planner.goals) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert len(planner.goals) == 2
        assert planner.goals[0].pose.position.x == pytest.approx(0.05)
        assert planner.goals[1].pose.position.y == pytest.approx(0.5 * 0.05)
        assert planner.goals[1].header.frame_id == 'base_link'
        commander.send(ArmCommand(np.array([0.0, 0.0, -1.0]), 0.0, None))  # plan fails
        deadline = time.monotonic() + 3
        while not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert errors and 'failed' in errors[0] and commander.failed == 1
        commander.stop()
        assert planner.stops == 1
    finally:
        commander.close()
