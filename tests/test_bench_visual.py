'''bench/visual.py and what it added: the reach operator, the policy's stop rule in
rollouts, am-train's time limit, and the report's figures from am-eval reports.'''

from pathlib import Path
import sys
import time

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))
import visual  # noqa: E402


def test_reach_operator_reaches_random_workspace_points_with_the_gripper_open():
    from am_learning.envs import ReachOperator, make_scene

    scene = make_scene('cube-single', render=False, seed=4)
    try:
        rng = np.random.default_rng(0)
        operator = ReachOperator('cube-single')
        operator.reset(rng)
        low, high = np.array(operator.config.bounds)
        targets, positions = [], []
        for _ in range(300):
            action = operator.act(scene.state(), rng)
            assert action.shape == (5,) and np.all(np.abs(action) <= 1.0)
            assert action[4] == -1.0  # open, as in the reach goals' images
            scene.step(action)
            positions.append(scene.ee_position())
            targets.append(operator.target_pos.copy())
        targets = np.unique(np.round(targets, 6), axis=0)
        assert np.all(targets >= low) and np.all(targets <= high)
        assert operator.reached_targets >= 4, operator.reached_targets
        # It travels across the box, not around one spot.
        spread = np.ptp(np.array(positions), axis=0)
        assert spread[0] > 0.1 and spread[1] > 0.2, spread
    finally:
        scene.close()


class ProportionalPolicy:
    '''A stand-in for GoalReachingPolicy in the point world: moves to the goal state, reports
    a Q that is high near it (or a fixed Q).'''

    uses_images = False

    def __init__(self, q: float | None = None) -> None:
        self.q = q
        self.goal = None

    def set_goal(self, goal: np.ndarray) -> None:
        self.goal = np.asarray(goal, dtype=np.float64)

    def act(self, observation: np.ndarray, proprio: np.ndarray):
        from am_learning.policy import PolicyStep

        error = self.goal - observation
        action = np.zeros(5, np.float32)
        action[:2] = np.clip(error / 0.06, -1, 1)
        q = self.q if self.q is not None else float(np.exp(-np.linalg.norm(error) / 0.02))
        return PolicyStep(action=action, q_value=q)


def test_rollout_stops_by_the_policys_rule_and_reports_end_touched_and_start():
    from am_learning.evaluate import StopRule, rollout
    from am_learning.testing import PointWorld

    world = PointWorld(16, seed=0)
    goal = world.load_reach_task(seed=1)
    start = world.goal_distance()
    r = rollout(ProportionalPolicy(), world, goal, task='reach', max_steps=60, stop='policy')
    assert r.end_reason == 'reached' and r.success and r.touched
    assert r.start_goal_distance == start and r.goal_distance < 0.02
    assert r.min_goal_distance <= r.goal_distance
    # A camera straight above a plane: the whole end error lies across its line of sight.
    assert r.error_along_view == 0.0 and r.error_across_view == r.goal_distance

    goal = world.load_reach_task(seed=2)
    r = rollout(ProportionalPolicy(q=0.0), world, goal, task='reach', max_steps=60,
                stop='policy', stop_rule=StopRule(q_floor_steps=5))
    assert r.end_reason == 'q_floor' and r.steps == 4 and not r.success

    goal = world.load_reach_task(seed=3)  # no Q (GCBC): only the time limit ends it
    r = rollout(ProportionalPolicy(q=float('nan')), world, goal, task='reach', max_steps=30,
                stop='policy')
    assert r.end_reason == 'time_limit' and r.steps == 30 and r.success and r.touched

    # The oracle stop ends at the first success: success and touched coincide.
    goal = world.load_reach_task(seed=4)
    r = rollout(ProportionalPolicy(q=0.5), world, goal, task='reach', max_steps=60)
    assert r.end_reason == 'success' and r.success and r.goal_distance < world.success_radius


def test_time_limit_stops_training_on_an_update_boundary(tmp_path):
    from am_learning.cli_train import train_with_limit
    from am_learning.testing import make_point_dataset, tiny_config
    from am_learning.train import Trainer

    dataset = make_point_dataset(10, 30, image_size=None, seed=0)
    trainer = Trainer(tiny_config('state', updates=10**6), dataset)
    start = time.monotonic()
    _, limited = train_with_limit(trainer, 1.0, progress=False)
    elapsed = time.monotonic() - start
    assert limited and 0 < trainer.step < 10**6
    assert 1.0 <= elapsed < 3.0
    assert trainer.update.__func__ is Trainer.update  # the wrapper is gone
    steps = trainer.step
    trainer.train(updates=steps + 3)
    assert trainer.step == steps + 3


def test_report_figures_from_eval_reports():
    def detail(final, closest, start, success, touched, reason):
        return {'task': 'reach', 'success': success, 'touched': touched, 'steps': 10,
                'goal_distance': final, 'min_goal_distance': closest,
                'start_goal_distance': start, 'end_reason': reason,
                'error_along_view': -0.6 * final if reason == 'q_floor' else 0.6 * final,
                'error_across_view': 0.8 * final}

    report = {'rollout_details': [detail(0.02, 0.01, 0.3, True, True, 'reached'),
                                  detail(0.10, 0.02, 0.2, False, True, 'time_limit'),
                                  detail(0.40, 0.15, 0.2, False, False, 'time_limit'),
                                  detail(0.05, 0.05, 0.1, False, False, 'q_floor')]}
    reach = visual.reach_figures(report)
    assert reach['success_pct'] == 25.0 and reach['touched_pct'] == 50.0
    assert reach['end_reasons'] == {'reached': 1, 'time_limit': 2, 'q_floor': 1}
    assert np.isclose(reach['final_cm_mean'], 14.25) and reach['closer_than_start_pct'] == 75.0
    assert np.isclose(reach['along_view_cm_mean'], 0.6 * (2 + 10 + 40 - 5) / 4)
    assert np.isclose(reach['along_view_abs_cm_mean'], 0.6 * 14.25)
    assert np.isclose(reach['across_view_cm_mean'], 0.8 * 14.25)
    for d in report['rollout_details']:  # reports from before the split have no such keys
        del d['error_along_view'], d['error_across_view']
    assert 'along_view_cm_mean' not in visual.reach_figures(report)
    per_run = {
        'am_s0': {'visual_reach': reach, 'visual_cube_single': {'success_pct': 60.0}},
        'am_s1': {'visual_reach': {**reach, 'success_pct': 75.0},
                  'visual_cube_single': {'success_pct': 40.0}},
        'gcbc_s0': {'visual_reach': reach, 'visual_cube_single': {'success_pct': 10.0}},
    }
    summary = visual.summarize(per_run)
    assert summary['success']['am'] == {'visual_reach': 50.0, 'visual_cube_single': 50.0}
    assert summary['success_std']['am']['visual_reach'] == 25.0
    assert summary['success_std']['gcbc']['visual_reach'] == 0.0
    assert summary['touched']['am']['visual_reach'] == 50.0
    assert np.isclose(summary['reach_distance']['am']['start_cm_mean'], 20.0)
    assert visual.verdicts(summary['success']) == {'visual_reach': 'missed',
                                                   'visual_cube_single': 'met'}
