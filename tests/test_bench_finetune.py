'''bench/finetune.py's helpers: the task operator reaches the task goal, the success check.'''

from pathlib import Path
import sys

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))
import finetune  # noqa: E402


def test_task_operator_carries_the_cube_to_the_task_goal():
    from am_learning.envs import make_scene

    scene = make_scene('cube-single', render=False, seed=3)
    try:
        scene.load_eval_task(1, seed=7)
        goal_pos, _ = finetune.goal_targets(scene.goal_state(), 1)
        # OGBench's task 1 of cube-single: the cube goes from (0.425, 0.1) to (0.425, -0.1).
        np.testing.assert_allclose(goal_pos[0], [0.425, -0.1, 0.02], atol=0.01)
        rng = np.random.default_rng(0)
        operator = finetune.make_task_operator('cube-single', scene.goal_state(), noise=0.1,
                                               wrong_target_prob=0.0)
        operator.reset(rng)
        for _ in range(200):
            scene.step(operator.act(scene.state(), rng))
            if scene.task_solved():
                break
        assert scene.task_solved(), f'not solved after {scene.steps} steps'
        assert scene.steps < 120  # one pick-and-place plan (about 65 steps)
    finally:
        scene.close()


class OperatorPolicy:
    '''A stand-in for GoalReachingPolicy: the task operator (or, without one, standing still).'''

    uses_images = False

    def __init__(self, operator=None) -> None:
        self.operator = operator
        self.rng = np.random.default_rng(0)

    def set_goal(self, goal: np.ndarray) -> None:
        if self.operator is not None:
            self.operator.reset(self.rng)

    def act(self, state: np.ndarray, proprio: np.ndarray):
        from am_learning.policy import PolicyStep

        if self.operator is None:
            return PolicyStep(action=np.zeros(5, np.float32), q_value=float('nan'))
        return PolicyStep(action=self.operator.act(state, self.rng), q_value=float('nan'))


def test_rollouts_report_how_far_they_got_with_the_cube():
    '''am-eval's cube stages, on the task operator (near, one grasp around the cube, lifted,
    placed) and on standing still (none of them; the cube stays where it started).'''
    from am_learning.envs import make_scene
    from am_learning.evaluate import CUBE_PLACED_M, cube_stages_pct, rollout

    scene = make_scene('cube-single', render=False, seed=3)
    try:
        scene.load_eval_task(1, seed=7)
        operator = finetune.make_task_operator('cube-single', scene.goal_state(), noise=0.1,
                                               wrong_target_prob=0.0)
        carried = rollout(OperatorPolicy(operator), scene, None, task='task1', max_steps=200)
        scene.load_eval_task(1, seed=7)
        start = scene.cube_positions()
        still = rollout(OperatorPolicy(), scene, None, task='task1', max_steps=20, stop='time')
    finally:
        scene.close()
    assert carried.success and carried.cubes_to_move == 1
    assert carried.cube_near and carried.cube_lifted
    assert carried.cube_goal_distance <= CUBE_PLACED_M
    assert not (still.success or still.cube_near or still.cube_lifted)
    assert still.cubes_to_move == 1
    np.testing.assert_allclose(still.cube_goal_distance,
                               np.linalg.norm(start[0] - [0.425, -0.1, 0.02]), atol=0.01)
    # The operator closes the gripper once, around the cube; standing still never does.
    assert carried.grasp_attempts == 1 and still.grasp_attempts == 0
    assert carried.grasp_offset_xy < 0.015 and abs(carried.grasp_offset_z) < 0.02
    assert carried.grasp_yaw_error_deg < 10  # the operator turns the gripper to the faces
    assert np.isnan(still.grasp_offset_xy) and np.isnan(still.grasp_yaw_error_deg)
    stages = cube_stages_pct([carried, still])
    assert {k: stages[k] for k in ('near', 'lifted', 'placed', 'attempted_grasp', 'rollouts')} \
        == {'near': 50.0, 'lifted': 50.0, 'placed': 50.0, 'attempted_grasp': 50.0, 'rollouts': 2}
    assert stages['first_grasp_offset_xy_m']['median'] == carried.grasp_offset_xy


def test_episode_noises_spread_the_range_in_a_seeded_order():
    a = finetune.episode_noises(5, 0.1, 0.5, seed=0)
    np.testing.assert_allclose(np.sort(a), [0.1, 0.2, 0.3, 0.4, 0.5])
    np.testing.assert_array_equal(a, finetune.episode_noises(5, 0.1, 0.5, seed=0))
    assert finetune.episode_noises(1, 0.1, 0.5, seed=0).tolist() == [0.1]


def test_manifest_success_checks_the_flags_against_the_recording():
    recorded = [{'episode_id': 'a', 'success': True}, {'episode_id': 'b', 'success': False}]
    manifest = {'episodes': [{'episode_id': 'a', 'success': True},
                             {'episode_id': 'b', 'success': False}]}
    assert finetune.manifest_success(manifest, recorded) == [True, False]
    manifest['episodes'][1]['success'] = True
    with pytest.raises(ValueError, match="'b'"):
        finetune.manifest_success(manifest, recorded)
    with pytest.raises(ValueError, match='1 episodes, 2 recorded'):
        finetune.manifest_success({'episodes': manifest['episodes'][:1]}, recorded)


def test_wilson_interval():
    lo, hi = finetune.wilson_interval(11, 30)
    assert (round(lo, 1), round(hi, 1)) == (21.9, 54.5)
    assert finetune.wilson_interval(0, 30)[0] == pytest.approx(0.0, abs=1e-9)
    assert finetune.wilson_interval(30, 30)[1] == pytest.approx(100.0)
    with pytest.raises(ValueError):
        finetune.wilson_interval(0, 0)
