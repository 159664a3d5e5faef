'''Benchmark `finetune`: a small task-reward dataset, with and without AM pre-training.

    python bench/finetune.py --scene cube-single --task 1 --task-episodes 50 \
        --pretrained /path/to/am/checkpoint --updates 20000 --seeds 0,1,2 --rollouts 50

The slides' Table 1 pattern (real-robot instance grasping: 0-4% without pre-training, 20-27%
after AM pre-training and fine-tuning on the task reward), on one OGBench evaluation task.
Three agents learn the task Q-function Q_task(s, a) = Q(s, a, g_task) (g_task: the fixed
all-zero goal, losses.task_loss) from the same ~50 task episodes:
  finetuned  initialised from an AM checkpoint pre-trained on play data (finetune_from),
             task loss only (task_weight=1, aux_weight=0);
(the task loss keeps AM's conservative negative-action term, as every Q target of (1));
  scratch    the same from random weights;
  auxiliary  from random weights, task loss + AM's goal-reaching loss on the task episodes
             (task_weight=1, aux_weight=1: the slides' joint objective).

Stages (each skipped when its output exists, so a run can be continued):
  data      the play cache for pre-training (reused with --play-cache, else am_sim.generate
            + am-dataset as in ogbench_state); the task episodes: each starts from the
            evaluation task's initial state (OGBench's task reset, its own small noise) and
            OGBench's cube plan oracle is steered to the task goal (TaskOperator) with noise
            drawn per episode, so that some episodes succeed and some fail; an episode ends
            on OGBench's success or after --max-steps. They are written as rosbag2 bags by
            the recorder's EpisodeWriter (success flag in the bag's stop event and metadata,
            as `stop_episode(task_success)` does) and am-dataset builds a state cache whose
            manifest['episodes'][k]['success'] carries it (checked);
  pretrain  am-train agent am on the play cache, unless --pretrained names a checkpoint;
  train     am-train per agent and seed on the task cache (network shape copied from the
            pre-trained checkpoint so that all three agents share it);
  eval      greedy CEM rollouts of each agent on the task from OGBench's task starts, goal
            fixed to zeros (FixedGoalPolicy over am_learning.evaluate.evaluate), success =
            the scene's own task success test; also the pre-trained checkpoint as a plain
            goal-reaching policy given the task's goal state (reference);
  report    bench/results/finetune.{json,md,png}.
'''

import argparse
import csv
import datetime
import json
import os
from pathlib import Path
import shlex
import sys
import time
from typing import Any

from benchlib import OGBENCH_MAX_STEPS, git_commit, machine, run, state_training_args
import numpy as np

REPO = Path(__file__).resolve().parents[1]
NAME = 'finetune'
AGENTS = {
    'finetuned': {'task_weight': 1.0, 'aux_weight': 0.0, 'pretrained': True},
    'scratch': {'task_weight': 1.0, 'aux_weight': 0.0, 'pretrained': False},
    'auxiliary': {'task_weight': 1.0, 'aux_weight': 1.0, 'pretrained': False},
}
DEFAULT_AGENTS = ('finetuned', 'scratch', 'auxiliary')
MAX_STEPS = {scene: OGBENCH_MAX_STEPS[scene] for scene in ('cube-single', 'cube-double')}
TASK_SEED_BASE = 700_000
'''Seeds of the task episodes' starts, far from the evaluation's (1000 * task + rollout).'''
PUBLISHED = ('Slides, Table 1 (real robot, instance grasping from a small task dataset): '
             'no pre-training 0-4%, AM pre-training + fine-tuning 20-27%.')


# --- the task operator and the task episodes ------------------------------------------------

def goal_targets(goal_state: np.ndarray, num_cubes: int) -> tuple[np.ndarray, np.ndarray]:
    '''Each cube's goal position (num_cubes, 3) and yaw (num_cubes,), from the goal state.'''
    from am_learning.envs import decode_state

    info = decode_state(goal_state, num_cubes)
    pos = np.array([info[f'privileged/block_{i}_pos'] for i in range(num_cubes)])
    yaw = np.array([info[f'privileged/block_{i}_yaw'][0] for i in range(num_cubes)])
    return pos, yaw


def make_task_operator(scene: str, goal_state: np.ndarray, *, noise: float,
                       wrong_target_prob: float) -> Any:
    '''OGBench's play operator steered to an evaluation task's goal.

    Each plan carries the cube farthest from its goal to the goal position (and yaw) the
    goal state shows; with probability `wrong_target_prob` a plan goes to a random place
    instead, as in play. `noise` is the plan noise (OGBench's play data: 0.1).
    '''
    from am_learning.envs import OperatorConfig, PlayOperator

    class TaskOperator(PlayOperator):
        def __init__(self) -> None:
            super().__init__(scene, config=OperatorConfig(noise=noise))
            self.goal_pos, self.goal_yaw = goal_targets(goal_state, self.num_cubes)

        def _new_target(self, info: dict, rng: np.random.Generator) -> None:
            super()._new_target(info, rng)  # draws a random target (and keeps rng in step)
            if rng.uniform() >= wrong_target_prob:
                pos = np.array([info[f'privileged/block_{i}_pos']
                                for i in range(self.num_cubes)])
                block = int(np.argmax(np.linalg.norm(pos - self.goal_pos, axis=1)))
                self._set_cube_target(block, self.goal_pos[block].copy(),
                                      float(self.goal_yaw[block]))

    return TaskOperator()


def write_task_episode(core: Any, store: Any, out: Path, episode_id: str, *, task_id: int,
                       seed: int, noise: float, wrong_target_prob: float, max_steps: int,
                       t0: int) -> dict:
    '''One task episode as a bag, the way generate.generate_episode writes play episodes.

    Starts from the task's initial state; ends on the task's success (the last frame shows
    it) or after max_steps commands. Returns its id, success and steps.
    '''
    from am_dataset_recorder.episode_writer import EpisodeWriter
    from am_learning.conventions import action_to_twist
    from am_sim.bag_messages import TOPICS, BagMessages
    from am_sim.core import PERIOD_NS
    from am_sim.generate import COMMAND_DELAY_NS

    core.sim_time_ns = t0
    core.load_eval_task(task_id, seed)
    rng = np.random.default_rng([seed, 1])
    operator = make_task_operator(core.config.scene, core.scene.goal_state(), noise=noise,
                                  wrong_target_prob=wrong_target_prob)
    operator.reset(rng)
    messages = BagMessages(store)
    topics = {k: v for k, v in TOPICS.items() if k != '/camera/image_raw'}
    writer = EpisodeWriter(out, episode_id, topics, label=f'task{task_id}', start_ns=t0,
                           typestore=store)
    success, steps = False, 0
    try:
        obs = core.observe(0, image=False)
        while True:
            stamp = t0 + steps * PERIOD_NS
            for topic, cdr in messages.observation(obs, stamp):
                writer.write(topic, stamp, cdr)
            if success or steps >= max_steps:
                break
            action = operator.act(obs.state, rng)
            linear, yaw_rate, closure = action_to_twist(action, core.scene.action_scale)
            for topic, cdr in messages.command(linear, yaw_rate, closure,
                                               stamp + COMMAND_DELAY_NS):
                writer.write(topic, stamp + COMMAND_DELAY_NS, cdr)
            core.command_twist(linear, yaw_rate, 0)
            core.command_gripper([closure])
            obs = core.step(0, image=False)
            steps += 1
            success = core.scene.task_solved()
        writer.finish(success, t0 + steps * PERIOD_NS + 2 * COMMAND_DELAY_NS,
                      extra_metadata={'am.task_noise': f'{noise:.3f}'})
    except BaseException:
        writer.discard()
        raise
    return {'episode_id': episode_id, 'success': bool(success), 'steps': steps,
            'noise': noise}


def episode_noises(n: int, low: float, high: float, seed: int) -> np.ndarray:
    '''Per-episode plan noise, evenly spread over [low, high] in a seeded random order.'''
    levels = np.linspace(low, high, n) if n > 1 else np.array([low])
    return np.random.default_rng(seed).permutation(levels)


def generate_task_episodes(args: argparse.Namespace, out: Path) -> list[dict]:
    from am_dataset_recorder.episode_writer import make_typestore
    from am_sim.core import PERIOD_NS, SimConfig, SimCore
    from am_sim.generate import EPISODE_GAP_NS

    core = SimCore(SimConfig(scene=args.scene, real_time_factor=0.0), camera=False)
    store = make_typestore()
    noises = episode_noises(args.task_episodes, args.noise_min, args.noise_max, args.data_seed)
    episodes = []
    for k, noise in enumerate(noises):
        t0 = 1_700_000_000_000_000_000 + k * (args.max_steps * PERIOD_NS + EPISODE_GAP_NS)
        episodes.append(write_task_episode(
            core, store, out, f'task{args.task}_{args.scene}_s{args.data_seed}_{k:06d}',
            task_id=args.task, seed=TASK_SEED_BASE + 1000 * args.data_seed + k,
            noise=float(noise), wrong_target_prob=args.wrong_target_prob,
            max_steps=args.max_steps, t0=t0))
    core.scene.close()
    return episodes


def manifest_success(manifest: dict, recorded: list[dict]) -> list[bool]:
    '''The cache manifest's per-episode success flags, checked against what was recorded.'''
    by_id = {e['episode_id']: e['success'] for e in recorded}
    flags = []
    for entry in manifest['episodes']:
        flag = entry.get('success')
        expected = by_id.get(entry.get('episode_id'))
        if flag is None or expected is None or bool(flag) != expected:
            raise ValueError(f'manifest episode {entry.get("episode_id")!r}: success '
                             f'{flag!r}, recorded {expected!r}')
        flags.append(bool(flag))
    if len(flags) != len(recorded):
        raise ValueError(f'the cache holds {len(flags)} episodes, {len(recorded)} recorded')
    return flags


# --- stages ---------------------------------------------------------------------------------

def stage_data(args: argparse.Namespace, work: Path) -> tuple[Path, Path | None]:
    task_cache = work / 'task_cache'
    if not (task_cache / 'manifest.json').exists():
        start = time.monotonic()
        recorded = generate_task_episodes(args, work / 'task_bags')
        generated = time.monotonic()
        run([sys.executable, '-m', 'am_learning.cli_dataset', 'build', str(work / 'task_bags'),
             '--out', str(task_cache), '--no-images', '--require-state', '--no-progress',
             '--workers', '1'], work / 'logs' / 'task_dataset.log')
        manifest = json.loads((task_cache / 'manifest.json').read_text())
        flags = manifest_success(manifest, recorded)
        info = {'generate_s': generated - start, 'build_s': time.monotonic() - generated,
                'episodes': len(flags), 'successes': int(sum(flags)),
                'transitions': int(sum(e['steps'] for e in recorded)),
                'mean_steps_success': float(np.mean([e['steps'] for e in recorded
                                                     if e['success']] or [np.nan])),
                'recorded': recorded}
        (work / 'task_data.json').write_text(json.dumps(info, indent=1))
        print(f'task data: {info["successes"]}/{info["episodes"]} successful, '
              f'{info["transitions"]} transitions, {info["generate_s"]:.0f} s', flush=True)
    play_cache = None
    if not args.pretrained:
        play_cache = Path(args.play_cache) if args.play_cache else work / 'play_cache'
        if not (play_cache / 'manifest.json').exists():
            run([sys.executable, '-m', 'am_sim.generate', '--scene', args.scene,
                 '--episodes', str(args.play_episodes), '--steps', str(args.play_steps),
                 '--state-only', '--workers', str(args.data_jobs), '--seed', '0',
                 '--out', str(work / 'play_bags')], work / 'logs' / 'play_generate.log')
            run([sys.executable, '-m', 'am_learning.cli_dataset', 'build',
                 str(work / 'play_bags'), '--out', str(play_cache), '--no-images',
                 '--require-state', '--no-progress', '--workers', str(args.data_jobs)],
                work / 'logs' / 'play_dataset.log')
    return task_cache, play_cache


def stage_pretrain(args: argparse.Namespace, work: Path, play_cache: Path | None) -> Path:
    if args.pretrained:
        return Path(args.pretrained)
    run_dir = work / 'runs' / 'pretrain_am'
    if not (run_dir / 'done').exists():
        start = time.monotonic()
        run([sys.executable, '-m', 'am_learning.cli_train', '--dataset', str(play_cache),
             '--run-dir', str(run_dir), '--observation', 'state', '--agent', 'am',
             '--seed', '0', '--updates', str(args.pretrain_updates), '--device', args.device,
             '--no-progress', '--set', f'num_threads={args.threads}',
             '--set', f'gamma={args.gamma}', *state_training_args()], run_dir / 'train.log')
        (run_dir / 'done').write_text(f'{time.monotonic() - start:.1f}\n')
    return run_dir / 'checkpoint'


def network_overrides(checkpoint: Path) -> list[str]:
    '''--set network.<field>=<value> for every network field of a checkpoint's config.'''
    from am_learning.checkpoint import read_metadata

    network = read_metadata(checkpoint)['config']['network']
    return [f'network.{k}={json.dumps(v)}' for k, v in sorted(network.items())]


def stage_train(args: argparse.Namespace, work: Path, task_cache: Path,
                pretrained: Path) -> list[Path]:
    runs = []
    shape = network_overrides(pretrained)
    for agent in args.agents:
        for seed in args.seeds:
            run_dir = work / 'runs' / f'{agent}_s{seed}'
            runs.append(run_dir)
            if (run_dir / 'done').exists():
                continue
            spec = AGENTS[agent]
            start = time.monotonic()
            cmd = [sys.executable, '-m', 'am_learning.cli_train', '--dataset', str(task_cache),
                   '--run-dir', str(run_dir), '--observation', 'state', '--agent', 'am',
                   '--seed', str(seed), '--updates', str(args.updates), '--device',
                   args.device, '--no-progress', '--set', f'num_threads={args.threads}',
                   '--set', f'gamma={args.gamma}', '--set', 'task_reward=episode_success',
                   '--set', f'task_weight={spec["task_weight"]}',
                   '--set', f'aux_weight={spec["aux_weight"]}']
            for item in shape:
                cmd += ['--set', item]
            if spec['pretrained']:
                cmd += ['--finetune-from', str(pretrained)]
            for item in args.set:
                cmd += ['--set', item]
            start = time.monotonic()
            run(cmd, run_dir / 'train.log')
            (run_dir / 'done').write_text(f'{time.monotonic() - start:.1f}\n')
            print(f'trained {run_dir.name} in {time.monotonic() - start:.0f} s', flush=True)
    return runs


class FixedGoalPolicy:
    '''A GoalReachingPolicy held on one goal: `evaluate.rollout` may offer the task's goal
    state, a task agent keeps its own (the all-zero task goal of losses.task_loss).'''

    def __init__(self, policy: Any, goal: np.ndarray) -> None:
        self._policy = policy
        policy.set_goal(goal)

    def set_goal(self, goal: np.ndarray) -> None:
        del goal  # the task goal stays

    def __getattr__(self, name: str) -> Any:
        return getattr(self._policy, name)


def evaluate_checkpoint(checkpoint: Path, args: argparse.Namespace, *,
                        zero_goal: bool) -> dict:
    '''am_learning.evaluate.evaluate on the task; zero_goal: the task agents' fixed goal.'''
    import torch

    from am_learning.envs import make_scene
    from am_learning.evaluate import evaluate
    from am_learning.policy import GoalReachingPolicy

    torch.set_num_threads(1)
    policy = GoalReachingPolicy.from_checkpoint(checkpoint, 'cpu', seed=args.eval_seed)
    if zero_goal:
        policy = FixedGoalPolicy(policy, np.zeros(policy.state_dim, dtype=np.float32))
    scene = make_scene(args.scene, policy.image_size, render=False, seed=args.eval_seed)
    try:
        start = time.monotonic()
        report = evaluate(policy, scene, eval_tasks=[args.task], reach_tasks=0,
                          episodes_per_task=args.rollouts, max_steps=args.max_steps,
                          seed=args.eval_seed, filmstrips=0)
        report['eval_s'] = time.monotonic() - start
    finally:
        scene.close()
    return report


def stage_eval(args: argparse.Namespace, work: Path, runs: list[Path],
               pretrained: Path) -> None:
    jobs = [(r / 'checkpoint', r / 'eval.json', True) for r in runs]
    jobs.append((pretrained, work / 'pretrained_goal_eval.json', False))
    for checkpoint, out, zero_goal in jobs:
        if out.exists():
            continue
        report = evaluate_checkpoint(checkpoint, args, zero_goal=zero_goal)
        out.write_text(json.dumps(report, indent=1))
        print(f'evaluated {out.parent.name if zero_goal else "pretrained"}: '
              f'{report["success_pct"]["eval_tasks"]:.0f}%', flush=True)


def _accelerator() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f'GPU {torch.cuda.get_device_name(0)}'
    except ImportError:
        pass
    return 'no GPU'


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    '''Wilson score interval of a success rate, in percent (95% for z = 1.96).'''
    if n <= 0:
        raise ValueError('no rollouts')
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def _transitions(manifest: dict) -> int | None:
    counts = manifest.get('counts') or {}
    if 'frames' not in counts or 'episodes' not in counts:
        return None
    return int(counts['frames']) - int(counts['episodes'])


def _rows(metrics_csv: Path) -> list[dict]:
    with open(metrics_csv) as f:
        return list(csv.DictReader(f))


def stage_report(args: argparse.Namespace, work: Path, runs: list[Path],
                 pretrained: Path) -> dict:
    dataset = f'{args.scene.replace("-", "_")}_task{args.task}'
    per_agent: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    per_run = {}
    for run_dir in runs:
        report = json.loads((run_dir / 'eval.json').read_text())
        agent = run_dir.name.rsplit('_s', 1)[0]
        pct = float(report['success_pct']['eval_tasks'])
        per_agent.setdefault(agent, []).append(pct)
        wins = sum(bool(d['success']) for d in report['rollout_details'])
        tally = counts.setdefault(agent, [0, 0])
        tally[0] += wins
        tally[1] += len(report['rollout_details'])
        rows = _rows(run_dir / 'metrics.csv')
        last = rows[-1] if rows else {}
        details = report['rollout_details']
        per_run[run_dir.name] = {
            'success_pct': pct,
            'rollouts': report['rollouts'],
            'mean_steps': float(np.mean([d['steps'] for d in details])),
            'mean_final_q': report['per_task'][f'task{args.task}']['mean_final_q'],
            'train_s': float((run_dir / 'done').read_text()),
            'eval_s': report['eval_s'],
            'final_metrics': {k: float(v) for k, v in last.items()
                              if k.startswith(('task/', 'critic/q_mean', 'diag/'))
                              and v not in ('', 'nan')},
        }
    reference = json.loads((work / 'pretrained_goal_eval.json').read_text())
    done = work / 'runs' / 'pretrain_am' / 'done'
    pretrain_s = float(done.read_text()) if not args.pretrained and done.exists() else 0.0
    data = json.loads((work / 'task_data.json').read_text())
    success = {agent: {dataset: float(np.mean(v))} for agent, v in per_agent.items()}
    ci = {agent: {dataset: list(wilson_interval(*counts[agent]))} for agent in per_agent}
    from am_learning.checkpoint import read_metadata

    pre_meta = read_metadata(pretrained)
    pre_manifest = pre_meta.get('dataset_manifest') or {}
    result = {
        'benchmark': NAME,
        'command': 'python ' + shlex.join([str(Path(sys.argv[0]))] + sys.argv[1:]),
        'date': datetime.date.today().isoformat(),
        'machine': machine(_accelerator()),
        'git_commit': git_commit('src/am_learning', 'src/am_sim', 'bench/finetune.py'),
        'metrics': {
            'success': success,
            'success_ci95': ci,
            **({'success_std': {agent: {dataset: float(np.std(v))}
                                for agent, v in per_agent.items()}}
               if len(args.seeds) > 1 else {}),
            'rollouts': args.rollouts,
            'seeds': len(args.seeds),
            'updates': args.updates,
            'pretrained_goal_reaching_success': {
                dataset: float(reference['success_pct']['eval_tasks'])},
            'task_dataset': {k: data[k] for k in ('episodes', 'successes', 'transitions',
                                                  'mean_steps_success')},
            'task_data_generate_s': data['generate_s'],
            'compute_s': data['generate_s'] + data['build_s'] + pretrain_s
            + sum(r['train_s'] + r['eval_s'] for r in per_run.values()) + reference['eval_s'],
        },
        'pretrained': {
            'checkpoint': str(pretrained),
            'step': int(pre_meta.get('step', 0)),
            'gamma': pre_meta['config'].get('gamma'),
            'play_transitions': _transitions(pre_manifest),
            'play_bags': pre_manifest.get('bag_dir'),
        },
        'runs': per_run,
        'published': PUBLISHED,
        'notes': args.notes,
    }
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f'{NAME}.json').write_text(json.dumps(result, indent=2) + '\n')
    _write_markdown(out / f'{NAME}.md', result, dataset, runs, out / f'{NAME}.png')
    return result


def _write_markdown(path: Path, result: dict, dataset: str, runs: list[Path],
                    plot: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    m = result['metrics']
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    agents = list(m['success'])
    means = np.array([m['success'][a][dataset] for a in agents])
    ci = np.array([m['success_ci95'][a][dataset] for a in agents])
    axes[0].bar(agents, means, yerr=[means - ci[:, 0], ci[:, 1] - means], capsize=3,
                color=['tab:green', 'tab:gray', 'tab:blue', 'tab:olive', 'tab:brown',
                       'tab:cyan'][:len(agents)])
    axes[0].tick_params(axis='x', labelsize=8)
    axes[0].set_ylabel('success %')
    axes[0].set_ylim(0, 100)
    axes[0].set_title(f'{dataset}: {m["rollouts"]} rollouts per agent and seed '
                      '(Wilson 95%)', fontsize=9)
    for run_dir in runs:
        rows = _rows(run_dir / 'metrics.csv')
        key = next((k for k in ('task/q_mean', 'critic/q_mean') if rows and k in rows[0]),
                   None)
        if key:
            axes[1].plot([float(r['step']) for r in rows],
                         [float(r[key]) if r[key] else np.nan for r in rows],
                         label=run_dir.name)
    axes[1].set_xlabel('updates')
    axes[1].set_ylabel('task Q on task batches (task/ or critic/q_mean)')
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plot, dpi=100)
    plt.close(fig)

    data = m['task_dataset']
    pre = result['pretrained']
    lines = [
        f'# {NAME}: {dataset}', '',
        f'`{result["command"]}`  ', f'{result["date"]}, {result["machine"]}, '
        f'commit {result["git_commit"][:10]}', '',
        '| agent | success % (mean) | 95% interval (Wilson, all rollouts) | std over seeds '
        '| seeds | rollouts per seed |',
        '|---|---|---|---|---|---|',
    ]
    for agent in agents:
        lo, hi = m['success_ci95'][agent][dataset]
        std = m.get('success_std', {}).get(agent, {}).get(dataset)
        lines.append(f'| {agent} | {m["success"][agent][dataset]:.1f} | {lo:.0f}-{hi:.0f} | '
                     f'{"-" if std is None else f"{std:.1f}"} | {m["seeds"]} | '
                     f'{m["rollouts"]} |')
    lines += [
        '', f'Reference: the pre-trained AM checkpoint as a goal-reaching policy given the '
        f'task\'s goal state: {m["pretrained_goal_reaching_success"][dataset]:.1f}% '
        f'({m["rollouts"]} rollouts).', '',
        f'Task dataset: {data["episodes"]} episodes from the task\'s start, '
        f'{data["successes"]} successful (scripted oracle with noise), '
        f'{data["transitions"]} transitions. Pre-trained checkpoint: `{pre["checkpoint"]}` '
        f'({pre["step"]} updates, gamma {pre["gamma"]}, {pre["play_transitions"]} play '
        f'transitions from `{pre["play_bags"]}`). Updates per agent: {m["updates"]}. '
        f'Compute: {m["compute_s"]:.0f} s (the stages\' wall times summed).', '',
        f'Published: {result["published"]}', '',
        '| run | success % | mean steps | mean final Q | train s | eval s |',
        '|---|---|---|---|---|---|']
    for name, r in result['runs'].items():
        q = r['mean_final_q']
        lines.append(f'| {name} | {r["success_pct"]:.1f} | {r["mean_steps"]:.0f} | '
                     f'{"-" if q is None else f"{q:.2f}"} | {r["train_s"]:.0f} | '
                     f'{r["eval_s"]:.0f} |')
    lines += ['', f'![success and task Q]({plot.name})', '', f'Notes: {result["notes"]}', '']
    path.write_text('\n'.join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scene', default='cube-single', choices=sorted(MAX_STEPS))
    parser.add_argument('--task', type=int, default=1, help='evaluation task id (1-5)')
    parser.add_argument('--task-episodes', type=int, default=50)
    parser.add_argument('--noise-min', type=float, default=0.1,
                        help='plan noise of the least noisy task episode (OGBench play: 0.1)')
    parser.add_argument('--noise-max', type=float, default=0.8,
                        help='plan noise of the noisiest (0.7 and above: measured to fail)')
    parser.add_argument('--wrong-target-prob', type=float, default=0.2,
                        help='chance that a plan of a task episode goes somewhere else')
    parser.add_argument('--data-seed', type=int, default=0)
    parser.add_argument('--pretrained', default='',
                        help='AM checkpoint pre-trained on play data (else trained here)')
    parser.add_argument('--play-cache', default='', help='play cache to pre-train on')
    parser.add_argument('--play-episodes', type=int, default=200)
    parser.add_argument('--play-steps', type=int, default=1000)
    parser.add_argument('--pretrain-updates', type=int, default=15000)
    parser.add_argument('--agents', default=','.join(DEFAULT_AGENTS),
                        help=f'among {", ".join(AGENTS)}')
    parser.add_argument('--seeds', default='0,1,2')
    parser.add_argument('--updates', type=int, default=20000)
    parser.add_argument('--gamma', type=float, default=0.99)
    parser.add_argument('--rollouts', type=int, default=50, help='per agent and seed')
    parser.add_argument('--max-steps', type=int, default=0,
                        help="steps per episode and rollout (0: the scene's OGBench limit)")
    parser.add_argument('--eval-seed', type=int, default=1000)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--threads', type=int, default=2, help='torch threads of training')
    parser.add_argument('--data-jobs', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--set', action='append', default=[],
                        help='config override for the three agents')
    parser.add_argument('--work', default='/tmp/am_finetune')
    parser.add_argument('--results-dir', default=str(REPO / 'bench' / 'results'))
    parser.add_argument('--stage', default='all',
                        choices=['all', 'data', 'pretrain', 'train', 'eval', 'report'])
    parser.add_argument('--notes', default='')
    args = parser.parse_args()
    args.agents = [a for a in args.agents.split(',') if a]
    unknown = sorted(set(args.agents) - set(AGENTS))
    if unknown:
        parser.error(f'unknown agents {unknown}; choose among {list(AGENTS)}')
    args.seeds = [int(s) for s in args.seeds.split(',') if s]
    args.max_steps = args.max_steps or MAX_STEPS[args.scene]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault('MUJOCO_GL', 'egl')
    task_cache, play_cache = stage_data(args, work)
    if args.stage == 'data':
        return
    pretrained = stage_pretrain(args, work, play_cache)
    if args.stage == 'pretrain':
        return
    runs = stage_train(args, work, task_cache, pretrained)
    if args.stage == 'train':
        return
    stage_eval(args, work, runs, pretrained)
    if args.stage == 'eval':
        return
    result = stage_report(args, work, runs, pretrained)
    print(json.dumps(result['metrics'], indent=2))


if __name__ == '__main__':
    main()
