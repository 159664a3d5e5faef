'''Benchmark `visual`: goal images from am_sim's 64x64 camera, data that went through bags.

    python bench/visual.py --play-episodes 250 --reach-episodes 250 --steps 400 \
        --agents am,gcbc --seeds 0,1 --train-min 30 --cube-train-min 60 \
        --reach-rollouts 100 --cube-rollouts 20 --work /tmp/am_visual

Issue 5's visual benchmark, two task sets on one dataset of the cube-single scene:
  (a) visual_reach: reach goals (`Scene.load_reach_task`: the goal image shows the gripper
      moved to a random pose of the workspace); success = the gripper within 3 cm of the
      goal when the rollout ends, by the policy's own stop rule (the policy node's: Q >= 0.9
      for 3 steps = reached, Q < 0.02 for 40 steps = give up; GCBC has no Q and always runs
      to the limit) or the time limit (--reach-steps); "touched" (within 3 cm at any step),
      the end, closest and start distances (start = what doing nothing gives) beside it.
      Training at most --train-min minutes (target: am >= 80%, gcbc beside it).
  (b) visual_cube_single: OGBench's five cube-single evaluation tasks, OGBench's protocol
      (200 steps, a rollout ends at OGBench's success), training at most --cube-train-min
      minutes (target: am >= 50% and at least 3x gcbc).

Stages (each skipped when its output exists, so a run can be continued):
  data   am_sim.generate writes camera episodes as rosbag2 bags through the recorder's
         EpisodeWriter: --play-episodes of OGBench's play oracle (pick-and-place, centred on
         the cube) and --reach-episodes of the reach operator (am_learning.envs.
         ReachOperator: the open gripper to random points of the box reach goals are drawn
         from, lingering at each), so that the data covers reaching across the workspace;
         am-dataset builds the 64 px cache from the bags;
  train  am-train per agent and seed, --time-limit-min enforcing the budget (the update
         count is set out of reach, the clock ends the run); for (b), when --cube-train-min
         exceeds --train-min, a copy of each run is resumed for the rest of its budget;
  eval   am-eval (in-process, the scene am_sim runs): (a) --reach-rollouts reach goals per
         run (the same goals for every run), (b) 5 tasks x --cube-rollouts;
  report bench/results/visual.{json,md,png}.
'''

import argparse
import csv
import datetime
import json
import math
import os
from pathlib import Path
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any

from benchlib import git_commit, machine
import numpy as np

REPO = Path(__file__).resolve().parents[1]
NAME = 'visual'
SCENE = 'cube-single'
IMAGE_SIZE = 64
CUBE_MAX_STEPS = 200  # OGBench's cube-single episode limit
REACH_SEED = 50_000
'''Seed of the reach goals (rollout e loads its goal with REACH_SEED + 100000 + e).'''
CUBE_SEED = 60_000
UNBOUNDED_UPDATES = 10_000_000
'''Update count of time-limited runs: the clock, not the count, ends them.'''
TARGETS = {
    'visual_reach': 'am >= 80% (gcbc beside it), training <= 30 min on 2 CPU cores',
    'visual_cube_single': 'am >= 50% and >= 3x gcbc, training <= 60 min on 2 CPU cores',
}


def run(cmd: list[str], log: Path) -> float:
    '''Run one stage command, its output in `log`; its wall seconds; raise on failure.'''
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, 'w') as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log.read_text(errors='replace')[-3000:]
        raise RuntimeError(f'{" ".join(cmd)} failed ({code}):\n{tail}')
    return time.monotonic() - start


# --- data ---------------------------------------------------------------------------------

def stage_data(args: argparse.Namespace, work: Path) -> Path:
    cache = work / 'cache'
    if (cache / 'manifest.json').exists():
        return cache
    timing = {}
    for operator, episodes, seed in (('play', args.play_episodes, 0),
                                     ('reach', args.reach_episodes, 1)):
        if episodes <= 0:
            continue
        out = work / 'bags' / operator
        if out.exists():  # a generation interrupted half-way: start it over
            shutil.rmtree(out)
        timing[f'generate_{operator}_s'] = run(
            [sys.executable, '-m', 'am_sim.generate', '--scene', SCENE, '--episodes',
             str(episodes), '--steps', str(args.steps), '--image-size', str(IMAGE_SIZE),
             '--workers', str(args.data_jobs), '--seed', str(seed), '--operator', operator,
             '--label', operator, '--out', str(out)], work / 'logs' / f'generate_{operator}.log')
    timing['build_s'] = run(
        [sys.executable, '-m', 'am_learning.cli_dataset', 'build', str(work / 'bags'),
         '--out', str(cache), '--image-size', str(IMAGE_SIZE), '--no-progress',
         '--workers', str(args.data_jobs)], work / 'logs' / 'dataset.log')
    (work / 'data_timing.json').write_text(json.dumps(timing))
    print(f'data: {timing}', flush=True)
    return cache


def dataset_figures(cache: Path) -> dict[str, Any]:
    '''Frames and episodes of the cache, in all and per operator (the episodes' label).'''
    manifest = json.loads((cache / 'manifest.json').read_text())
    episodes = manifest.get('episodes', [])
    counts = manifest.get('counts', {})
    out: dict[str, Any] = {'dataset_frames': counts.get('frames'),
                           'dataset_episodes': counts.get('episodes', len(episodes)),
                           'dataset_bags_skipped': counts.get('bags_skipped')}
    for label in ('play', 'reach'):
        mine = [e for e in episodes if e.get('label') == label]
        out[f'dataset_{label}_episodes'] = len(mine)
        out[f'dataset_{label}_frames'] = sum(int(e.get('frames', 0)) for e in mine)
    return {k: v for k, v in out.items() if v is not None}


# --- train --------------------------------------------------------------------------------

def train_cmd(args: argparse.Namespace, cache: Path, run_dir: Path, agent: str, seed: int,
              minutes: float) -> list[str]:
    cmd = [sys.executable, '-m', 'am_learning.cli_train', '--dataset', str(cache),
           '--run-dir', str(run_dir), '--agent', agent, '--seed', str(seed),
           '--updates', str(UNBOUNDED_UPDATES), '--time-limit-min', f'{minutes:g}',
           '--device', 'cpu', '--no-progress', '--set', f'num_threads={args.threads}']
    for item in args.set:
        cmd += ['--set', item]
    return cmd


def stage_train(args: argparse.Namespace, cache: Path, runs_root: Path) -> list[Path]:
    '''Train every (agent, seed); returns the run folders of (a), in order.'''
    runs = [runs_root / f'{agent}_s{seed}' for agent in args.agents for seed in args.seeds]
    for run_dir in runs:
        agent, seed = run_dir.name.rsplit('_s', 1)
        if not (run_dir / 'done').exists():
            run(train_cmd(args, cache, run_dir, agent, int(seed), args.train_min),
                run_dir / 'train.log')
            (run_dir / 'done').write_text('')
            print(f'trained {run_dir.name}: {train_time(run_dir)}', flush=True)
        cube = cube_run(args, run_dir)
        if cube != run_dir and not (cube / 'done').exists():
            if cube.exists():
                shutil.rmtree(cube)
            shutil.copytree(run_dir, cube)
            extra = args.cube_train_min - args.train_min
            run(train_cmd(args, cache, cube, agent, int(seed), extra), cube / 'train_more.log')
            first = json.loads((run_dir / 'train_time.json').read_text())
            more = json.loads((cube / 'train_time.json').read_text())
            total = {**more, 'train_wall_s': first['train_wall_s'] + more['train_wall_s'],
                     'time_limit_min': args.cube_train_min, 'start_step': 0}
            (cube / 'train_time.json').write_text(json.dumps(total, indent=2) + '\n')
            (cube / 'done').write_text('')
            print(f'trained {cube.name}: {train_time(cube)}', flush=True)
    return runs


def cube_run(args: argparse.Namespace, run_dir: Path) -> Path:
    '''The run (b) evaluates: (a)'s own, or its copy trained on up to --cube-train-min.'''
    if args.cube_train_min > args.train_min:
        return run_dir.with_name(run_dir.name + '_cube')
    return run_dir


def train_time(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / 'train_time.json').read_text())


# --- eval ---------------------------------------------------------------------------------

def stage_eval(args: argparse.Namespace, runs: list[Path]) -> None:
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    for run_dir in runs:
        out = run_dir / 'eval_reach'
        if args.reach_rollouts > 0 and not (out / 'eval.json').exists():
            run([sys.executable, '-m', 'am_learning.cli_eval', str(run_dir / 'checkpoint'),
                 '--scene', SCENE, '--tasks', 'none', '--reach', str(args.reach_rollouts),
                 '--max-steps', str(args.reach_steps), '--stop', 'policy',
                 '--seed', str(REACH_SEED), '--device', 'cpu', '--out', str(out),
                 '--no-progress'], run_dir / 'eval_reach.log')
            print(f'evaluated {run_dir.name} on reach goals', flush=True)
        cube = cube_run(args, run_dir)
        out = cube / 'eval_cube'
        if args.cube_rollouts > 0 and not (out / 'eval.json').exists():
            run([sys.executable, '-m', 'am_learning.cli_eval', str(cube / 'checkpoint'),
                 '--scene', SCENE, '--tasks', 'all', '--reach', '0', '--episodes-per-task',
                 str(args.cube_rollouts), '--max-steps', str(CUBE_MAX_STEPS), '--stop',
                 'success', '--seed', str(CUBE_SEED), '--device', 'cpu', '--out', str(out),
                 '--no-progress'], cube / 'eval_cube.log')
            print(f'evaluated {cube.name} on the cube tasks', flush=True)


# --- report -------------------------------------------------------------------------------

def mean_std(values: list[float]) -> tuple[float, float]:
    '''Mean and population standard deviation (0 for one value).'''
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std())


def reach_figures(report: dict[str, Any]) -> dict[str, Any]:
    '''One run's reach figures from its am-eval report (distances in cm).'''
    rs = [r for r in report['rollout_details'] if r['task'] == 'reach']
    final = np.array([r['goal_distance'] for r in rs]) * 100
    closest = np.array([r['min_goal_distance'] for r in rs]) * 100
    start = np.array([r['start_goal_distance'] for r in rs]) * 100
    reasons: dict[str, int] = {}
    for r in rs:
        reasons[r['end_reason']] = reasons.get(r['end_reason'], 0) + 1
    return {
        'rollouts': len(rs),
        'success_pct': 100.0 * float(np.mean([r['success'] for r in rs])),
        'touched_pct': 100.0 * float(np.mean([r['touched'] for r in rs])),
        'final_cm_mean': float(final.mean()), 'final_cm_median': float(np.median(final)),
        'closest_cm_mean': float(closest.mean()), 'start_cm_mean': float(start.mean()),
        'closer_than_start_pct': 100.0 * float(np.mean(final < start)),
        'mean_steps': float(np.mean([r['steps'] for r in rs])),
        'end_reasons': reasons,
        'final_cm': [round(float(x), 2) for x in final],
        **view_error_figures(rs),
    }


def view_error_figures(rollouts: list[dict[str, Any]]) -> dict[str, float]:
    '''Mean end error along the camera's line of sight through the goal (signed and
    absolute) and across it, cm; empty for reports written before evaluation split it.'''
    pairs = np.array([(r['error_along_view'], r['error_across_view']) for r in rollouts
                      if math.isfinite(r.get('error_along_view', math.nan))]) * 100
    if not len(pairs):
        return {}
    return {'along_view_cm_mean': float(pairs[:, 0].mean()),
            'along_view_abs_cm_mean': float(np.abs(pairs[:, 0]).mean()),
            'across_view_cm_mean': float(pairs[:, 1].mean())}


def cube_figures(report: dict[str, Any]) -> dict[str, Any]:
    return {
        'rollouts': int(sum(v['rollouts'] for v in report['per_task'].values())),
        'success_pct': float(report['success_pct']['eval_tasks']),
        'per_task': {k: v['success_pct'] for k, v in report['per_task'].items()},
    }


def summarize(per_run: dict[str, dict[str, Any]]) -> dict[str, Any]:
    '''Mean and spread over seeds per agent, from the per-run figures.'''
    success: dict[str, dict[str, float]] = {}
    spread: dict[str, dict[str, float]] = {}
    touched: dict[str, dict[str, float]] = {}
    distances: dict[str, dict[str, float]] = {}
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for name, r in per_run.items():
        by_agent.setdefault(name.rsplit('_s', 1)[0], []).append(r)
    for agent, rs in by_agent.items():
        for key in ('visual_reach', 'visual_cube_single'):
            vals = [r[key]['success_pct'] for r in rs if key in r]
            if vals:
                m, s = mean_std(vals)
                success.setdefault(agent, {})[key] = m
                spread.setdefault(agent, {})[key] = s
        reach = [r['visual_reach'] for r in rs if 'visual_reach' in r]
        if reach:
            touched[agent] = {'visual_reach': mean_std([r['touched_pct'] for r in reach])[0]}
            finals = [x for r in reach for x in r['final_cm']]
            distances[agent] = {
                'final_cm_mean': float(np.mean(finals)),
                'final_cm_median': float(np.median(finals)),
                'closest_cm_mean': float(np.mean([r['closest_cm_mean'] for r in reach])),
                'start_cm_mean': float(np.mean([r['start_cm_mean'] for r in reach])),
            }
    return {'success': success, 'success_std': spread, 'touched': touched,
            'reach_distance': distances}


def verdicts(success: dict[str, dict[str, float]]) -> dict[str, str]:
    '''met / missed per target, from the measured means (absent when not measured).'''
    out = {}
    am = success.get('am', {})
    gcbc = success.get('gcbc', {})
    if 'visual_reach' in am:
        out['visual_reach'] = 'met' if am['visual_reach'] >= 80.0 else 'missed'
    if 'visual_cube_single' in am and 'visual_cube_single' in gcbc:
        ok = am['visual_cube_single'] >= 50.0 and \
            am['visual_cube_single'] >= 3.0 * gcbc['visual_cube_single']
        out['visual_cube_single'] = 'met' if ok else 'missed'
    return out


def _last_rows(metrics_csv: Path) -> list[dict[str, str]]:
    if not metrics_csv.exists():
        return []
    with open(metrics_csv) as f:
        return list(csv.DictReader(f))


def stage_report(args: argparse.Namespace, work: Path, cache: Path,
                 runs: list[Path]) -> dict[str, Any]:
    per_run: dict[str, dict[str, Any]] = {}
    for run_dir in runs:
        t = train_time(run_dir)
        r: dict[str, Any] = {
            'train_wall_s': round(t['train_wall_s'], 1), 'updates': t['end_step'],
            'stopped_by_time_limit': t['stopped_by_time_limit'],
            'updates_per_s': round(t['end_step'] / max(t['train_wall_s'], 1e-9), 1),
        }
        if (run_dir / 'eval_reach' / 'eval.json').exists():
            r['visual_reach'] = reach_figures(
                json.loads((run_dir / 'eval_reach' / 'eval.json').read_text()))
        cube = cube_run(args, run_dir)
        if (cube / 'eval_cube' / 'eval.json').exists():
            r['visual_cube_single'] = cube_figures(
                json.loads((cube / 'eval_cube' / 'eval.json').read_text()))
            if cube != run_dir:
                ct = train_time(cube)
                r['cube_train_wall_s'] = round(ct['train_wall_s'], 1)
                r['cube_updates'] = ct['end_step']
        rows = _last_rows(run_dir / 'metrics.csv')
        if rows:
            r['final_diagnostics'] = {k: float(v) for k, v in rows[-1].items()
                                      if k.startswith('diag/') and v not in ('', 'nan')}
        per_run[run_dir.name] = r
    summary = summarize(per_run)
    timing = json.loads((work / 'data_timing.json').read_text()) \
        if (work / 'data_timing.json').exists() else {}
    rollouts = {}
    if args.reach_rollouts > 0:
        rollouts['visual_reach'] = args.reach_rollouts
    if args.cube_rollouts > 0:
        rollouts['visual_cube_single'] = 5 * args.cube_rollouts
    result = {
        'benchmark': NAME,
        'command': 'python ' + shlex.join([str(Path(sys.argv[0]))] + sys.argv[1:]),
        'date': datetime.date.today().isoformat(),
        'machine': machine(),
        'git_commit': git_commit('src/am_learning', 'src/am_sim', 'bench/visual.py'),
        'metrics': {
            **summary,
            'rollouts': rollouts,
            'rollouts_note': 'per run (agent x seed); success is the mean over seeds',
            'seeds': len(args.seeds),
            'train_minutes_limit': {'visual_reach': args.train_min,
                                    'visual_cube_single': max(args.cube_train_min,
                                                              args.train_min)},
            'train_wall_s': {name: r['train_wall_s'] for name, r in per_run.items()},
            'reach_max_steps': args.reach_steps,
            'image_size': IMAGE_SIZE,
            **dataset_figures(cache),
            **{f'data_{k}': round(v, 1) for k, v in timing.items()},
        },
        'targets': TARGETS,
        'target_verdicts': verdicts(summary['success']),
        'runs': per_run,
        'notes': args.notes,
    }
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f'{NAME}.json').write_text(json.dumps(result, indent=2) + '\n')
    plot(out / f'{NAME}.png', result, runs)
    (out / f'{NAME}.md').write_text(markdown(result))
    return result


def plot(path: Path, result: dict[str, Any], runs: list[Path]) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    m = result['metrics']
    agents = list(m['success'])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    keys = [k for k in ('visual_reach', 'visual_cube_single')
            if any(k in m['success'][a] for a in agents)]
    width = 0.8 / max(len(keys) + 1, 1)
    x = np.arange(len(agents))
    for i, key in enumerate(keys):
        means = [m['success'][a].get(key, np.nan) for a in agents]
        stds = [m['success_std'][a].get(key, 0.0) for a in agents]
        axes[0].bar(x + i * width, means, width, yerr=stds, label=f'{key} success')
    if 'visual_reach' in keys:
        axes[0].bar(x + len(keys) * width, [m['touched'].get(a, {}).get('visual_reach', np.nan)
                                            for a in agents], width, label='reach touched')
    axes[0].set_xticks(x + width * len(keys) / 2, agents)
    axes[0].set_ylim(0, 100)
    axes[0].set_ylabel('% of rollouts (mean over seeds)')
    axes[0].axhline(80, color='grey', lw=0.8, ls='--')
    axes[0].legend(fontsize=7)
    axes[0].set_title('success')
    data, labels = [], []
    for name, r in result['runs'].items():
        if 'visual_reach' in r:
            data.append(r['visual_reach']['final_cm'])
            labels.append(name)
    if data:  # every run has the same goals and starts: the first run's starts
        first = json.loads((runs[0] / 'eval_reach' / 'eval.json').read_text())
        details = [d for d in first['rollout_details'] if d['task'] == 'reach']
        data.append([100 * d['start_goal_distance'] for d in details])
        labels.append('start\n(do nothing)')
        axes[1].boxplot(data, showfliers=True)
        axes[1].set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
        axes[1].axhline(3.0, color='green', lw=0.8, ls='--')
        axes[1].set_ylabel('cm to the goal when the rollout ended')
        axes[1].set_title('reach: end distance per rollout')
    for run_dir in runs:
        rows = _last_rows(run_dir / 'metrics.csv')
        for key, style in (('diag/q_offset_20', '-'), ('diag/q_random_goal', ':')):
            if rows and key in rows[0]:
                axes[2].plot([float(r['step']) for r in rows],
                             [float(r[key]) if r[key] else np.nan for r in rows], style,
                             label=f'{run_dir.name} {key[5:]}')
    axes[2].set_xlabel('updates')
    axes[2].set_ylabel('Q (AM runs)')
    axes[2].set_title('Q of goals 20 steps ahead vs random goals')
    if axes[2].lines:
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ''
    return f'{value:.{digits}f}' if isinstance(value, float) else str(value)


def markdown(result: dict[str, Any]) -> str:
    m = result['metrics']
    lines = [
        f'# {NAME}: 64x64 camera goals in am_sim (cube-single scene)', '',
        f'`{result["command"]}`  ', f'{result["date"]}, {result["machine"]}, '
        f'commit {result["git_commit"][:10]}', '',
        '| agent | reach success % | std | reach touched % | end cm (mean / median) | '
        'closest cm | start cm | cube-single success % | std |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for agent in m['success']:
        s, sd = m['success'][agent], m['success_std'][agent]
        d = m['reach_distance'].get(agent, {})
        lines.append(
            f'| {agent} | {_fmt(s.get("visual_reach"))} | {_fmt(sd.get("visual_reach"))} | '
            f'{_fmt(m["touched"].get(agent, {}).get("visual_reach"))} | '
            f'{_fmt(d.get("final_cm_mean"))} / {_fmt(d.get("final_cm_median"))} | '
            f'{_fmt(d.get("closest_cm_mean"))} | {_fmt(d.get("start_cm_mean"))} | '
            f'{_fmt(s.get("visual_cube_single"))} | {_fmt(sd.get("visual_cube_single"))} |')
    lines += ['', 'Targets: ' + '; '.join(
        f'{k}: {v} -> **{result["target_verdicts"].get(k, "not measured")}**'
        for k, v in result['targets'].items()), '',
        f'Rollouts per run: {m["rollouts"]}; seeds: {m["seeds"]}; reach time limit '
        f'{m["reach_max_steps"]} steps (20 Hz); training limit (minutes): '
        f'{m["train_minutes_limit"]}. Dataset: {m.get("dataset_frames", "?")} frames '
        f'({m.get("dataset_play_episodes", 0)} play + {m.get("dataset_reach_episodes", 0)} '
        'reach episodes), written as rosbag2 bags and built from them.', '',
        '| run | train s | updates | upd/s | reach success % | touched % | end cm | '
        'end cm along the view (mean / abs) | across | closest cm | end reasons | '
        'cube success % | per task |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for name, r in result['runs'].items():
        reach = r.get('visual_reach', {})
        cube = r.get('visual_cube_single', {})
        reasons = ', '.join(f'{k} {v}' for k, v in reach.get('end_reasons', {}).items())
        tasks = ', '.join(f'{v:.0f}' for v in cube.get('per_task', {}).values())
        lines.append(
            f'| {name} | {r["train_wall_s"]:.0f} | {r["updates"]} | {r["updates_per_s"]} | '
            f'{_fmt(reach.get("success_pct"))} | {_fmt(reach.get("touched_pct"))} | '
            f'{_fmt(reach.get("final_cm_mean"))} | {_fmt(reach.get("along_view_cm_mean"))} / '
            f'{_fmt(reach.get("along_view_abs_cm_mean"))} | '
            f'{_fmt(reach.get("across_view_cm_mean"))} | {_fmt(reach.get("closest_cm_mean"))} | '
            f'{reasons} | {_fmt(cube.get("success_pct"))} | {tasks} |')
    data = {k: v for k, v in m.items() if k.startswith('data_')}
    lines += ['', f'Data stage seconds: {data}', '', f'![success and distances]({NAME}.png)',
              '', f'Notes: {result["notes"]}', '']
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--play-episodes', type=int, default=250,
                        help="episodes of OGBench's play oracle")
    parser.add_argument('--reach-episodes', type=int, default=250,
                        help='episodes of the reach operator (random workspace points)')
    parser.add_argument('--steps', type=int, default=400, help='control steps per episode')
    parser.add_argument('--agents', default='am,gcbc')
    parser.add_argument('--seeds', default='0,1')
    parser.add_argument('--train-min', type=float, default=30.0,
                        help='training limit per run for (a), minutes (enforced by am-train)')
    parser.add_argument('--cube-train-min', type=float, default=60.0,
                        help='training limit per run for (b); above --train-min, the run of '
                             '(a) is continued in a copy up to it')
    parser.add_argument('--reach-rollouts', type=int, default=100, help='reach goals per run')
    parser.add_argument('--reach-steps', type=int, default=100,
                        help='time limit of a reach goal, control steps (20 Hz)')
    parser.add_argument('--cube-rollouts', type=int, default=20,
                        help='rollouts per cube-single evaluation task; 0 skips (b)')
    parser.add_argument('--threads', type=int, default=2, help='torch threads per run')
    parser.add_argument('--set', action='append', default=[], help='config override')
    parser.add_argument('--data-jobs', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--work', default='/tmp/am_visual')
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
    runs = stage_train(args, cache, work / 'runs')
    if args.stage == 'train':
        return
    stage_eval(args, runs)
    if args.stage == 'eval':
        return
    result = stage_report(args, work, cache, runs)
    print(json.dumps({k: result['metrics'][k] for k in ('success', 'success_std', 'touched',
                                                        'reach_distance', 'train_wall_s')},
                     indent=2))
    print(json.dumps(result['target_verdicts']))


if __name__ == '__main__':
    main()
