'''Offline episode generator: the episodes sim_robot + scripted_teleop + recorder would
record, written without DDS.

    python -m am_sim.generate --scene cube-single --episodes 10 --steps 200 \\
        --image-size 64 --out data/play [--state-only] [--workers 2] [--seed 0] \\
        [--operator play|reach --label reach]

Each episode runs the same code as the live pipeline: `TeleopCore` answers each state with
a twist and a gripper closure, `SimCore` applies them for one control step, and the
messages are serialised with the recorder's typestore and written by its `EpisodeWriter`
(one rosbag2 bag per episode). Timing (API.md D): step k's observation topics are stamped
t0 + k/20 s and its command t0 + k/20 s + 1 ms; an episode of M steps holds observations
0..M (the last one shows the result of the last command) and commands 0..M-1.
'''

import argparse
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
import multiprocessing
import os
from pathlib import Path
import sys
import time

import numpy as np

from am_learning.envs.operator import OPERATED_SCENES
from am_sim.core import PERIOD_NS, SimConfig, SimCore
from am_sim.teleop_core import TeleopConfig, TeleopCore

COMMAND_DELAY_NS = 1_000_000
'''The operator answers an observation 1 ms later (API.md D).'''
EPISODE_GAP_NS = 10 * 1_000_000_000
'''Time between the starts of consecutive episodes beyond their own length.'''


@dataclass(frozen=True)
class GenerateConfig:
    '''What to generate (the command line's options).'''

    scene: str = 'cube-single'
    episodes: int = 10
    steps: int = 200
    image_size: int = 64
    out: str = 'episodes'
    state_only: bool = False
    workers: int = 1
    seed: int = 0
    label: str = 'play'
    operator: str = 'play'
    '''play (OGBench's pick-and-place oracle) or reach (gripper to random workspace points).'''
    start_ns: int = 1_700_000_000_000_000_000
    '''t0 of the first episode (stamps are simulated, deterministic for a seed).'''
    storage: str = 'mcap'


@dataclass(frozen=True)
class EpisodeSummary:
    path: str
    messages: int
    bytes: int
    transitions: int


def episode_id(config: GenerateConfig, index: int) -> str:
    return f'{config.label}_{config.scene}_s{config.seed}_{index:06d}'


def generate_episode(config: GenerateConfig, index: int, core: SimCore | None = None,
                     store=None) -> EpisodeSummary:
    '''Write episode `index` of the run (deterministic in config.seed and index).'''
    from am_dataset_recorder.episode_writer import EpisodeWriter, make_typestore
    from am_sim.bag_messages import TOPICS, BagMessages

    seeds = np.random.SeedSequence([config.seed, index]).generate_state(2)
    t0 = config.start_ns + index * (config.steps * PERIOD_NS + EPISODE_GAP_NS)
    if core is None:
        core = _make_core(config)
    core.sim_time_ns = t0
    core.reset(int(seeds[0]))
    teleop = TeleopCore(TeleopConfig(scene=config.scene, steps=config.steps,
                                     seed=int(seeds[1]), operator=config.operator))
    teleop.begin_episode()
    store = store or make_typestore()
    messages = BagMessages(store)
    topics = dict(TOPICS)
    if config.state_only:
        del topics['/camera/image_raw']
    writer = EpisodeWriter(Path(config.out), episode_id(config, index), topics,
                           label=config.label, start_ns=t0, storage=config.storage,
                           typestore=store)
    try:
        obs = core.observe(0, image=not config.state_only)
        for k in range(config.steps + 1):
            stamp = t0 + k * PERIOD_NS
            for topic, cdr in messages.observation(obs, stamp):
                writer.write(topic, stamp, cdr)
            command = teleop.on_state(obs.state)
            if command is None:  # the last observation: nothing answers it
                break
            for topic, cdr in messages.command(command.linear, command.yaw_rate,
                                               command.closure, stamp + COMMAND_DELAY_NS):
                writer.write(topic, stamp + COMMAND_DELAY_NS, cdr)
            core.command_twist(command.linear, command.yaw_rate, 0)
            core.command_gripper([command.closure])
            obs = core.step(0)
        path = writer.finish(False, t0 + config.steps * PERIOD_NS + 2 * COMMAND_DELAY_NS)
    except BaseException:
        writer.discard()
        raise
    counts = writer.messages_written
    return EpisodeSummary(str(path), sum(counts.values()), writer.bytes_written, config.steps)


def _make_core(config: GenerateConfig) -> SimCore:
    sim_config = SimConfig(scene=config.scene, image_size=config.image_size,
                           real_time_factor=0.0)  # simulation time: stamps from t0 on
    return SimCore(sim_config, camera=not config.state_only)


# --- worker processes: each holds one scene for all its episodes ----------------------------

_WORKER: dict = {}
'''Per process: the scene (by scene, image size, camera) and the typestore, made once.'''


def _worker_episode(config: GenerateConfig, index: int) -> EpisodeSummary:
    from am_dataset_recorder.episode_writer import make_typestore

    key = (config.scene, config.image_size, config.state_only)
    if _WORKER.get('key') != key:
        if 'core' in _WORKER:
            _WORKER['core'].scene.close()
        _WORKER.update(key=key, core=_make_core(config), store=make_typestore())
    return generate_episode(config, index, _WORKER['core'], _WORKER['store'])


def generate(config: GenerateConfig, progress: bool = True) -> list[EpisodeSummary]:
    '''Generate every episode, in `config.workers` processes; returns their summaries.'''
    from tqdm import tqdm

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    existing = [i for i in range(config.episodes) if (out / episode_id(config, i)).exists()]
    if existing:
        raise FileExistsError(f'{len(existing)} episode folder(s) exist already in {out} '
                              f'(e.g. {episode_id(config, existing[0])}); choose another --out '
                              'or --seed')
    bar = tqdm(total=config.episodes * config.steps, unit='step', disable=not progress,
               desc=f'{config.scene} {"state" if config.state_only else "visual"}')
    summaries = []
    try:
        if config.workers <= 1:
            for index in range(config.episodes):
                summaries.append(_worker_episode(config, index))
                bar.update(config.steps)
        else:
            context = multiprocessing.get_context('spawn')  # fresh GL context per worker
            with ProcessPoolExecutor(config.workers, mp_context=context) as pool:
                futures = [pool.submit(_worker_episode, config, i)
                           for i in range(config.episodes)]
                for future in as_completed(futures):
                    summaries.append(future.result())
                    bar.update(config.steps)
    finally:
        bar.close()
    return sorted(summaries, key=lambda s: s.path)


def parse_args(argv: list[str] | None = None) -> GenerateConfig:
    p = argparse.ArgumentParser(prog='python -m am_sim.generate', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = GenerateConfig()
    p.add_argument('--scene', default=d.scene, choices=sorted(OPERATED_SCENES),
                   help='scene (the ones the scripted play operator drives)')
    p.add_argument('--episodes', type=int, default=d.episodes, help='episodes to write')
    p.add_argument('--steps', type=int, default=d.steps, help='control steps per episode')
    p.add_argument('--image-size', type=int, default=d.image_size, help='camera pixels')
    p.add_argument('--out', required=True, help='folder for the episode bags')
    p.add_argument('--state-only', action='store_true', help='no camera images')
    p.add_argument('--workers', type=int, default=d.workers, help='processes')
    p.add_argument('--seed', type=int, default=d.seed, help='seed of the whole run')
    p.add_argument('--label', default=d.label, help='task label of the episodes')
    p.add_argument('--operator', default=d.operator, choices=['play', 'reach'],
                   help="scripted operator: OGBench's play oracle, or reaching random "
                        'workspace points with the open gripper')
    p.add_argument('--storage', default=d.storage, choices=['mcap', 'sqlite3'])
    a = p.parse_args(argv)
    for name in ('episodes', 'steps', 'workers'):
        if getattr(a, name) < 1:
            p.error(f'--{name} must be >= 1')
    if not 8 <= a.image_size <= 1024:
        p.error('--image-size must be in [8, 1024]')
    if a.seed < 0:
        p.error('--seed must be >= 0')
    return GenerateConfig(scene=a.scene, episodes=a.episodes, steps=a.steps,
                          image_size=a.image_size, out=a.out, state_only=a.state_only,
                          workers=a.workers, seed=a.seed, label=a.label, storage=a.storage,
                          operator=a.operator)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    os.environ.setdefault('MUJOCO_GL', 'egl')
    t = time.perf_counter()
    try:
        summaries = generate(config)
    except (FileExistsError, OSError, ValueError) as exc:
        print(f'generate: error: {exc}', file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - t
    transitions = sum(s.transitions for s in summaries)
    mb = sum(s.bytes for s in summaries) / 1e6
    print(f'{len(summaries)} episodes, {transitions} transitions, {mb:.1f} MB in '
          f'{elapsed:.1f} s ({transitions / elapsed:.0f} transitions/s) -> {config.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
