'''goal_trials: the scoring of a trial, and refusal of bad parameters.'''

import math

from am_testing.fixtures import wait_for
import numpy as np
import pytest

from am_sim.goal_trials import TrialResult, TrialsConfig, TrialTracker, summarize


def test_reach_trial_scores_the_end_and_the_closest_approach():
    tracker = TrialTracker(goal_position=np.array([0.5, 0.0, 0.2]))
    for x in (0.3, 0.49, 0.45):  # passes within 1 cm, ends 5 cm away
        tracker.on_ee(np.array([x, 0.0, 0.2]))
    success, touched, final, closest = tracker.summary('reach', 0.03)
    assert (success, touched) == (False, True)
    assert final == pytest.approx(0.05) and closest == pytest.approx(0.01)
    assert tracker.path_length() == pytest.approx(0.19 + 0.04)


def test_eval_trial_uses_the_simulators_success_and_no_data_is_nan():
    tracker = TrialTracker()
    tracker.on_status(True)
    success, touched, final, closest = tracker.summary('eval', 0.03)
    assert success and touched and math.isnan(final) and math.isnan(closest)
    assert tracker.path_length() == 0.0


def test_summary_rates_in_percent():
    def result(success: bool, touched: bool, final: float) -> TrialResult:
        return TrialResult(0, 'reach', success, touched, final, final, 0.5, 'timeout', 200,
                           0.1, 10.0)

    summary = summarize([result(True, True, 0.02), result(False, True, 0.1),
                         result(False, False, 0.3), result(False, False, 0.4)])
    assert summary['success_pct'] == 25.0 and summary['touched_pct'] == 50.0
    assert summary['mean_final_distance_m'] == pytest.approx(0.205)


def test_config_problems_name_each_bad_value():
    problems = TrialsConfig(trials=0, kind='jump', timeout_s=0.0).problems()
    assert len(problems) == 3
    assert any('kind must be reach or eval' in p for p in problems)


@pytest.mark.ros
def test_node_refuses_bad_parameters_with_a_clear_exit(start_node):
    node = start_node('am_sim', 'goal_trials', params={'trials': 0, 'kind': 'jump'})
    assert wait_for(lambda: not node.alive(), timeout=20.0)
    assert node.popen.returncode == 2
    assert 'trials must be >= 1' in node.log() and 'kind must be reach or eval' in node.log()
