'''bench/ogbench_state.py: which checkpoints of a run are evaluated and reported, on a real
run folder (tiny point-world training, snapshotted and resumed as the bench's train stage
and bench/gpu_ogbench_state.sh leave it).'''

from pathlib import Path
import shutil
import sys

import pytest

from am_learning.testing import make_point_dataset, tiny_config
from am_learning.train import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))
import ogbench_state  # noqa: E402


def test_checkpoints_are_read_from_the_run_not_the_arguments(tmp_path: Path) -> None:
    dataset = make_point_dataset(10, 20, image_size=None, seed=0)
    run = tmp_path / 'am_s0'
    trainer = Trainer(tiny_config('state', updates=20), dataset, run_dir=run)
    trainer.train(20)
    trainer.save()
    shutil.copytree(run / 'checkpoint', run / 'curve' / '20')
    trainer.train(35)  # a time limit stopped it at 35, not at a round figure
    trainer.save()
    shutil.copytree(run / 'checkpoint', run / 'curve' / '40')  # the final model, once
    (run / 'curve' / 'not_a_checkpoint').mkdir()

    points = ogbench_state.checkpoints(run)

    assert points == [(20, run / 'curve' / '20'), (35, run / 'checkpoint')]


def test_seeds_stopped_at_different_updates_are_averaged_snapshot_by_snapshot() -> None:
    timed = [{40000: 4.0, 84477: 5.0, 128863: 5.0}, {40000: 5.0, 83893: 12.0, 128303: 17.0}]
    assert ogbench_state.mean_curve(timed) == {'40000': 4.5, '84000': 8.5, '129000': 11.0}
    exact = [{6500: 0.0, 13000: 2.0}, {6500: 2.0, 13000: 4.0}]
    assert ogbench_state.mean_curve(exact) == {'6500': 1.0, '13000': 3.0}
    ragged = [{10: 1.0, 20: 3.0}, {20: 5.0}]
    assert ogbench_state.mean_curve(ragged) == {'20': 4.0}


def test_a_finished_run_is_taken_further_and_keeps_its_last_model_as_a_curve_point(
        tmp_path: Path) -> None:
    dataset = make_point_dataset(10, 20, image_size=None, seed=0)
    run = tmp_path / 'am_s0'
    trainer = Trainer(tiny_config('state', updates=20), dataset, run_dir=run)
    trainer.train(20)
    trainer.save()
    (run / 'done').write_text('12.5\n')
    (run / 'eval').mkdir()
    (run / 'eval' / 'eval.json').write_text('{"success_pct": {"eval_tasks": 5.0}}')
    (run / 'eval_20.log').write_text('evaluated\n')

    assert ogbench_state.resume_point(run, 20, timed=False) == (None, 0.0)  # nothing to add
    assert ogbench_state.resume_point(run, 40, timed=True) == (None, 0.0)  # time ended it
    assert (run / 'done').exists() and not (run / 'curve').exists()
    (run / 'done').write_text('finished\n')  # not the seconds it trained: named, untouched
    with pytest.raises(SystemExit, match='done.*delete the file'):
        ogbench_state.resume_point(run, 40, timed=False)
    assert not (run / 'curve').exists() and (run / 'eval').exists()
    (run / 'done').write_text('12.5\n')

    assert ogbench_state.resume_point(run, 40, timed=False) == (20, 12.5)
    snapshot = run / 'curve' / '20'
    assert (snapshot / 'model.safetensors').exists()
    assert (snapshot / 'eval' / 'eval.json').exists() and (snapshot / 'eval_20.log').exists()
    assert not (run / 'eval').exists() and not (run / 'done').exists()
    assert ogbench_state.resume_point(run, 40, timed=False) == (20, 0.0)  # unfinished now

    resumed = Trainer(tiny_config('state', updates=40), dataset, run_dir=run)
    resumed.train(40)
    resumed.save()
    assert ogbench_state.checkpoints(run) == [(20, snapshot), (40, run / 'checkpoint')]


def test_a_run_without_a_model_starts_from_nothing(tmp_path: Path) -> None:
    run = tmp_path / 'am_s0'
    assert ogbench_state.resume_point(run, 40, timed=False) == (0, 0.0)
