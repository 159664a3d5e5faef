'''Throughput of the learning core: training updates per second, CEM acting latency.

    python bench/throughput.py [--quick]

Metrics (BENCHMARKS.md shape, written to bench/results/throughput.json and .md):
  updates_per_s_64px_b128   AM updates/s, 64x64 images, batch 128, default config
                            (channels_last + bf16 autocast, `sampled` TD max)
  updates_per_s_state_b256  AM updates/s, state vectors (D=28, cube-single's size), batch 256
  cem_act_p99_ms            GoalReachingPolicy.act on one 64x64 observation, trunk included
  dataset_build_fps         frames/s of the data helper's cache build from 640x480 bags
                            (measured by its bench function when it exists)
and, measured in the same run, the naive paths each optimisation replaces:
  *_naive_fp32              fp32, no channels_last (state networks always train in fp32)
  *_target_cem              the paper's CEM max in the TD target (32 x 2) instead of `sampled`
  *_width128                the state network at trunk_dim=128, hidden_dims=(128,)
  *_actor_trunk             with an actor on a trunk of its own (network.actor_head and
                            network.actor_trunk: what CEM's proposal costs to learn and run)
  cem_act_p99_ms_naive      the trunk recomputed for every CEM sample (full forward)
  cem_act_p99_ms_64x3       QT-Opt's narrower search (64 samples, 3 iterations)
and on a GPU (--device cuda) also:
  *_eager                   without the CUDA graph (TrainConfig.cuda_graphs=false)
  updates_per_s_state_b1024_ogbench[_eager[_fp32]]  OGBench's network size (4 x 512 with
                            LayerNorm) and batch (1024), with and without the graph and TF32
Run it alone: `flock /tmp/am-heavy.lock python bench/throughput.py` (and
`python bench/throughput.py --device cuda` where a GPU exists: results get a .cuda suffix).
'''

import argparse
from dataclasses import replace
import datetime
import json
from pathlib import Path
import sys
import time

from benchlib import git_commit, machine
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'src' / 'am_learning'))

from am_learning.cem import cem_maximize  # noqa: E402
from am_learning.checkpoint import load_checkpoint  # noqa: E402
from am_learning.config import NetworkConfig, TrainConfig  # noqa: E402
from am_learning.data.dataset import EpisodeDataset  # noqa: E402
from am_learning.policy import GoalReachingPolicy  # noqa: E402
from am_learning.train import GRAPH_WARMUP, Trainer, native_bf16  # noqa: E402


def synthetic_dataset(*, images: int | None, state_dim: int | None, frames: int = 4000,
                      episode_length: int = 200, seed: int = 0) -> EpisodeDataset:
    '''Random frames: the speed of an update does not depend on what the pixels show.'''
    rng = np.random.default_rng(seed)
    return EpisodeDataset(
        actions=rng.uniform(-1, 1, (frames, 5)).astype(np.float32),
        episode_ends=np.arange(episode_length, frames + 1, episode_length, dtype=np.int64),
        proprio=rng.normal(size=(frames, 7)).astype(np.float32),
        images=rng.integers(0, 256, (frames, images, images, 3), dtype=np.uint8)
        if images else None,
        states=rng.normal(size=(frames, state_dim)).astype(np.float32) if state_dim else None)


def updates_per_s(configs: dict[str, TrainConfig], dataset: EpisodeDataset, seconds: float,
                  rounds: int) -> dict[str, float]:
    '''Best-of-rounds updates/s of each config, the configs interleaved round by round.

    On a shared machine a co-tenant's burst slows whichever figure runs during it; the
    interleaving spreads that over all configs and the best round is the least disturbed.
    '''
    trainers = {name: Trainer(cfg, dataset) for name, cfg in configs.items()}
    for trainer in trainers.values():
        for _ in range(GRAPH_WARMUP + 2):  # warm-up: allocator, oneDNN kernels, CUDA graph
            trainer.update()
    best = dict.fromkeys(configs, 0.0)
    for _ in range(rounds):
        for name, trainer in trainers.items():
            synchronize(trainer.device)
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                trainer.update()
                n += 1
            synchronize(trainer.device)  # GPU updates are asynchronous: count finished ones
            best[name] = max(best[name], n / (time.perf_counter() - start))
    return best


QT_OPT_CEM = (64, 3)
'''QT-Opt's act search (samples, iterations), measured beside the default 256 x 4, which
lifted cube-single success on the GPU-trained checkpoints (bench/results/tuning.md).'''


def with_actor_trunk(config: TrainConfig) -> TrainConfig:
    '''The config with an actor head on a trunk of its own (CEM's learned proposal).'''
    return replace(config, network=replace(config.network, actor_head=True, actor_trunk=True))


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def act_latencies(policy: GoalReachingPolicy, calls: int, rng: np.random.Generator,
                  naive: bool) -> np.ndarray:
    obs = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    proprio = rng.normal(size=7).astype(np.float32)
    policy.set_goal(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    out = []
    for i in range(calls + 10):
        start = time.perf_counter()
        if naive:
            naive_act(policy, obs, proprio)
        else:
            policy.act(obs, proprio)
        if i >= 10:
            out.append((time.perf_counter() - start) * 1e3)
    return np.asarray(out)


@torch.no_grad()
def naive_act(policy: GoalReachingPolicy, obs: np.ndarray, proprio: np.ndarray) -> None:
    '''CEM where every sample runs the whole network (trunk included), as a reference.'''
    net = policy.network
    o = torch.from_numpy(obs).unsqueeze(0)
    p = torch.from_numpy(proprio).unsqueeze(0)
    goal = policy._goal

    def score(actions: torch.Tensor) -> torch.Tensor:  # (1, K, A)
        k = actions.shape[1]
        return net(o.expand(k, -1, -1, -1), goal.expand(k, -1, -1, -1), p.expand(k, -1),
                   actions[0]).unsqueeze(0)

    cem_maximize(score, 1, 5, policy.cem, policy.generator)


def dataset_build_fps() -> tuple[float | None, str]:
    '''The data helper's measurement, when its bench function exists.'''
    try:
        from am_learning.data import bench as data_bench  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, f'dataset_build_fps not measured: am_learning.data.bench ({exc})'
    fn = getattr(data_bench, 'dataset_build_fps', None)
    if fn is None:
        return None, 'dataset_build_fps: am_learning.data.bench has no dataset_build_fps()'
    return float(fn()), 'dataset_build_fps from am_learning.data.bench.dataset_build_fps()'




def _accelerator() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    return f'{gpu}, torch {torch.__version__}'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=3.0,
                        help='time per training measurement round')
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds (best kept)')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    parser.add_argument('--calls', type=int, default=500, help='act() calls for latency')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results'),
                        help='folder for throughput.json/.md')
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    metrics: dict[str, float] = {'torch_threads': torch.get_num_threads()}
    notes = []

    image_cfg = TrainConfig(network=NetworkConfig(observation='image', image_size=64),
                            batch_size=128, device=args.device)
    image_ds = synthetic_dataset(images=64, state_dim=None)
    r = updates_per_s({
        'fast': image_cfg,
        'naive': replace(image_cfg, channels_last=False, autocast_bf16=False),
        'cem': replace(image_cfg, target_max='cem'),
        'actor': with_actor_trunk(image_cfg),
    }, image_ds, args.seconds, args.rounds)
    metrics['updates_per_s_64px_b128'] = round(r['fast'], 2)
    metrics['updates_per_s_64px_b128_naive_fp32'] = round(r['naive'], 2)
    metrics['updates_per_s_64px_b128_target_cem'] = round(r['cem'], 2)
    metrics['updates_per_s_64px_b128_actor_trunk'] = round(r['actor'], 2)
    metrics['speedup_64px_bf16_channels_last'] = round(r['fast'] / r['naive'], 2)
    metrics['bf16_native'] = int(native_bf16(torch.device(args.device)))
    if not metrics['bf16_native']:
        notes.append('no native bf16 on this device: the default trains in fp32 here, so the '
                     'speedup is channels_last alone')
    print(f'64px b128: {r["fast"]:.1f} upd/s (fp32 naive {r["naive"]:.1f}, '
          f'target CEM {r["cem"]:.1f}, actor trunk {r["actor"]:.1f})')

    state_cfg = TrainConfig(network=NetworkConfig(observation='state', state_dim=28,
                                                  proprio_dim=0),
                            batch_size=256, device=args.device)
    state_ds = synthetic_dataset(images=None, state_dim=28)
    narrow = replace(state_cfg, network=replace(state_cfg.network, trunk_dim=128,
                                                hidden_dims=(128,)))
    r = updates_per_s({
        'fast': state_cfg,
        'cem': replace(state_cfg, target_max='cem'),
        'narrow': narrow,
        'actor': with_actor_trunk(state_cfg),
    }, state_ds, args.seconds, args.rounds)
    metrics['updates_per_s_state_b256'] = round(r['fast'], 2)
    metrics['updates_per_s_state_b256_target_cem'] = round(r['cem'], 2)
    metrics['updates_per_s_state_b256_width128'] = round(r['narrow'], 2)
    metrics['updates_per_s_state_b256_actor_trunk'] = round(r['actor'], 2)
    threads = torch.get_num_threads()
    if threads > 1:  # small MLPs: is one thread (no OpenMP hand-offs) faster?
        torch.set_num_threads(1)
        one = updates_per_s({'fast': state_cfg}, state_ds, args.seconds, args.rounds)['fast']
        torch.set_num_threads(threads)
        metrics['updates_per_s_state_b256_1_thread'] = round(one, 2)
    print(f'state b256: {r["fast"]:.1f} upd/s (target CEM {r["cem"]:.1f}, actor trunk '
          f'{r["actor"]:.1f})')
    if args.device != 'cpu':
        ogbench = replace(state_cfg, batch_size=1024, network=replace(
            state_cfg.network, trunk_dim=512, hidden_dims=(512, 512), layer_norm=True))
        r = updates_per_s({
            'state': replace(state_cfg, cuda_graphs=False),
            'graph': ogbench,
            'eager': replace(ogbench, cuda_graphs=False),
            'fp32': replace(ogbench, cuda_graphs=False, tf32=False),
        }, state_ds, args.seconds, args.rounds)
        metrics['updates_per_s_state_b256_eager'] = round(r['state'], 2)
        metrics['updates_per_s_state_b1024_ogbench'] = round(r['graph'], 2)
        metrics['updates_per_s_state_b1024_ogbench_eager'] = round(r['eager'], 2)
        metrics['updates_per_s_state_b1024_ogbench_eager_fp32'] = round(r['fp32'], 2)
        print(f'state b1024 4x512: {r["graph"]:.1f} upd/s with the CUDA graph, '
              f'{r["eager"]:.1f} without, {r["fp32"]:.1f} without TF32 either')

    # Acting: a freshly initialised default image network behind the real policy class.
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(replace(image_cfg, device='cpu'), image_ds)
        trainer.save(tmp)
        policy = GoalReachingPolicy(load_checkpoint(tmp), 'cpu')
        narrow = GoalReachingPolicy(load_checkpoint(tmp), 'cpu', cem_samples=QT_OPT_CEM[0],
                                    cem_iterations=QT_OPT_CEM[1])
        Trainer(with_actor_trunk(replace(image_cfg, device='cpu')), image_ds).save(tmp)
        actor = GoalReachingPolicy(load_checkpoint(tmp), 'cpu')
    rng = np.random.default_rng(0)
    lat = act_latencies(policy, args.calls, rng, naive=False)
    lat_narrow = act_latencies(narrow, args.calls, rng, naive=False)
    lat_naive = act_latencies(policy, max(50, args.calls // 5), rng, naive=True)
    lat_actor = act_latencies(actor, args.calls, rng, naive=False)
    metrics['cem_act_p50_ms'] = round(float(np.percentile(lat, 50)), 3)
    metrics['cem_act_p99_ms'] = round(float(np.percentile(lat, 99)), 3)
    metrics['cem_act_p99_ms_naive'] = round(float(np.percentile(lat_naive, 99)), 3)
    metrics['cem_act_speedup_trunk_once'] = round(
        metrics['cem_act_p99_ms_naive'] / metrics['cem_act_p99_ms'], 1)
    metrics[f'cem_act_p99_ms_{QT_OPT_CEM[0]}x{QT_OPT_CEM[1]}'] = round(
        float(np.percentile(lat_narrow, 99)), 3)
    metrics['cem_act_p99_ms_actor_trunk'] = round(float(np.percentile(lat_actor, 99)), 3)
    metrics['cem_samples'] = policy.cem.samples
    metrics['cem_iterations'] = policy.cem.iterations
    print(f'act: p50 {metrics["cem_act_p50_ms"]} ms, p99 {metrics["cem_act_p99_ms"]} ms '
          f'(naive p99 {metrics["cem_act_p99_ms_naive"]} ms)')

    fps, note = dataset_build_fps()
    if fps is not None:
        metrics['dataset_build_fps'] = round(fps, 1)
    notes.append(note)
    notes.append(f'best of {args.rounds} interleaved rounds of {args.seconds} s per training '
                 'figure (the machine is shared: single rounds varied 5x)')
    notes.append('synthetic random frames (speed does not depend on content); default '
                 'TrainConfig (conv 32-64-64, trunk 256, 4 negatives from 16 '
                 'candidates, 16 uniform + dataset action in the TD max; head: one hidden '
                 'layer of 256 over the split (feature, action) input); acting on the CPU '
                 f'(as the policy node does) with CEM {policy.cem.samples}x'
                 f'{policy.cem.iterations} in fp32; '
                 f'{torch.get_num_threads()} torch threads')

    commit = git_commit('src/am_learning', 'bench/throughput.py')
    result = {
        'benchmark': 'throughput',
        'command': 'python bench/throughput.py ' + ' '.join(
            argv if argv is not None else sys.argv[1:]),
        'date': datetime.date.today().isoformat(),
        'machine': machine(_accelerator()),
        'git_commit': commit,
        'metrics': metrics,
        'targets': {'updates_per_s_64px_b128': '>= 30', 'updates_per_s_state_b256': '>= 400',
                    'cem_act_p99_ms': '<= 2', 'dataset_build_fps': '>= 1000'},
        'notes': '; '.join(notes),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = '' if args.device == 'cpu' else f'.{args.device.split(":")[0]}'
    (out / f'throughput{suffix}.json').write_text(json.dumps(result, indent=2) + '\n')
    lines = [f'# throughput{suffix}', '', f'- command: `{result["command"]}`',
             f'- date: {result["date"]}', f'- machine: {result["machine"]}',
             f'- git_commit: {commit}', '', '| metric | value | target |', '|---|---|---|']
    for key, value in metrics.items():
        lines.append(f'| {key} | {value} | {result["targets"].get(key, "")} |')
    lines += ['', f'Notes: {result["notes"]}', '']
    (out / f'throughput{suffix}.md').write_text('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
