'''Benchmark `ogbench_state`: OGBench's protocol on state-based manipulation, our agents.

    python bench/ogbench_state.py --scene cube-single --episodes 1000 --steps 1000 \
        --agents am,gcbc,her,her_neg --seeds 0,1 --updates 100000 --work /tmp/ogs

Stages (each skipped when its output exists, so a run can be continued):
  data   the scripted play operator (OGBench's oracle + play noise) writes episode bags
         through the recorder's EpisodeWriter (am_sim.generate), then am-dataset builds a
         state-vector cache from them;
  train  am-train per agent and seed (in parallel, --train-jobs at a time); a finished run
         is taken further when --updates is raised (without --time-limit-min), its last
         model and evaluation kept as a point of the learning curve;
  eval   am-eval: the scene's 5 evaluation tasks x --rollouts rollouts, max 200 steps
         (OGBench's cube-single episode limit), success = OGBench's own success test;
  report bench/results/ogbench_state.{json,md} and a plot (success per agent; Q diagnostics
         against updates).
'''

import argparse
from concurrent.futures import ThreadPoolExecutor
import csv
import datetime
import json
import os
from pathlib import Path
import shlex
import shutil
import sys
import time

from benchlib import OGBENCH_MAX_STEPS, git_commit, machine, run, state_training_args
import numpy as np

REPO = Path(__file__).resolve().parents[1]
NAME = 'ogbench_state'
MAX_STEPS = OGBENCH_MAX_STEPS
PUBLISHED = {
    'cube-single': 'GCIQL 68+-6, GCIVL 53+-4, GCBC 6+-2 (OGBench 2024, same protocol)',
    'scene': 'GCIQL 51+-4, HIQL 38+-3 (OGBench 2024, same protocol)',
}


def stage_data(args: argparse.Namespace, work: Path) -> Path:
    cache = work / 'cache'
    if (cache / 'manifest.json').exists():
        return cache
    start = time.monotonic()
    run([sys.executable, '-m', 'am_sim.generate', '--scene', args.scene,
         '--episodes', str(args.episodes), '--steps', str(args.steps), '--state-only',
         '--workers', str(args.data_jobs), '--seed', '0', '--out', str(work / 'bags')],
        work / 'logs' / 'generate.log')
    generated = time.monotonic()
    run([sys.executable, '-m', 'am_learning.cli_dataset', 'build', str(work / 'bags'),
         '--out', str(cache), '--no-images', '--require-state', '--no-progress',
         '--workers', str(args.data_jobs)], work / 'logs' / 'dataset.log')
    timing = {'generate_s': generated - start, 'build_s': time.monotonic() - generated}
    (work / 'data_timing.json').write_text(json.dumps(timing))
    print(f'data: {timing}', flush=True)
    return cache


def stage_train(args: argparse.Namespace, work: Path, cache: Path) -> list[Path]:
    runs = [work / 'runs' / f'{agent}_s{seed}' for agent in args.agents for seed in args.seeds]
    if args.stage not in ('all', 'train'):
        return runs  # evaluating or reporting never trains

    def train(run_dir: Path) -> None:
        reached, spent = resume_point(run_dir, args.updates, timed=args.time_limit_min > 0)
        if reached is None:
            return
        agent, seed = run_dir.name.rsplit('_s', 1)
        cmd = [sys.executable, '-m', 'am_learning.cli_train', '--dataset', str(cache),
               '--run-dir', str(run_dir), '--observation', 'state', '--agent', agent,
               '--seed', seed, '--device', args.device,
               '--no-progress', '--set', f'num_threads={args.threads}', *state_training_args()]
        if args.config:
            cmd += ['--config', args.config]
        if args.time_limit_min > 0:
            cmd += ['--time-limit-min', str(args.time_limit_min)]
        for item in args.set:
            cmd += ['--set', item]
        start = time.monotonic()
        for point in curve_points(args):  # resumes the same run folder up to each point
            if point <= reached:
                continue  # a resumed run keeps the snapshots it made
            run([*cmd, '--updates', str(point)], run_dir / f'train_{point}.log')
            if point < args.updates:
                snapshot = run_dir / 'curve' / str(point)
                shutil.rmtree(snapshot, ignore_errors=True)
                shutil.copytree(run_dir / 'checkpoint', snapshot)
        (run_dir / 'done').write_text(f'{spent + time.monotonic() - start:.1f}\n')
        print(f'trained {run_dir.name} in {time.monotonic() - start:.0f} s', flush=True)

    with ThreadPoolExecutor(args.train_jobs) as pool:
        list(pool.map(train, runs))
    return runs


def resume_point(run_dir: Path, updates: int, *, timed: bool) -> tuple[int | None, float]:
    '''Where the train stage picks `run_dir` up: (its updates so far, or None when it has
    nothing to do; training seconds already spent).

    A finished run (its `done` file) is left alone, unless it ended below `updates` without
    a time limit: then it is taken further, and its final model, with its evaluation, becomes
    a curve snapshot first. Time-limited runs end where their time ends.'''
    from am_learning.checkpoint import read_metadata

    final = run_dir / 'checkpoint'
    reached = int(read_metadata(final)['step']) if (final / 'model.safetensors').exists() else 0
    done = run_dir / 'done'
    if not done.exists() or not reached:
        return reached, 0.0
    if timed or reached >= updates:
        return None, 0.0
    try:
        spent = float(done.read_text())
    except ValueError:
        raise SystemExit(f'{done}: expected the seconds the finished run trained, found '
                         f'{done.read_text()[:40]!r}; delete the file to take the run on '
                         'from its checkpoint') from None
    snapshot = run_dir / 'curve' / str(reached)
    shutil.rmtree(snapshot, ignore_errors=True)
    shutil.copytree(final, snapshot)
    for name in ('eval', f'eval_{reached}.log'):  # where stage_eval left them for the final
        if (run_dir / name).exists():
            shutil.move(run_dir / name, snapshot / name)
    done.unlink()
    return reached, spent


def curve_points(args: argparse.Namespace) -> list[int]:
    '''Update counts at which a run is evaluated: the --curve points below --updates, then
    --updates itself (the run's final checkpoint).'''
    return sorted({p for p in args.curve if 0 < p < args.updates} | {args.updates})


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    '''(updates, checkpoint folder) of a run as it stands on disk, in order: its curve
    snapshots, then the final model. Read from the run, not the arguments, so that a run
    stopped by a time limit or resumed further (bench/gpu_ogbench_state.sh) reports the
    updates it really made.'''
    from am_learning.checkpoint import META_FILE, read_metadata

    def step(ckpt: Path) -> int:
        return int(read_metadata(ckpt)['step'])

    final = run_dir / 'checkpoint'
    end = step(final)
    snapshots = [(step(c), c) for c in (run_dir / 'curve').glob('*') if (c / META_FILE).exists()]
    return sorted(p for p in snapshots if p[0] < end) + [(end, final)]


def stage_eval(args: argparse.Namespace, runs: list[Path]) -> None:
    def evaluate(job: tuple[Path, int, Path]) -> None:
        run_dir, point, ckpt = job
        out = run_dir / 'eval' if ckpt.name == 'checkpoint' else ckpt / 'eval'
        if (out / 'eval.json').exists():
            return
        run([sys.executable, '-m', 'am_learning.cli_eval', str(ckpt),
             '--scene', args.scene, '--tasks', 'all', '--reach', '0',
             '--episodes-per-task', str(args.rollouts), '--max-steps',
             str(MAX_STEPS[args.scene]), '--seed', '1000', '--device', 'cpu',
             '--out', str(out), '--no-progress'], out.parent / f'eval_{point}.log')
        print(f'evaluated {run_dir.name} at {point} updates', flush=True)

    os.environ.setdefault('OMP_NUM_THREADS', '1')
    jobs = [(r, p, c) for r in runs for p, c in checkpoints(r)]
    with ThreadPoolExecutor(args.eval_jobs) as pool:
        list(pool.map(evaluate, jobs))


def _accelerator() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f'GPU {torch.cuda.get_device_name(0)}'
    except ImportError:
        pass
    return 'no GPU'


def _last_row(metrics_csv: Path) -> dict:
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    return rows[-1] if rows else {}


def mean_curve(curves: list[dict[int, float]]) -> dict[str, float]:
    '''Success at each snapshot, the mean over seeds. Runs stopped by a time limit reach
    slightly different update counts: when all runs have as many snapshots, they are paired
    in order and labelled with their common count, or their mean count to the nearest 1,000
    where they differ; otherwise only the counts all runs share are kept.'''
    if len({len(c) for c in curves}) == 1:
        out = {}
        for column in zip(*(sorted(c.items()) for c in curves)):
            steps = {p for p, _ in column}
            label = steps.pop() if len(steps) == 1 else round(float(np.mean(list(steps))), -3)
            out[str(int(label))] = float(np.mean([v for _, v in column]))
        return out
    shared = sorted(set.intersection(*(set(c) for c in curves)))
    return {str(p): float(np.mean([c[p] for c in curves])) for p in shared}


def stage_report(args: argparse.Namespace, work: Path, runs: list[Path]) -> dict:
    dataset = args.scene.replace('-', '_')
    per_agent: dict[str, list[float]] = {}
    per_run = {}
    per_agent_curve: dict[str, list[dict[int, float]]] = {}
    for run_dir in runs:
        report = json.loads((run_dir / 'eval' / 'eval.json').read_text())
        agent = run_dir.name.rsplit('_s', 1)[0]
        pct = float(report['success_pct']['eval_tasks'])
        per_agent.setdefault(agent, []).append(pct)
        last = _last_row(run_dir / 'metrics.csv')
        curve = {}
        *snapshots, (updates, _) = checkpoints(run_dir)
        for point, ckpt in snapshots:
            curve[point] = float(json.loads((ckpt / 'eval' / 'eval.json').read_text())
                                 ['success_pct']['eval_tasks'])
        curve[updates] = pct
        per_agent_curve.setdefault(agent, []).append(curve)
        per_run[run_dir.name] = {
            'success_curve': curve,
            'success_pct': pct,
            'per_task': {k: v['success_pct'] for k, v in report['per_task'].items()},
            'train_s': float((run_dir / 'done').read_text()),
            'final_diagnostics': {k: float(v) for k, v in last.items()
                                  if k.startswith('diag/') and v not in ('', 'nan')},
        }
    success = {agent: {dataset: float(np.mean(v))} for agent, v in per_agent.items()}
    spread = {agent: {dataset: float(np.std(v))} for agent, v in per_agent.items()}
    curves = {agent: mean_curve(cs) for agent, cs in per_agent_curve.items()}
    timing = json.loads((work / 'data_timing.json').read_text()) \
        if (work / 'data_timing.json').exists() else {}
    result = {
        'benchmark': NAME,
        'command': 'python ' + shlex.join([str(Path(sys.argv[0]))] + sys.argv[1:]),
        'date': datetime.date.today().isoformat(),
        'machine': machine(_accelerator()),
        'git_commit': git_commit('src/am_learning', 'src/am_sim', 'bench/ogbench_state.py'),
        'metrics': {
            'success': success,
            'success_std': spread,
            'success_curve': curves,
            'rollouts': args.rollouts * 5,
            'seeds': len(args.seeds),
            'updates': {agent: max(int(p) for p in c) for agent, c in curves.items()},
            'dataset_transitions': args.episodes * args.steps,
            **{f'data_{k}': v for k, v in timing.items()},
        },
        'runs': per_run,
        'published': PUBLISHED.get(args.scene, ''),
        'notes': args.notes,
    }
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.report_name or (NAME if args.scene == 'cube-single' else f'{NAME}_{dataset}')
    (out / f'{stem}.json').write_text(json.dumps(result, indent=2) + '\n')
    _write_markdown(out / f'{stem}.md', result, dataset, runs, out / f'{stem}.png')
    return result


def _write_markdown(path: Path, result: dict, dataset: str, runs: list[Path],
                    plot: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    agents = list(result['metrics']['success'])
    means = [result['metrics']['success'][a][dataset] for a in agents]
    stds = [result['metrics']['success_std'][a][dataset] for a in agents]
    axes[0].bar(agents, means, yerr=stds, color='tab:blue')
    axes[0].set_ylabel('success %')
    axes[0].set_title(f'{dataset}: 5 tasks x {result["metrics"]["rollouts"] // 5} rollouts')
    for run_dir in runs:
        with open(run_dir / 'metrics.csv') as f:
            rows = list(csv.DictReader(f))
        key = next((k for k in ('diag/q_offset_50', 'critic/q_mean') if rows
                    and k in rows[0]), None)
        if key:
            axes[1].plot([float(r['step']) for r in rows],
                         [float(r[key]) if r[key] else np.nan for r in rows],
                         label=run_dir.name)
            axes[1].set_ylabel(key)
    axes[1].set_xlabel('updates')
    axes[1].legend(fontsize=7)
    for agent, curve in result['metrics']['success_curve'].items():
        axes[2].plot([int(p) for p in curve], list(curve.values()), marker='o', label=agent)
    axes[2].set_xlabel('updates')
    axes[2].set_ylabel('success % (mean over seeds)')
    axes[2].set_ylim(bottom=0)  # a flat curve of a few per cent must look flat
    axes[2].set_title('success against updates')
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plot, dpi=100)
    plt.close(fig)

    m = result['metrics']
    lines = [
        f'# {NAME}: {dataset}', '',
        f'`{result["command"]}`  ', f'{result["date"]}, {result["machine"]}, '
        f'commit {result["git_commit"][:10]}', '',
        '| agent | success % (mean) | std over seeds | seeds |', '|---|---|---|---|',
    ]
    for agent in agents:
        lines.append(f'| {agent} | {m["success"][agent][dataset]:.1f} | '
                     f'{m["success_std"][agent][dataset]:.1f} | {m["seeds"]} |')
    updates = ', '.join(f'{a} {u:,}' for a, u in m['updates'].items())
    points = sorted({int(p) for c in m['success_curve'].values() for p in c})
    lines += ['', f'Rollouts per agent and seed: {m["rollouts"]}; updates: {updates}; '
              f'dataset: {m["dataset_transitions"]} transitions.', '',
              f'Published on the same protocol: {result["published"]}', '',
              'Success % against updates (mean over seeds):', '',
              '| agent | ' + ' | '.join(f'{p:,} upd' for p in points) + ' |',
              '|---|' + '---|' * len(points)]
    for agent, curve in m['success_curve'].items():
        lines.append(f'| {agent} | ' + ' | '.join(
            f'{curve[str(p)]:.1f}' if str(p) in curve else '' for p in points) + ' |')
    lines += ['', '| run | success % | per task | train s |', '|---|---|---|---|']
    for name, r in result['runs'].items():
        tasks = ', '.join(f'{v:.0f}' for v in r['per_task'].values())
        lines.append(f'| {name} | {r["success_pct"]:.1f} | {tasks} | {r["train_s"]:.0f} |')
    lines += ['', f'![success and Q]({plot.name})', '', f'Notes: {result["notes"]}', '']
    path.write_text('\n'.join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scene', default='cube-single', choices=sorted(MAX_STEPS))
    parser.add_argument('--episodes', type=int, default=1000)
    parser.add_argument('--steps', type=int, default=1000)
    parser.add_argument('--agents', default='am,gcbc,her,her_neg')
    parser.add_argument('--seeds', default='0,1')
    parser.add_argument('--updates', type=int, default=100000)
    parser.add_argument('--curve', default='',
                        help='also evaluate at these update counts, e.g. 25000,50000 '
                             '(the learning curve in the report)')
    parser.add_argument('--rollouts', type=int, default=20, help='per evaluation task')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per run')
    parser.add_argument('--config', default='', help='TrainConfig YAML/JSON for every run')
    parser.add_argument('--set', action='append', default=[], help='config override')
    parser.add_argument('--time-limit-min', type=float, default=0,
                        help='am-train --time-limit-min of each training segment')
    parser.add_argument('--data-jobs', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--train-jobs', type=int, default=1)
    parser.add_argument('--eval-jobs', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--work', default='/tmp/am_ogbench_state')
    parser.add_argument('--results-dir', default=str(REPO / 'bench' / 'results'))
    parser.add_argument('--stage', default='all', choices=['all', 'data', 'train', 'eval',
                                                          'report'])
    parser.add_argument('--report-name', default='',
                        help='file stem of the report (default ogbench_state[_<scene>])')
    parser.add_argument('--notes', default='')
    args = parser.parse_args()
    if args.time_limit_min < 0:
        parser.error('--time-limit-min must be >= 0 (0: no limit)')
    args.agents = [a for a in args.agents.split(',') if a]
    args.seeds = [int(s) for s in args.seeds.split(',') if s]
    args.curve = [int(p) for p in args.curve.split(',') if p]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault('MUJOCO_GL', 'egl')
    cache = stage_data(args, work)
    if args.stage == 'data':
        return
    runs = stage_train(args, work, cache)
    if args.stage == 'train':
        return
    stage_eval(args, runs)
    if args.stage == 'eval':
        return
    result = stage_report(args, work, runs)
    print(json.dumps(result['metrics'], indent=2))


if __name__ == '__main__':
    main()
