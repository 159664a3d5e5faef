'''bench/paired_acting.py on a real, tiny checkpoint with an actor head: the same starts
acted on with and without the actor, compared start by start.'''

import json
from pathlib import Path
import sys

import pytest

from am_learning.testing import train_tiny_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))
import paired_acting  # noqa: E402


def test_mcnemar_counts_the_starts_only_one_arm_solved() -> None:
    a = [True, True, False, True, False]
    b = [False, True, True, False, False]
    assert paired_acting.mcnemar(a, b) == {'won': 2, 'lost': 1, 'z': round(1 / 3 ** 0.5, 2)}
    assert paired_acting.mcnemar([True], [True]) == {'won': 0, 'lost': 0, 'z': 0.0}
    with pytest.raises(ValueError, match='unpaired'):
        paired_acting.mcnemar([True], [True, False])


def test_two_arms_on_the_same_starts_are_paired_and_reused(tmp_path) -> None:
    checkpoint = train_tiny_checkpoint(
        tmp_path / 'run' / 'checkpoint', image_size=32, updates=30,
        overrides={'network.actor_head': True, 'network.actor_trunk': True})
    work, results = tmp_path / 'work', tmp_path / 'results'
    argv = [str(checkpoint), '--scene', 'point-world', '--reach', '3', '--a-name', 'actor',
            '--b-name', 'no_actor', '--b-args=--no-actor', '--jobs', '2', '--work', str(work),
            '--results-dir', str(results), '--name', 'paired']
    paired_acting.main([*argv, '--seeds', '1,2'])
    result = json.loads((results / 'paired.json').read_text())
    m = result['metrics']
    assert m['rollouts'] == 6 and len(m['cells']) == 2
    assert {c['seed'] for c in m['cells']} == {1, 2} and m['cells'][0]['run'] == 'run'
    assert m['paired']['won'] + m['paired']['lost'] <= 6
    assert m['successes']['actor'] == sum(c['actor'] for c in m['cells'])
    assert m['success']['no_actor']['point_world'] == pytest.approx(
        100 * m['successes']['no_actor'] / 6, abs=0.01)
    # Each arm acted as told: the b arm's evaluations ran without the actor.
    for seed in (1, 2):
        for arm, proposal in (('actor', True), ('no_actor', False)):
            report = json.loads((work / f'run_{seed}_{arm}' / 'eval.json').read_text())
            assert report['cem']['actor_proposal'] is proposal
    assert '| run | 30 | 1 | 3 |' in (results / 'paired.md').read_text()
    # Run again with one more seed: the four evaluations already done are reused.
    done = {p: p.stat().st_mtime_ns for p in work.glob('*/eval.json')}
    paired_acting.main([*argv, '--seeds', '1,2,3'])
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())
    assert json.loads((results / 'paired.json').read_text())['metrics']['rollouts'] == 9


def test_arms_that_rolled_out_different_tasks_are_refused() -> None:
    a = {'rollout_details': [{'task': 'reach', 'success': True}]}
    b = {'rollout_details': [{'task': 'task1', 'success': True}]}
    with pytest.raises(ValueError, match='same tasks'):
        paired_acting.pair(a, b)


def test_checkpoints_are_named_by_their_run() -> None:
    assert paired_acting.label(Path('/w/runs/am_s2/checkpoint')) == 'am_s2'
    assert paired_acting.label(Path('/w/runs/am_s2/curve/50000')) == 'am_s2_50000'
    assert paired_acting.label(Path('/w/ckpt')) == 'ckpt'
    with pytest.raises(SystemExit):  # two runs' folders called alike: refused
        paired_acting.main(['/', '/', '--work', '/tmp/unused'])


@pytest.mark.parametrize('extra, message', [
    (['--a-name', 'x', '--b-name', 'x'], 'must differ'),
    (['--rollouts', '0'], 'must be >= 1'),
])
def test_bad_arguments_are_refused_before_anything_runs(tmp_path, capsys, extra, message):
    work = tmp_path / 'work'
    with pytest.raises(SystemExit):
        paired_acting.main([str(tmp_path), '--work', str(work), *extra])
    assert message in capsys.readouterr().err and not work.exists()


def test_a_missing_checkpoint_is_named(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        paired_acting.main([str(tmp_path / 'nope'), '--work', str(tmp_path / 'work')])
    assert 'no such checkpoint' in capsys.readouterr().err
