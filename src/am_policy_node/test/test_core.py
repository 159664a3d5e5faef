'''PolicyCore's state machine and control step, with a real (tiny) trained policy.'''

import numpy as np
import pytest
import torch

from am_learning.conventions import ActionScale, action_to_twist
from am_learning.policy import GoalReachingPolicy
from am_learning.testing import render_point
from am_policy_node.config import PolicyNodeConfig
from am_policy_node.core import Outcome, PolicyCore, StopReason

PERIOD = 0.05
JOINTS = [f'j{i}' for i in range(7)]


@pytest.fixture
def policy(tiny_checkpoint):
    return GoalReachingPolicy.from_checkpoint(tiny_checkpoint, seed=0)


def make_core(policy, **overrides) -> PolicyCore:
    values = {'joint_names': JOINTS, 'reach_threshold': 1.0, 'q_floor': 0.0,
              'goal_timeout_s': 100.0, **overrides}
    return PolicyCore(PolicyNodeConfig().with_values(**values), policy)


def feed(core: PolicyCore, now: float, xy=(0.3, 0.3), ee=(0.4, 0.0, 0.2)) -> None:
    core.on_image(render_point(np.array(xy), 48), now)
    assert core.on_joint_state(JOINTS, [xy[0], xy[1], 0, 0, 0, 0, 0], now) == ''
    core.on_ee_pose(np.array(ee), now)


GOAL = render_point(np.array([0.7, 0.7]), 32)


def test_inactive_core_outputs_nothing_even_with_a_goal(policy) -> None:
    core = make_core(policy)
    ok, _, _ = core.set_goal(GOAL, 'topic', 0.0)
    assert ok and core.goal_pending and core.run is None
    for k in range(5):
        feed(core, k * PERIOD)
        assert core.step(k * PERIOD, on_timer=False).command is None
        result = core.step(k * PERIOD, on_timer=True)
        assert result.command is None and not result.stop


def test_activation_starts_the_pending_goal_and_commands_follow_the_policy(
        policy, tiny_checkpoint) -> None:
    core = make_core(policy, max_linear_speed=10.0, max_yaw_rate=100.0)
    core.set_goal(GOAL, 'topic', 0.0)
    message, _ = core.set_active(True, 0.0)
    assert 'pursuing' in message and core.run is not None
    feed(core, 0.01)
    result = core.step(0.01, on_timer=False)
    assert result.command is not None and 0.0 <= result.q_value <= 1.0
    # The command is exactly the policy's action through the shared mapping (same seed).
    reference = GoalReachingPolicy.from_checkpoint(tiny_checkpoint, seed=0)
    reference.set_goal(GOAL)
    step = reference.act(core.image, core.proprio)
    linear, yaw, closure = action_to_twist(step.action, ActionScale())
    np.testing.assert_allclose(result.command.linear, linear, atol=1e-6)
    assert result.command.yaw_rate == pytest.approx(yaw) and result.command.closure == closure
    # The same image is not decided on twice; the timer does not decide in image mode.
    assert core.step(0.02, on_timer=False).command is None
    assert core.step(0.06, on_timer=True).command is None
    assert core.run.steps == 1


def test_stale_camera_gives_zero_commands_on_the_timer(policy) -> None:
    core = make_core(policy, max_image_age_s=0.1)
    core.set_active(True, 0.0)
    core.set_goal(GOAL, 'topic', 0.0)
    feed(core, 0.0)
    assert core.step(0.0, on_timer=False).command is not None
    core.on_joint_state(JOINTS, [0.3] * 7, 0.2)  # joints keep coming, the camera stopped
    core.on_ee_pose(np.array([0.4, 0, 0.2]), 0.2)
    result = core.step(0.2, on_timer=True)
    assert result.command is not None and result.command.is_zero
    assert 'camera image stale' in core.message
    feed(core, 0.25)
    assert not core.step(0.25, on_timer=False).command.is_zero


def test_missing_ee_pose_blocks_motion_when_required(policy) -> None:
    core = make_core(policy)
    core.set_active(True, 0.0)
    core.set_goal(GOAL, 'topic', 0.0)
    core.on_image(GOAL, 0.0)
    core.on_joint_state(JOINTS, [0.0] * 7, 0.0)
    assert core.step(0.0, on_timer=True).command.is_zero
    assert 'end-effector pose' in core.message
    core.update_config(core.config.with_values(require_ee_pose=False))
    assert not core.step(0.0, on_timer=False).command.is_zero


def test_workspace_box_clips_the_policy_command(policy) -> None:
    core = make_core(policy, workspace_min=[0.0, -1.0, 0.0], workspace_max=[0.401, 1.0, 1.0],
                     max_linear_speed=100.0, max_yaw_rate=100.0)
    core.set_active(True, 0.0)
    core.set_goal(GOAL, 'topic', 0.0)
    for k in range(20):
        now = k * PERIOD
        feed(core, now, xy=(0.1 + 0.04 * k, 0.5), ee=(0.4, 0.0, 0.2))
        command = core.step(now, on_timer=False).command
        # 1 mm left in +x: at most 0.001 m per period.
        assert command.linear[0] <= 0.001 / PERIOD + 1e-9


def test_goal_ends_reached_below_floor_and_timeout(policy) -> None:
    core = make_core(policy, reach_threshold=0.001, reach_steps=2)
    core.set_active(True, 0.0)
    core.set_goal(GOAL, 'topic', 0.0)
    feed(core, 0.0)
    assert core.step(0.0, on_timer=False).command is not None
    feed(core, 0.05)
    result = core.step(0.05, on_timer=False)
    assert result.stop and result.command is None
    assert result.finished.outcome == Outcome.REACHED and core.run is None
    assert core.last_stop_reason == StopReason.REACHED

    core.update_config(core.config.with_values(reach_threshold=1.0, q_floor=0.999,
                                               q_floor_steps=3))
    core.set_goal(GOAL, 'topic', 0.1)
    for k in range(3):
        feed(core, 0.1 + k * PERIOD)
        result = core.step(0.1 + k * PERIOD, on_timer=False)
    assert result.finished.outcome == Outcome.Q_BELOW_FLOOR and result.finished.steps == 3

    core.update_config(core.config.with_values(q_floor=0.0, goal_timeout_s=0.5))
    core.set_goal(GOAL, 'topic', 1.0)
    feed(core, 1.4)
    assert core.step(1.4, on_timer=True).finished is None
    feed(core, 1.6)
    result = core.step(1.6, on_timer=True)
    assert result.stop and result.finished.outcome == Outcome.TIMEOUT


def test_emergency_stop_latches_until_released(policy) -> None:
    core = make_core(policy)
    core.set_active(True, 0.0)
    run, *_ = core.start_action_run(GOAL, 0.0, 0.0)
    feed(core, 0.0)
    assert not core.step(0.0, on_timer=False).command.is_zero
    _, result = core.set_emergency_stop(True)
    assert result.stop and run.done.is_set() and run.outcome == Outcome.STOPPED
    for k in range(1, 5):  # nothing moves: zero on every tick, new goals do not start
        feed(core, k * PERIOD)
        core.set_goal(GOAL, 'topic', k * PERIOD)
        assert core.step(k * PERIOD, on_timer=True).command.is_zero
        assert core.step(k * PERIOD, on_timer=False).command is None
    assert core.start_action_run(GOAL, 0, 1.0)[1] == Outcome.STOPPED
    core.set_emergency_stop(False)
    assert core.run is None and core.step(1.0, on_timer=True).command is None
    run, *_ = core.start_action_run(None, 0.0, 1.0)  # the current goal, again
    feed(core, 1.0)
    assert not core.step(1.0, on_timer=False).command.is_zero


def test_cancel_deactivate_preempt_and_not_active(policy) -> None:
    core = make_core(policy)
    assert core.start_action_run(GOAL, 0, 0.0)[1] == Outcome.NOT_ACTIVE
    core.set_active(True, 0.0)
    run, *_ = core.start_action_run(GOAL, 0, 0.0)
    assert core.cancel(run.run_id + 1).stop is False  # another run: ignored
    result = core.cancel(run.run_id)
    assert result.stop and run.outcome == Outcome.CANCELLED
    run, *_ = core.start_action_run(GOAL, 0, 0.1)
    _, _, result = core.set_goal(GOAL, 'topic', 0.2)
    assert result.stop and run.outcome == Outcome.STOPPED and 'preempted' in run.message
    assert core.run is not None and core.run.source == 'topic'
    topic_run = core.run
    _, result = core.set_active(False, 0.3)
    assert result.stop and topic_run.outcome == Outcome.STOPPED
    assert core.last_stop_reason == StopReason.DEACTIVATED


def test_rejected_goal_keeps_the_previous_one(policy) -> None:
    core = make_core(policy)
    core.set_goal(GOAL, 'topic', 0.0)
    ok, message, _ = core.set_goal(np.zeros((8, 8), np.uint8), 'topic', 0.1)
    assert not ok and 'rejected' in message
    assert core.goal is GOAL and core.goal_version == 1
    core.set_active(True, 0.0)
    feed(core, 0.2)
    assert core.step(0.2, on_timer=False).command is not None  # still acts on the old goal
    assert core.start_action_run(np.zeros((4, 4, 4), np.uint8), 0, 0.3)[1] \
        == Outcome.INVALID_GOAL


def test_capture_goal_uses_the_fresh_camera_image(policy) -> None:
    core = make_core(policy)
    assert core.capture_goal(0.0) == (False, 'no camera image received yet')
    feed(core, 0.0, xy=(0.2, 0.8))
    assert not core.capture_goal(1.0)[0]  # stale
    ok, _ = core.capture_goal(0.01)
    assert ok and core.goal_source == 'capture' and not core.goal_pending
    np.testing.assert_array_equal(core.goal, core.image)
    assert core.goal is not core.image


def test_use_actor_parameter_reaches_the_policy(tmp_path) -> None:
    '''A checkpoint with an actor head acts with it unless the node's use_actor is false.'''
    from am_learning.testing import train_tiny_checkpoint
    from am_policy_node.policy_node import load_policy

    checkpoint = train_tiny_checkpoint(
        tmp_path, image_size=32, updates=10,
        overrides={'network.actor_head': True, 'network.actor_trunk': True})
    for use_actor in (True, False):  # torch_threads as now: load_policy sets it process-wide
        config = PolicyNodeConfig().with_values(checkpoint=str(checkpoint), use_actor=use_actor,
                                                torch_threads=torch.get_num_threads())
        assert load_policy(config).has_actor == use_actor
