'''SimCore and TeleopCore without ROS: the logic the nodes delegate to.'''

import numpy as np
import pytest

from am_learning.conventions import ActionScale, twist_to_action
from am_sim.core import PERIOD_NS, CommandError, SimConfig, SimCore
from am_sim.teleop_core import TeleopConfig, TeleopCore


@pytest.fixture(scope='module')
def core():
    c = SimCore(SimConfig(image_size=32, seed=0, real_time_factor=0.0), start_ns=10**9)
    yield c
    c.scene.close()


def test_config_problems_are_explained():
    assert SimConfig().problems() == []
    bad = SimConfig(scene='kitchen', camera_rate_hz=7.0, real_time_factor=-1.0,
                    command_timeout_s=0.0, image_size=4, seed=-5).problems()
    text = ' '.join(bad)
    for word in ('scene', 'camera_rate_hz must divide', 'real_time_factor',
                 'command_timeout_s', 'image_size', 'seed'):
        assert word in text
    with pytest.raises(ValueError, match='camera_rate_hz'):
        SimCore(SimConfig(camera_rate_hz=30.0))


def test_twist_moves_and_stale_command_holds(core):
    core.reset(1)
    start = core.scene.ee_position().copy()
    t0 = core.sim_time_ns
    for _ in range(5):
        core.command_twist(np.array([0.5, 0.0, 0.0]), 0.0, 0)
        obs = core.step(0)
        assert obs.commanded
    assert obs.stamp_ns == t0 + 5 * PERIOD_NS  # simulation time
    assert core.counters['steps_new_command'] == 5
    moved = core.scene.ee_position() - start
    assert moved[0] > 0.04 and abs(moved[1]) < 0.01
    # No new command: after the timeout (0.1 s = 2 steps) the arm holds still.
    core.step(0)
    core.step(0)
    obs = core.step(0)
    assert not obs.commanded
    assert core.counters['steps_repeated_command'] == 2  # still fresh for 0.1 s
    assert core.counters['steps_held'] == 1
    assert core.counters['steps_late_command'] == 0  # the stream ended: not late
    # A late operator: one step repeats the old twist, then the new one comes.
    core.command_twist(np.zeros(3), 0.0, 0)
    core.step(0)
    core.step(0)
    core.command_twist(np.zeros(3), 0.0, 0)
    core.step(0)
    assert core.counters['steps_late_command'] == 1
    for _ in range(5):
        core.step(0)
    held = core.scene.ee_position().copy()
    for _ in range(10):
        core.step(0)
    assert np.linalg.norm(core.scene.ee_position() - held) < 0.005


def test_gripper_command_and_bad_commands(core):
    core.reset(2)
    core.command_gripper([1.0])
    for _ in range(15):
        core.step(0)
    assert core.scene.gripper_opening() > 0.6
    with pytest.raises(CommandError):
        core.command_gripper([])
    with pytest.raises(CommandError):
        core.command_twist(np.array([np.inf, 0, 0]), 0.0, 0)
    assert core.scene.gripper_opening() > 0.6  # nothing lost


def test_camera_rate_and_wall_clock():
    c = SimCore(SimConfig(image_size=16, camera_rate_hz=10.0, seed=0))
    frames = [c.step(wall_ns=5_000 + k).image is not None for k in range(6)]
    assert frames == [False, True, False, True, False, True]
    assert c.observe(123).stamp_ns == 123  # real_time_factor 1: the caller's clock
    c.scene.close()


def test_reconfigure_refuses_start_up_parameters(core):
    with pytest.raises(ValueError, match='cannot change'):
        core.reconfigure(SimConfig(scene='cube-double', image_size=32, seed=0))
    core.reconfigure(SimConfig(image_size=32, seed=0, real_time_factor=0.0,
                               command_timeout_s=0.2))
    assert core.config.command_timeout_s == 0.2


def test_teleop_core_answers_each_state_for_its_steps(core):
    t = TeleopCore(TeleopConfig(steps=3, seed=0))
    assert t.on_state(core.scene.state()) is None  # not started
    t.begin_episode()
    commands = [t.on_state(core.scene.state()) for _ in range(4)]
    assert all(c is not None for c in commands[:3]) and commands[3] is None
    for c in commands[:3]:
        # What the robot decodes from the twist and the closure is the operator's action.
        decoded = twist_to_action(c.linear, c.yaw_rate, c.closure, ActionScale())
        assert np.allclose(decoded, c.action, atol=1e-6)
    with pytest.raises(ValueError, match='drives'):
        TeleopCore(TeleopConfig(scene='cube-triple'))
