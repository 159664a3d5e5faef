'''Makes the reach checkpoint the simulated-arm test drives am_sim with (test asset recipe).

The tiny point-world checkpoint of the other tests cannot move a UR5e toward anything; the
sim test needs a model that learned arm reaching from the sim's own camera. Recipe:

1. `generate`: episodes of an operator reaching for random targets in am_sim's cube-single
   scene (gripper open): each episode visits a few targets drawn where the scene draws
   reach goals, moving with a proportional controller plus smoothed noise. Hindsight
   relabeling turns every later frame of an episode into a reaching goal.
2. `train`: Actionable Models on them (am_learning's Trainer, default network, 64 px).

    python src/am_policy_node/test/reach_checkpoint.py generate --out /tmp/reach.npz
    python src/am_policy_node/test/reach_checkpoint.py train --data /tmp/reach.npz \\
        --out src/am_policy_node/test/data/reach_64px --max-seconds 400 --device cuda

The committed checkpoint (test/data/reach_64px: model.safetensors + checkpoint.json) was
made this way: 15000 frames (150 episodes x 100 steps, 90 s on 2 cores), then 37000
updates in 400 s on an H100 (the time budget ended it; a 32 px model trained the same way
on random-walk data did not learn to reach).
'''

import argparse
from dataclasses import replace
from pathlib import Path
import time

import numpy as np


def generate(out: Path, episodes: int, steps: int, image_size: int, seed: int) -> None:
    '''Random-walk reaching episodes of the simulated arm -> an .npz of EpisodeDataset arrays.'''
    from am_learning.envs import make_scene

    scene = make_scene('cube-single', image_size, seed=seed)
    rng = np.random.default_rng(seed)
    low, high = np.array([0.25, -0.35, 0.20]), np.array([0.6, 0.35, 0.35])  # reach goals
    images, proprio, actions, ends = [], [], [], []
    start = time.perf_counter()
    for _ in range(episodes):
        scene.reset(seed=int(rng.integers(2**31)))
        noise = np.zeros(5)
        target, yaw_rate, left = None, 0.0, 0
        for _ in range(steps):
            if left <= 0:  # next target, reached or not
                target = rng.uniform(low, high)
                yaw_rate = rng.uniform(-0.5, 0.5)
                left = int(rng.integers(15, 35))
            left -= 1
            noise = 0.7 * noise + 0.3 * rng.normal(size=5)  # smoothed, like play noise
            a = np.zeros(5)
            a[:3] = np.clip((target - scene.ee_position()) / 0.05, -1.0, 1.0)
            a[3] = yaw_rate
            a = np.clip(a + noise, -1.0, 1.0)
            a[4] = -1.0  # gripper open throughout, as in the reach task's goal images
            images.append(scene.render())
            proprio.append(scene.proprio())
            actions.append(a.astype(np.float32))
            scene.step(a)
        ends.append(len(actions))
    np.savez_compressed(out, images=np.stack(images), proprio=np.stack(proprio).astype(np.float32),
             actions=np.stack(actions), episode_ends=np.asarray(ends, np.int64))
    print(f'{len(actions)} frames in {time.perf_counter() - start:.0f} s -> {out}')


def train(data: Path, out: Path, updates: int, device: str, seed: int,
          max_seconds: float = 0.0) -> None:
    '''AM on the generated episodes; writes model.safetensors + checkpoint.json to `out`.'''
    from am_learning.config import NetworkConfig, TrainConfig
    from am_learning.data.dataset import EpisodeDataset
    from am_learning.train import Trainer

    arrays = np.load(data)
    dataset = EpisodeDataset(
        actions=arrays['actions'], episode_ends=arrays['episode_ends'],
        proprio=arrays['proprio'], images=arrays['images'],
        manifest={'source': 'am_policy_node/test/reach_checkpoint.py', 'scene': 'cube-single',
                  'episodes': [{'success': False}] * len(arrays['episode_ends'])})
    image_size = int(arrays['images'].shape[1])
    base = TrainConfig()
    config = replace(base, network=NetworkConfig(image_size=image_size), updates=updates,
                     batch_size=256, lr=3e-4, log_interval=max(1, updates // 10),
                     checkpoint_interval=updates, device=device, seed=seed)
    trainer = Trainer(config, dataset)
    start = time.perf_counter()
    row: dict = {}
    while trainer.step < updates:  # in chunks, so a time budget can end it early
        row = trainer.train(min(updates, trainer.step + 500)) or row
        elapsed = time.perf_counter() - start
        print(f'{trainer.step} updates, {elapsed:.0f} s', flush=True)
        if max_seconds and elapsed > max_seconds:
            break
    print(f'{trainer.step} updates in {time.perf_counter() - start:.0f} s; last row: {row}')
    folder = trainer.save(out)
    for name in ('trainer.safetensors', 'trainer.json'):  # resume state: not needed to act
        (folder / name).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    g = sub.add_parser('generate')
    g.add_argument('--out', type=Path, required=True)
    g.add_argument('--episodes', type=int, default=150)
    g.add_argument('--steps', type=int, default=100)
    g.add_argument('--image-size', type=int, default=64)
    g.add_argument('--seed', type=int, default=1)
    t = sub.add_parser('train')
    t.add_argument('--data', type=Path, required=True)
    t.add_argument('--out', type=Path, required=True)
    t.add_argument('--updates', type=int, default=40000)
    t.add_argument('--device', default='cpu')
    t.add_argument('--seed', type=int, default=0)
    t.add_argument('--max-seconds', type=float, default=0.0,
                   help='stop (and save) after this long; 0: no limit')
    args = parser.parse_args()
    if args.cmd == 'generate':
        generate(args.out, args.episodes, args.steps, args.image_size, args.seed)
    else:
        train(args.data, args.out, args.updates, args.device, args.seed, args.max_seconds)


if __name__ == '__main__':
    main()
