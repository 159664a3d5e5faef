'''bench/ogbench_state.py: which checkpoints of a run are evaluated and reported, on a real
run folder (tiny point-world training, snapshotted and resumed as the bench's train stage
and bench/gpu_ogbench_state.sh leave it).'''

from pathlib import Path
import shutil
import sys

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
