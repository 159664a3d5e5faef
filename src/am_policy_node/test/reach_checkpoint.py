'''Makes the reach checkpoint the simulated-arm test drives am_sim with (test asset recipe).

The tiny point-world checkpoint of the other tests cannot move a UR5e toward anything; the
sim test needs a model that learned arm reaching from the sim's own camera. The recipe is
the product's own pipeline, on the product's defaults unless given `--set`:

1. `make`: the scripted reach operator (am_learning.envs.ReachOperator: open gripper to
   random points of the box reach goals are drawn from, lingering at each) records
   episodes of am_sim's cube-single scene as rosbag2 bags (`am_sim.generate`), am-dataset
   builds the 64 px cache, am-train trains Actionable Models on it for a time budget, and
   the model (model.safetensors + checkpoint.json, no resume state) is copied to --out.
2. `check`: greedy rollouts of a checkpoint on reach goals of given seeds, as the sim test
   runs them (60 control steps, no stop rule): start and end distance to the goal. The
   test's seeds are ones the committed checkpoint solves here.

    python src/am_policy_node/test/reach_checkpoint.py make --work /tmp/reach \\
        --out src/am_policy_node/test/data/reach_64px --episodes 60 --minutes 10 \\
        --train-seed 1 --set gamma=0.95
    python src/am_policy_node/test/reach_checkpoint.py check \\
        src/am_policy_node/test/data/reach_64px --seeds 100-111

The committed checkpoint was made on 2 CPU cores with the same generate, build and train
commands as `make` runs (issued then by bench/visual.py's data stage, `--play-episodes 0
--reach-episodes 60 --steps 400`, and am-train by hand): 24,000 frames, 10 minutes of
training (train seed 1), after am_sim's shadow light was re-aimed (session 15).
test_sim_reach.py says what `check` printed.
'''

import argparse
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np

CONTROL_STEPS = 60  # 3 s at 20 Hz: what the sim test gives a goal


def _run(cmd: list[str]) -> None:
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def make(work: Path, out: Path, episodes: int, steps: int, minutes: float, seed: int,
         train_seed: int, overrides: list[str]) -> None:
    '''Record reach episodes as bags, build the cache, train AM, copy the model to `out`.'''
    py = sys.executable
    bags, cache, run = work / 'bags', work / 'cache', work / 'run'
    if not (cache / 'manifest.json').exists():
        shutil.rmtree(bags, ignore_errors=True)
        _run([py, '-m', 'am_sim.generate', '--scene', 'cube-single', '--operator', 'reach',
              '--label', 'reach', '--episodes', str(episodes), '--steps', str(steps),
              '--image-size', '64', '--workers', '2', '--seed', str(seed), '--out', str(bags)])
        _run([py, '-m', 'am_learning.cli_dataset', 'build', str(bags), '--out', str(cache),
              '--image-size', '64', '--workers', '2', '--no-progress'])
    train = [py, '-m', 'am_learning.cli_train', '--dataset', str(cache), '--run-dir', str(run),
             '--agent', 'am', '--seed', str(train_seed), '--updates', '10000000',
             '--time-limit-min', f'{minutes:g}', '--device', 'cpu', '--no-progress',
             '--set', 'num_threads=2']
    for item in overrides:
        train += ['--set', item]
    _run(train)
    out.mkdir(parents=True, exist_ok=True)
    for name in ('model.safetensors', 'checkpoint.json'):
        shutil.copy2(run / 'checkpoint' / name, out / name)
    print(f'model -> {out}')


def check(checkpoint: Path, seeds: list[int]) -> None:
    '''Start and end distance of greedy rollouts on the reach goals of `seeds`.'''
    from am_learning.envs import make_scene
    from am_learning.evaluate import rollout
    from am_learning.policy import GoalReachingPolicy

    policy = GoalReachingPolicy.from_checkpoint(checkpoint)
    scene = make_scene('cube-single', policy.image_size, seed=0)
    ratios = []
    for seed in seeds:
        goal = scene.load_reach_task(seed=seed)
        result = rollout(policy, scene, goal, task='reach', max_steps=CONTROL_STEPS,
                         stop='time')
        start, end = result.start_goal_distance, result.goal_distance
        ratios.append(end / start)
        print(f'seed {seed}: {start:.3f} -> {end:.3f} m ({end / start:.2f}x)', flush=True)
    print(f'below 0.6x on {sum(r < 0.6 for r in ratios)} of {len(ratios)}; '
          f'median ratio {np.median(ratios):.2f}')


def _seeds(text: str) -> list[int]:
    if '-' in text:
        lo, hi = (int(v) for v in text.split('-'))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(',')]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    m = sub.add_parser('make')
    m.add_argument('--work', type=Path, required=True, help='bags, cache and run go here')
    m.add_argument('--out', type=Path, required=True)
    m.add_argument('--episodes', type=int, default=60)
    m.add_argument('--steps', type=int, default=400)
    m.add_argument('--minutes', type=float, default=10.0, help='training time budget')
    m.add_argument('--seed', type=int, default=1, help='seed of the recorded episodes')
    m.add_argument('--train-seed', type=int, default=0)
    m.add_argument('--set', action='append', default=[], help='TrainConfig override')
    c = sub.add_parser('check')
    c.add_argument('checkpoint', type=Path)
    c.add_argument('--seeds', default='100-111', help='100-111 or 100,104')
    args = parser.parse_args()
    if args.cmd == 'make':
        make(args.work, args.out, args.episodes, args.steps, args.minutes, args.seed,
             args.train_seed, args.set)
    else:
        check(args.checkpoint, _seeds(args.seeds))


if __name__ == '__main__':
    main()
