'''Benchmark `ogbench_state`: OGBench's protocol on state-based manipulation, our agents.

    python bench/ogbench_state.py --scene cube-single --episodes 1000 --steps 1000 \
        --agents am,gcbc,her,her_neg --seeds 0,1 --updates 100000 --work /tmp/ogs

Stages (each skipped when its output exists, so a run can be continued):
  data   the scripted play operator (OGBench's oracle + play noise) writes episode bags
         through the recorder's EpisodeWriter (am_sim.generate), then am-dataset builds a
         state-vector cache from them;
  train  am-train per agent and seed (in parallel, --train-jobs at a time);
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
import subprocess
import sys
import time

from benchlib import git_commit, machine
import numpy as np

REPO = Path(__file__).resolve().parents[1]
NAME = 'ogbench_state'
MAX_STEPS = {'cube-single': 200, 'cube-double': 500, 'scene': 750, 'puzzle-3x3': 500}
PUBLISHED = {
    'cube-single': 'GCIQL 68+-6, GCIVL 53+-4, GCBC 6+-2 (OGBench 2024, same protocol)',
    'scene': 'GCIQL 51+-4, HIQL 38+-3 (OGBench 2024, same protocol)',
}


def run(cmd: list[str], log: Path) -> None:
    '''Run one stage command, its output in `log`; raise with the log's tail on failure.'''
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, 'w') as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log.read_text(errors='replace')[-3000:]
        raise RuntimeError(f'{" ".join(cmd)} failed ({code}):\n{tail}')


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

    def train(run_dir: Path) -> None:
        if (run_dir / 'checkpoint' / 'model.safetensors').exists() and (
                run_dir / 'done').exists():
            return
        agent, seed = run_dir.name.rsplit('_s', 1)
        cmd = [sys.executable, '-m', 'am_learning.cli_train', '--dataset', str(cache),
               '--run-dir', str(run_dir), '--observation', 'state', '--agent', agent,
               '--seed', seed, '--updates', str(args.updates), '--device', args.device,
               '--no-progress', '--set', f'num_threads={args.threads}']
        if args.config:
            cmd += ['--config', args.config]
        for item in args.set:
            cmd += ['--set', item]
        start = time.monotonic()
        run(cmd, run_dir / 'train.log')
        (run_dir / 'done').write_text(f'{time.monotonic() - start:.1f}\n')
        print(f'trained {run_dir.name} in {time.monotonic() - start:.0f} s', flush=True)

    with ThreadPoolExecutor(args.train_jobs) as pool:
        list(pool.map(train, runs))
    return runs


def stage_eval(args: argparse.Namespace, runs: list[Path]) -> None:
    def evaluate(run_dir: Path) -> None:
        if (run_dir / 'eval' / 'eval.json').exists():
            return
        run([sys.executable, '-m', 'am_learning.cli_eval', str(run_dir / 'checkpoint'),
             '--scene', args.scene, '--tasks', 'all', '--reach', '0',
             '--episodes-per-task', str(args.rollouts), '--max-steps',
             str(MAX_STEPS[args.scene]), '--seed', '1000', '--device', 'cpu',
             '--out', str(run_dir / 'eval'), '--no-progress'], run_dir / 'eval.log')
        print(f'evaluated {run_dir.name}', flush=True)

    os.environ.setdefault('OMP_NUM_THREADS', '1')
    with ThreadPoolExecutor(args.eval_jobs) as pool:
        list(pool.map(evaluate, runs))






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


def stage_report(args: argparse.Namespace, work: Path, runs: list[Path]) -> dict:
    dataset = args.scene.replace('-', '_')
    per_agent: dict[str, list[float]] = {}
    per_run = {}
    for run_dir in runs:
        report = json.loads((run_dir / 'eval' / 'eval.json').read_text())
        agent = run_dir.name.rsplit('_s', 1)[0]
        pct = float(report['success_pct']['eval_tasks'])
        per_agent.setdefault(agent, []).append(pct)
        last = _last_row(run_dir / 'metrics.csv')
        per_run[run_dir.name] = {
            'success_pct': pct,
            'per_task': {k: v['success_pct'] for k, v in report['per_task'].items()},
            'train_s': float((run_dir / 'done').read_text()),
            'final_diagnostics': {k: float(v) for k, v in last.items()
                                  if k.startswith('diag/') and v not in ('', 'nan')},
        }
    success = {agent: {dataset: float(np.mean(v))} for agent, v in per_agent.items()}
    spread = {agent: {dataset: float(np.std(v))} for agent, v in per_agent.items()}
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
            'rollouts': args.rollouts * 5,
            'seeds': len(args.seeds),
            'updates': args.updates,
            'dataset_transitions': args.episodes * args.steps,
            **{f'data_{k}': v for k, v in timing.items()},
        },
        'runs': per_run,
        'published': PUBLISHED.get(args.scene, ''),
        'notes': args.notes,
    }
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = '' if args.scene == 'cube-single' else f'_{dataset}'
    (out / f'{NAME}{suffix}.json').write_text(json.dumps(result, indent=2) + '\n')
    _write_markdown(out / f'{NAME}{suffix}.md', result, dataset, runs, out / f'{NAME}{suffix}.png')
    return result


def _write_markdown(path: Path, result: dict, dataset: str, runs: list[Path],
                    plot: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
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
    lines += ['', f'Rollouts per agent and seed: {m["rollouts"]}; updates: {m["updates"]}; '
              f'dataset: {m["dataset_transitions"]} transitions.', '',
              f'Published on the same protocol: {result["published"]}', '',
              '| run | success % | per task | train s |', '|---|---|---|---|']
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
    parser.add_argument('--rollouts', type=int, default=20, help='per evaluation task')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per run')
    parser.add_argument('--config', default='', help='TrainConfig YAML/JSON for every run')
    parser.add_argument('--set', action='append', default=[], help='config override')
    parser.add_argument('--data-jobs', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--train-jobs', type=int, default=1)
    parser.add_argument('--eval-jobs', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--work', default='/tmp/am_ogbench_state')
    parser.add_argument('--results-dir', default=str(REPO / 'bench' / 'results'))
    parser.add_argument('--stage', default='all', choices=['all', 'data', 'train', 'eval',
                                                          'report'])
    parser.add_argument('--notes', default='')
    args = parser.parse_args()
    args.agents = [a for a in args.agents.split(',') if a]
    args.seeds = [int(s) for s in args.seeds.split(',') if s]
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
