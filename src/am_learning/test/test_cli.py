'''am-train and am-eval end to end: run folders, resuming, bags in, rollouts in the scene.'''

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from am_learning import cli_eval, cli_train
from am_learning.testing import train_tiny_checkpoint

SMALL = ['--set', 'num_threads=1', '--set', 'network.trunk_dim=32',
         '--set', 'network.hidden_dims=[32]', '--no-progress']


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_am_train_writes_a_run_folder_and_resumes(tmp_path: Path, capsys) -> None:
    run = tmp_path / 'run'
    args = ['--synthetic', 'point-world', '--observation', 'state', '--run-dir', str(run),
            '--set', 'log_interval=20', '--set', 'batch_size=32', *SMALL]
    assert cli_train.main([*args, '--updates', '40']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['step'] == 40
    for name in ('config.json', 'metrics.csv', 'plots.png', 'checkpoint/model.safetensors',
                 'checkpoint/checkpoint.json', 'checkpoint/trainer.safetensors'):
        assert (run / name).is_file(), name
    first = rows(run / 'metrics.csv')
    assert [r['step'] for r in first] == ['20', '40']
    for key in ('diag/q_data_action', 'diag/q_random_action', 'diag/q_offset_1',
                'diag/q_offset_20', 'diag/q_random_goal', 'critic/positive_fraction',
                'critic/target_mean'):
        assert 0.0 <= float(first[-1][key]) <= 1.0, key
    assert json.loads((run / 'config.json').read_text())['network']['trunk_dim'] == 32
    # The same command with more updates continues from update 40.
    assert cli_train.main([*args, '--updates', '60']) == 0
    assert json.loads(capsys.readouterr().out)['step'] == 60
    assert [r['step'] for r in rows(run / 'metrics.csv')] == ['20', '40', '60']
    # The acting search may change (training never uses it; runs from before the 256 x 4
    # default resume); a different config in the same folder is refused, naming the field.
    assert cli_train.main([*args, '--updates', '70', '--set', 'act_cem.samples=32']) == 0
    assert json.loads((run / 'config.json').read_text())['act_cem']['samples'] == 32
    capsys.readouterr()
    assert cli_train.main([*args, '--updates', '80', '--set', 'lr=0.01']) == 2
    assert 'lr' in capsys.readouterr().err


def test_am_train_rejects_bad_flags(tmp_path: Path, capsys) -> None:
    base = ['--synthetic', 'point-world', '--run-dir', str(tmp_path / 'r'), '--no-progress']
    assert cli_train.main([*base, '--set', 'relabel.num_negativs=3']) == 2
    assert 'num_negativs' in capsys.readouterr().err
    assert cli_train.main([*base, '--set', 'gamma=1.5']) == 2
    assert 'gamma' in capsys.readouterr().err
    cfg = tmp_path / 'cfg.yaml'
    cfg.write_text('agent: sac\n')
    assert cli_train.main([*base, '--config', str(cfg)]) == 2
    assert 'sac' in capsys.readouterr().err


def test_am_train_from_bags(tmp_path: Path, capsys) -> None:
    '''Bags written as a recording would be -> cache -> a trained image checkpoint.'''
    synthetic = pytest.importorskip('am_learning.data.synthetic')
    bags = tmp_path / 'bags'
    synthetic.write_synthetic_bag(bags / 'ep0', [synthetic.EpisodeSpec(frames=25),
                                                 synthetic.EpisodeSpec(frames=20)])
    run = tmp_path / 'run'
    assert cli_train.main([
        '--bags', str(bags), '--cache', str(tmp_path / 'cache'), '--run-dir', str(run),
        '--updates', '6', '--set', 'log_interval=3', '--set', 'batch_size=8',
        '--set', 'network.image_size=32', '--set', 'network.conv_channels=[8,16]',
        *SMALL]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['step'] == 6
    meta = json.loads((run / 'checkpoint' / 'checkpoint.json').read_text())
    assert meta['dataset_manifest'], 'the dataset manifest travels with the checkpoint'
    assert 'ep0' in json.dumps(meta['dataset_manifest'])


@pytest.fixture(scope='module')
def tiny(tmp_path_factory) -> Path:
    return train_tiny_checkpoint(tmp_path_factory.mktemp('tiny') / 'ckpt', updates=100)


def test_am_eval_point_world(tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / 'eval'
    assert cli_eval.main([str(tiny), '--scene', 'point-world', '--tasks', 'none',
                          '--reach', '3', '--max-steps', '10', '--out', str(out),
                          '--filmstrips', '2', '--no-cem-warm-start', '--no-progress']) == 0
    summary = json.loads(capsys.readouterr().out)
    report = json.loads((out / 'eval.json').read_text())
    assert report['cem']['warm_start'] is False  # the default acts warm
    assert report['cem']['actor_proposal'] is False  # no actor head by default
    assert report['rollouts'] == 3 and len(report['rollout_details']) == 3
    solved = [r['success'] for r in report['rollout_details']]
    assert summary['success_pct']['reach'] == pytest.approx(100 * np.mean(solved))
    assert (out / 'filmstrip.png').stat().st_size > 1000


def test_am_eval_in_the_simulated_scene(tiny: Path, tmp_path: Path, capsys) -> None:
    '''The benchmark's evaluation task and a reach task, in the scene am_sim uses.'''
    pytest.importorskip('am_learning.envs')
    import cv2

    out = tmp_path / 'eval'
    assert cli_eval.main([str(tiny), '--scene', 'cube-single', '--tasks', '2', '--reach', '1',
                          '--max-steps', '4', '--out', str(out), '--no-progress']) == 0
    report = json.loads((out / 'eval.json').read_text())
    assert set(report['per_task']) == {'task2', 'reach'}
    assert all(r['steps'] <= 4 for r in report['rollout_details'])
    cube, reach = report['rollout_details']  # task 2 moves the cube; a reach task moves none
    assert (cube['cubes_to_move'], reach['cubes_to_move']) == (1, 0)
    assert cube['cube_goal_distance'] > 0.04 and report['cube_stages_pct']['rollouts'] == 1
    strip = cv2.imread(str(out / 'filmstrip.png'))
    assert strip.shape[0] >= 2 * 96  # one row per rollout, goal image first
    capsys.readouterr()
    assert cli_eval.main([str(tiny), '--scene', 'cube-single', '--tasks', '9',
                          '--out', str(out), '--no-progress']) == 2
    assert 'outside 1..5' in capsys.readouterr().err


def test_am_eval_refuses_a_missing_checkpoint(tmp_path: Path, capsys) -> None:
    assert cli_eval.main([str(tmp_path / 'none'), '--no-progress']) == 2
    assert 'no such checkpoint' in capsys.readouterr().err
