'''Benchmark `chaining` (issue 5): goals that need two unrelated halves of play, Actionable
Models with goal chaining against the same agent without it.

    flock /tmp/am-heavy.lock python bench/chaining.py --episodes 100 --steps 200 \
        --eval-episodes 80 --goals 40 --seeds 0 --updates 10000 --work /tmp/am_chaining

Stages (each skipped when its output exists, so a run can be continued):
  data   the scripted play operator writes cube-single episode bags (am_sim.generate, seed
         0), am-dataset builds their state cache, and `split_cache` writes a second cache in
         which every episode is cut at its midpoint into two episodes that share nothing
         (the transition across the cut is dropped). Held-out episodes (generator seed 1,
         never trained on) go through the same path into their own cache;
  train  am-train on the split cache, once with relabel.goal_chaining=true and once with
         false, everything else the code's defaults (gamma set to 0.99 explicitly);
  eval   goals from held-out episodes: the start is the episode's first state (restored
         exactly by the scene's play reset with the episode's own reset seed, checked
         against the recorded state), the goal its last state, kept only when the cube
         moved more than --min-displacement. The greedy policy (GoalReachingPolicy, CEM
         over Q) acts for at most --max-steps; success is OGBench's cube test
         (CubeEnv._compute_successes: cube within 4 cm of the goal's cube position);
  report bench/results/chaining.{json,md,png}.

How often a single half already holds an evaluation displacement is measured and reported
(`data_facts`): in the goal's own episode (does the cube pass within 4 cm of the goal in
the first half, or is it still within 4 cm of its start somewhere in the second half?) and
anywhere in the training halves (does some half take the cube from within 4 cm of the
start position to within 4 cm of the goal position?). Goals whose own episode needs both
halves are scored apart as `split_cube_single_needs_both`.
'''

import argparse
from concurrent.futures import ProcessPoolExecutor
import csv
import datetime
import json
import multiprocessing
import os
from pathlib import Path
import re
import shlex
import shutil
import sys
import tempfile
import time

from benchlib import git_commit, machine, run, state_training_args
import numpy as np

REPO = Path(__file__).resolve().parents[1]
NAME = 'chaining'
DATASET = 'split_cube_single'
SCENE = 'cube-single'
CUBE_SUCCESS_M = 0.04
'''OGBench's cube success radius (CubeEnv._compute_successes), used for the data facts;
the rollouts call OGBench's own function.'''
AGENTS = {'am_chaining': 'true', 'am_no_chaining': 'false'}
HELDOUT_SEED = 1
TRAIN_SEED = 0


# --- splitting episodes ---------------------------------------------------------------------

def split_ends(episode_ends: np.ndarray, min_length: int = 2) -> np.ndarray:
    '''Exclusive ends after cutting every episode at its midpoint into two episodes.

    An episode [s, e) of L = e - s frames becomes [s, s + L // 2) and [s + L // 2, e); the
    transition from frame s + L // 2 - 1 to s + L // 2 is lost, as it would be between two
    separately recorded episodes. Episodes shorter than 2 * min_length stay whole.'''
    ends = np.asarray(episode_ends, dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    out = []
    for s, e in zip(starts, ends):
        if e - s >= 2 * min_length:
            out.append(s + (e - s) // 2)
        out.append(e)
    return np.asarray(out, dtype=np.int64)


def split_cache(src: Path, dst: Path) -> dict:
    '''Write `dst`, a copy of the dataset cache `src` whose episodes are cut in two halves.

    am_learning has no writer for a cache from arrays (build_cache reads bags), so this
    follows its layout (am_learning.data.cache): the per-frame arrays are copied unchanged
    (frame order and the normalisation statistics stay valid), episode_ends.npy gets the
    new ends, and the manifest one entry per new episode (`split_of`: the index of the
    source episode, `half`: 0 or 1), new counts and `extra.split` describing the cut.
    Written into a hidden sibling folder and renamed into place, like a build. Returns the
    manifest.'''
    from am_learning.data import load_dataset

    src, dst = Path(src), Path(dst)
    dataset = load_dataset(src)
    manifest = json.loads(json.dumps(dataset.manifest))
    old_ends = dataset.episode_ends
    new_ends = split_ends(old_ends)
    old_episodes = manifest.get('episodes') or [{} for _ in old_ends]
    episodes = []
    old_starts = np.concatenate([[0], old_ends[:-1]])
    new_starts = np.concatenate([[0], new_ends[:-1]])
    for k, (s, e) in enumerate(zip(old_starts, old_ends)):
        inside = np.flatnonzero((new_starts >= s) & (new_ends <= e))
        for half, j in enumerate(inside):
            entry = dict(old_episodes[k])
            entry.update(start_index=int(new_starts[j]), end_index=int(new_ends[j]),
                         split_of=k, half=half)
            if 'episode_id' in entry:
                entry['source_episode_id'] = entry['episode_id']
                entry['episode_id'] = f'{entry["episode_id"]}_half{half}'
            episodes.append(entry)
    manifest['episodes'] = episodes
    manifest['counts'] = {**manifest.get('counts', {}), 'episodes': len(new_ends)}
    manifest['arrays']['episode_ends'] = {'file': 'episode_ends.npy',
                                          'shape': [len(new_ends)]}
    manifest['extra'] = {**(manifest.get('extra') or {}), 'split': {
        'source_cache': str(src.resolve()), 'source_episodes': len(old_ends),
        'rule': 'each episode cut at frame L // 2 into two episodes; the transition across '
                'the cut is dropped (bench/chaining.py split_cache)'}}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{dst.name}.split-', dir=dst.parent))
    try:
        for name, spec in manifest['arrays'].items():
            if name != 'episode_ends':
                shutil.copyfile(src / spec['file'], tmp / spec['file'])
        np.save(tmp / 'episode_ends.npy', new_ends)
        (tmp / 'manifest.json').write_text(json.dumps(manifest, indent=1))
        if dst.exists():
            shutil.rmtree(dst)
        os.rename(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# --- data -----------------------------------------------------------------------------------

def cube_positions(states: np.ndarray) -> np.ndarray:
    '''(N, 3) cube positions in metres from cube-single state vectors (decode_state).'''
    from am_learning.envs import decode_state

    return np.stack([decode_state(s, 1)['privileged/block_0_pos'] for s in states])


def _episode_index(entry: dict) -> int:
    '''The generator's episode index from its id (am_sim.generate.episode_id).'''
    name = str(entry.get('episode_id') or entry.get('source'))
    match = re.search(r'_s\d+_(\d+)$', name)
    if not match:
        raise ValueError(f'cannot read the episode index of {name!r}')
    return int(match.group(1))


def reset_seed(run_seed: int, index: int) -> int:
    '''The seed am_sim.generate passed to the scene's reset for episode `index`.'''
    return int(np.random.SeedSequence([run_seed, index]).generate_state(2)[0])


def _generate_and_build(args: argparse.Namespace, work: Path, name: str, seed: int,
                        episodes: int) -> dict:
    bags, cache = work / f'{name}_bags', work / f'{name}_cache'
    start = time.monotonic()
    if bags.exists():
        shutil.rmtree(bags)  # a partial generation from an interrupted run
    run([sys.executable, '-m', 'am_sim.generate', '--scene', SCENE, '--episodes',
         str(episodes), '--steps', str(args.steps), '--state-only', '--workers',
         str(args.data_jobs), '--seed', str(seed), '--out', str(bags)],
        work / 'logs' / f'generate_{name}.log')
    generated = time.monotonic()
    run([sys.executable, '-m', 'am_learning.cli_dataset', 'build', str(bags), '--out',
         str(cache), '--no-images', '--require-state', '--no-progress', '--workers',
         str(args.data_jobs)], work / 'logs' / f'dataset_{name}.log')
    return {f'{name}_generate_s': generated - start,
            f'{name}_build_s': time.monotonic() - generated}


def select_goals(heldout, count: int, min_displacement: float) -> list[dict]:
    '''(start, goal) pairs from held-out episodes: first and last state, the cube moved.'''
    states = np.asarray(heldout.states)
    goals = []
    for k, (s, e) in enumerate(zip(heldout.episode_starts, heldout.episode_ends)):
        cubes = cube_positions(states[s:e])
        moved = float(np.linalg.norm(cubes[-1] - cubes[0]))
        if moved <= min_displacement:
            continue
        mid = (e - s) // 2
        # One half of this episode alone holds the displacement when the cube comes within
        # the success radius of the goal in the first half, or is still within it of the
        # start somewhere in the second half.
        first_half = bool(np.any(np.linalg.norm(cubes[:mid] - cubes[-1], axis=1)
                                 <= CUBE_SUCCESS_M))
        second_half = bool(np.any(np.linalg.norm(cubes[mid:] - cubes[0], axis=1)
                                  <= CUBE_SUCCESS_M))
        entry = heldout.manifest['episodes'][k]
        index = _episode_index(entry)
        goals.append({'episode': k, 'index': index,
                      'reset_seed': reset_seed(HELDOUT_SEED, index),
                      'start_state': states[s].tolist(), 'goal_state': states[e - 1].tolist(),
                      'displacement_m': moved, 'first_half_suffices': first_half,
                      'second_half_suffices': second_half,
                      'needs_both_halves': not (first_half or second_half)})
        if len(goals) == count:
            break
    return goals


def _covered(cubes: np.ndarray, ends: np.ndarray, start: np.ndarray,
             goal: np.ndarray) -> bool:
    '''Some episode (by `ends`) goes from within the radius of `start` to within it of
    `goal` later in the same episode.'''
    near_start = np.linalg.norm(cubes - start, axis=1) <= CUBE_SUCCESS_M
    near_goal = np.linalg.norm(cubes - goal, axis=1) <= CUBE_SUCCESS_M
    for s, e in zip(np.concatenate([[0], ends[:-1]]), ends):
        a, b = np.flatnonzero(near_start[s:e]), np.flatnonzero(near_goal[s:e])
        if len(a) and len(b) and a[0] < b[-1]:
            return True
    return False


def data_facts(full, split, goals: list[dict]) -> dict:
    '''How much of the evaluation displacements single episodes already hold.'''
    cubes = cube_positions(np.asarray(full.states))

    def moved(ends: np.ndarray) -> float:
        starts = np.concatenate([[0], ends[:-1]])
        d = np.linalg.norm(cubes[ends - 1] - cubes[starts], axis=1)
        return 100.0 * float(np.mean(d > CUBE_SUCCESS_M))

    n = max(len(goals), 1)
    starts = [cube_positions(np.asarray([g['start_state']]))[0] for g in goals]
    ends = [cube_positions(np.asarray([g['goal_state']]))[0] for g in goals]
    return {
        'train_episodes': int(full.num_episodes),
        'train_halves': int(split.num_episodes),
        'train_frames': int(full.num_frames),
        'episodes_cube_moved_pct': moved(full.episode_ends),
        'halves_cube_moved_pct': moved(split.episode_ends),
        'goals': len(goals),
        'goal_displacement_m_mean': float(np.mean([g['displacement_m'] for g in goals]))
        if goals else None,
        'goal_own_first_half_suffices_pct':
            100.0 * sum(g['first_half_suffices'] for g in goals) / n,
        'goal_own_second_half_suffices_pct':
            100.0 * sum(g['second_half_suffices'] for g in goals) / n,
        'goal_needs_both_halves_pct': 100.0 * sum(g['needs_both_halves'] for g in goals) / n,
        'goal_covered_by_a_training_half_pct': 100.0 * sum(
            _covered(cubes, split.episode_ends, s, e) for s, e in zip(starts, ends)) / n,
        'goal_covered_by_a_training_episode_pct': 100.0 * sum(
            _covered(cubes, full.episode_ends, s, e) for s, e in zip(starts, ends)) / n,
    }


def stage_data(args: argparse.Namespace, work: Path) -> Path:
    split = work / 'split_cache'
    goals_path = work / 'goals.json'
    if (split / 'manifest.json').exists() and goals_path.exists():
        return split
    from am_learning.data import load_dataset

    timing = {}
    if not (work / 'train_cache' / 'manifest.json').exists():
        timing.update(_generate_and_build(args, work, 'train', TRAIN_SEED, args.episodes))
    if not (work / 'heldout_cache' / 'manifest.json').exists():
        timing.update(_generate_and_build(args, work, 'heldout', HELDOUT_SEED,
                                          args.eval_episodes))
    start = time.monotonic()
    split_cache(work / 'train_cache', split)
    timing['split_s'] = time.monotonic() - start
    full, halves = load_dataset(work / 'train_cache'), load_dataset(split)
    heldout = load_dataset(work / 'heldout_cache')
    goals = select_goals(heldout, args.goals, args.min_displacement)
    facts = data_facts(full, halves, goals)
    facts['heldout_episodes'] = int(heldout.num_episodes)
    (work / 'data_facts.json').write_text(json.dumps({**facts, **timing}, indent=1))
    goals_path.write_text(json.dumps(goals))
    print(f'data: {json.dumps({**facts, **timing})}', flush=True)
    return split


# --- train ----------------------------------------------------------------------------------

def stage_train(args: argparse.Namespace, work: Path, cache: Path) -> list[Path]:
    runs = [work / 'runs' / f'{agent}_s{seed}' for agent in AGENTS for seed in args.seeds]
    for run_dir in runs:
        if (run_dir / 'checkpoint' / 'model.safetensors').exists() and (
                run_dir / 'done').exists():
            continue
        agent, seed = run_dir.name.rsplit('_s', 1)
        cmd = [sys.executable, '-m', 'am_learning.cli_train', '--dataset', str(cache),
               '--run-dir', str(run_dir), '--observation', 'state', '--agent', 'am',
               '--seed', seed, '--updates', str(args.updates), '--device', args.device,
               '--no-progress', '--set', f'num_threads={args.threads}',
               '--set', f'relabel.goal_chaining={AGENTS[agent]}', '--set', 'gamma=0.99',
               *state_training_args()]
        for item in args.set:
            cmd += ['--set', item]
        start = time.monotonic()
        run(cmd, run_dir / 'train.log')
        (run_dir / 'done').write_text(f'{time.monotonic() - start:.1f}\n')
        print(f'trained {run_dir.name} in {time.monotonic() - start:.0f} s', flush=True)
    return runs


# --- eval -----------------------------------------------------------------------------------

def evaluate_run(run_dir: str, goals_path: str, max_steps: int, threads: int) -> str:
    '''Greedy rollouts of one checkpoint towards every goal; writes run_dir/eval.json.'''
    import torch

    from am_learning.envs import make_scene
    from am_learning.policy import GoalReachingPolicy

    torch.set_num_threads(threads)
    run_path = Path(run_dir)
    goals = json.loads(Path(goals_path).read_text())
    seed = int(run_path.name.rsplit('_s', 1)[1])
    policy = GoalReachingPolicy.from_checkpoint(run_path / 'checkpoint', seed=seed)
    scene = make_scene(SCENE, render=False)
    env = scene._env  # OGBench's CubeEnv: its success test reads the target mocap
    start = time.monotonic()
    results = []
    for g in goals:
        scene.reset(seed=g['reset_seed'])
        start_state, goal_state = np.asarray(g['start_state']), np.asarray(g['goal_state'])
        restore_error = float(np.max(np.abs(scene.state() - start_state)))
        goal_cube = cube_positions(goal_state[None])[0]
        env._data.mocap_pos[env._cube_target_mocap_ids[0]] = goal_cube
        policy.set_goal(goal_state.astype(np.float32))
        success, steps, qs, closest = False, 0, [], np.inf
        while steps < max_steps and not success:
            step = policy.act(scene.state(), scene.proprio())
            scene.step(step.action)
            steps += 1
            qs.append(step.q_value)
            success = bool(all(env._compute_successes()))
            cube = cube_positions(scene.state()[None])[0]
            closest = min(closest, float(np.linalg.norm(cube - goal_cube)))
        cube = cube_positions(scene.state()[None])[0]
        results.append({'episode': g['episode'], 'success': success, 'steps': steps,
                        'final_cube_distance_m': float(np.linalg.norm(cube - goal_cube)),
                        'closest_cube_distance_m': closest,
                        'mean_q': float(np.mean(qs)), 'restore_error': restore_error,
                        'needs_both_halves': g['needs_both_halves']})
    scene.close()
    out = {'rollouts': len(results), 'max_steps': max_steps,
           'eval_s': time.monotonic() - start, 'results': results}
    (run_path / 'eval.json').write_text(json.dumps(out, indent=1))
    return run_dir


def stage_eval(args: argparse.Namespace, work: Path, runs: list[Path]) -> None:
    todo = [r for r in runs if not (r / 'eval.json').exists()]
    if not todo:
        return
    context = multiprocessing.get_context('spawn')
    threads = max(1, args.threads // max(1, min(args.eval_jobs, len(todo))))
    with ProcessPoolExecutor(args.eval_jobs, mp_context=context) as pool:
        futures = [pool.submit(evaluate_run, str(r), str(work / 'goals.json'),
                               args.max_steps, threads) for r in todo]
        for future in futures:
            print(f'evaluated {Path(future.result()).name}', flush=True)


# --- report ---------------------------------------------------------------------------------

def _accelerator() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f'GPU {torch.cuda.get_device_name(0)}'
    except ImportError:
        pass
    return 'no GPU'


def _rows(metrics_csv: Path) -> list[dict]:
    with open(metrics_csv) as f:
        return list(csv.DictReader(f))


def _pct(results: list[dict], subset: bool = False) -> float | None:
    rs = [r for r in results if r['needs_both_halves'] or not subset]
    return 100.0 * float(np.mean([r['success'] for r in rs])) if rs else None


def stage_report(args: argparse.Namespace, work: Path, runs: list[Path]) -> dict:
    facts = json.loads((work / 'data_facts.json').read_text())
    per_agent: dict[str, dict[str, list[float]]] = {}
    per_run = {}
    for run_dir in runs:
        agent = run_dir.name.rsplit('_s', 1)[0]
        ev = json.loads((run_dir / 'eval.json').read_text())
        rs = ev['results']
        rows = _rows(run_dir / 'metrics.csv')
        last = rows[-1] if rows else {}
        bucket = per_agent.setdefault(agent, {DATASET: [], f'{DATASET}_needs_both': []})
        bucket[DATASET].append(_pct(rs))
        if _pct(rs, subset=True) is not None:
            bucket[f'{DATASET}_needs_both'].append(_pct(rs, subset=True))
        per_run[run_dir.name] = {
            'success_pct': _pct(rs), 'success_pct_needs_both': _pct(rs, subset=True),
            'rollouts': ev['rollouts'],
            'mean_steps': float(np.mean([r['steps'] for r in rs])),
            'mean_final_cube_distance_m': float(np.mean([r['final_cube_distance_m']
                                                         for r in rs])),
            'mean_closest_cube_distance_m': float(np.mean([r['closest_cube_distance_m']
                                                           for r in rs])),
            'max_restore_error': float(max(r['restore_error'] for r in rs)),
            'train_s': float((run_dir / 'done').read_text()),
            'eval_s': ev['eval_s'],
            'final_diagnostics': {k: float(v) for k, v in last.items()
                                  if k.startswith(('diag/', 'critic/'))
                                  and v not in ('', 'nan')},
        }
    success = {a: {k: float(np.mean(v)) for k, v in d.items() if v}
               for a, d in per_agent.items()}
    spread = {a: {k: float(np.std(v)) for k, v in d.items() if v}
              for a, d in per_agent.items()}
    metrics = {
        'success': success,
        'success_std': spread,
        'rollouts': len(json.loads((work / 'goals.json').read_text())),
        'rollouts_needs_both': round(facts['goals'] * facts['goal_needs_both_halves_pct']
                                     / 100),
        'seeds': len(args.seeds),
        'updates': args.updates,
        'max_steps': args.max_steps,
        'dataset_transitions': args.episodes * args.steps,
        'min_displacement_m': args.min_displacement,
    }
    with_c = success.get('am_chaining', {}).get(DATASET)
    without = success.get('am_no_chaining', {}).get(DATASET)
    if with_c is not None and without:
        metrics['ratio_chaining_over_no_chaining'] = with_c / without
    metrics['target_2x_met'] = bool(with_c is not None and with_c > 0
                                    and with_c >= 2 * (without or 0.0))
    metrics['data'] = facts
    result = {
        'benchmark': NAME,
        'command': 'python ' + shlex.join([str(Path(sys.argv[0]))] + sys.argv[1:]),
        'date': datetime.date.today().isoformat(),
        'machine': machine(_accelerator()),
        'git_commit': git_commit('src/am_learning', 'src/am_sim', 'bench/chaining.py'),
        'metrics': metrics,
        'seeds': args.seeds,
        'work': str(work),
        'runs': per_run,
        'notes': args.notes,
    }
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f'{NAME}.json').write_text(json.dumps(result, indent=2) + '\n')
    _plot(out / f'{NAME}.png', result, runs)
    _write_markdown(out / f'{NAME}.md', result)
    return result


def _plot(path: Path, result: dict, runs: list[Path]) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    m = result['metrics']
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    agents = list(m['success'])
    x = np.arange(len(agents))
    for offset, key, label in ((-0.2, DATASET, f'all goals ({m["rollouts"]})'),
                               (0.2, f'{DATASET}_needs_both',
                                f'needs both halves ({m["rollouts_needs_both"]})')):
        vals = [m['success'][a].get(key, np.nan) for a in agents]
        errs = [m['success_std'][a].get(key, 0.0) for a in agents]
        axes[0].bar(x + offset, vals, 0.4, yerr=errs, label=label)
    axes[0].set_xticks(x, agents)
    axes[0].set_ylabel('success %')
    axes[0].set_title(f'{DATASET}: {m["seeds"]} seed(s), {m["updates"]} updates')
    axes[0].legend(fontsize=8)
    for run_dir in runs:
        ev = json.loads((run_dir / 'eval.json').read_text())
        d = sorted(r['final_cube_distance_m'] for r in ev['results'])
        axes[1].plot(d, np.linspace(0, 100, len(d)), label=run_dir.name)
    goals = json.loads((Path(result['work']) / 'goals.json').read_text())
    d = sorted(g['displacement_m'] for g in goals)
    axes[1].plot(d, np.linspace(0, 100, len(d)), color='grey', ls=':',
                 label='cube left at its start (goal displacement)')
    axes[1].axvline(CUBE_SUCCESS_M, color='grey', ls='--', lw=1)
    axes[1].set_xlabel('final cube distance to goal (m)')
    axes[1].set_ylabel('% of rollouts at or below')
    axes[1].legend(fontsize=7)
    for run_dir in runs:
        rows = _rows(run_dir / 'metrics.csv')
        key = next((k for k in ('diag/q_random_goal', 'diag/q_offset_50', 'critic/q_mean')
                    if rows and k in rows[0]), None)
        if key:
            axes[2].plot([float(r['step']) for r in rows],
                         [float(r[key]) if r[key] else np.nan for r in rows],
                         label=f'{run_dir.name} {key}')
    axes[2].set_xlabel('updates')
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(v: float | None) -> str:
    return '-' if v is None else f'{v:.1f}'


def _write_markdown(path: Path, result: dict) -> None:
    m = result['metrics']
    d = m['data']
    ratio = m.get('ratio_chaining_over_no_chaining')
    lines = [
        f'# {NAME}: goal chaining across split episodes', '',
        f'`{result["command"]}`  ', f'{result["date"]}, {result["machine"]}, '
        f'commit {result["git_commit"][:10]}', '',
        '| agent | success % (all goals) | success % (goals needing both halves) | '
        'std over seeds | seeds |', '|---|---|---|---|---|',
    ]
    for agent, s in m['success'].items():
        lines.append(f'| {agent} | {_fmt(s.get(DATASET))} | '
                     f'{_fmt(s.get(f"{DATASET}_needs_both"))} | '
                     f'{_fmt(m["success_std"][agent].get(DATASET))} | {m["seeds"]} |')
    lines += [
        '',
        f'Rollouts per agent and seed: {m["rollouts"]} ({m["rollouts_needs_both"]} of them '
        f'need both halves), at most {m["max_steps"]} steps each; {m["updates"]} updates '
        f'per run on {d["train_halves"]} half-episodes ({m["dataset_transitions"]} '
        'transitions before the split).',
        f'Ratio chaining / no chaining: '
        f'{"undefined (no chaining: 0 %)" if ratio is None else f"{ratio:.2f}"}; '
        f'target >= 2x: **{"met" if m["target_2x_met"] else "missed"}**.', '',
        '| data fact | value |', '|---|---|',
        f'| training episodes cut into halves | {d["train_episodes"]} -> '
        f'{d["train_halves"]} |',
        f'| training episodes / halves whose cube ends > 4 cm from its start | '
        f'{d["episodes_cube_moved_pct"]:.0f} % / {d["halves_cube_moved_pct"]:.0f} % |',
        f'| eval goals (held-out, cube moved > {m["min_displacement_m"]} m) | '
        f'{d["goals"]} of {d["heldout_episodes"]} held-out episodes, mean displacement '
        f'{_fmt(100 * d["goal_displacement_m_mean"]) if d["goal_displacement_m_mean"] else "-"}'
        ' cm |',
        f'| goal held by the first half of its own episode | '
        f'{d["goal_own_first_half_suffices_pct"]:.0f} % |',
        f'| goal held by the second half of its own episode | '
        f'{d["goal_own_second_half_suffices_pct"]:.0f} % |',
        f'| goal needs both halves of its own episode | '
        f'{d["goal_needs_both_halves_pct"]:.0f} % |',
        f'| goal covered by some training half (cube from near start to near goal) | '
        f'{d["goal_covered_by_a_training_half_pct"]:.0f} % |',
        f'| ... by some whole training episode (before the split) | '
        f'{d["goal_covered_by_a_training_episode_pct"]:.0f} % |',
        '',
        '| run | success % | needs both % | mean steps | final / closest cube distance m | '
        'train s | eval s |', '|---|---|---|---|---|---|---|',
    ]
    for name, r in result['runs'].items():
        lines.append(f'| {name} | {_fmt(r["success_pct"])} | '
                     f'{_fmt(r["success_pct_needs_both"])} | {r["mean_steps"]:.0f} | '
                     f'{r["mean_final_cube_distance_m"]:.3f} / '
                     f'{r["mean_closest_cube_distance_m"]:.3f} | {r["train_s"]:.0f} | '
                     f'{r["eval_s"]:.0f} |')
    lines += ['', f'![success, cube distances and Q]({NAME}.png)', '',
              f'Notes: {result["notes"]}', '']
    path.write_text('\n'.join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--episodes', type=int, default=1000, help='training play episodes')
    parser.add_argument('--steps', type=int, default=200, help='steps per episode')
    parser.add_argument('--eval-episodes', type=int, default=200,
                        help='held-out episodes to draw goals from')
    parser.add_argument('--goals', type=int, default=100, help='evaluation goals (rollouts)')
    parser.add_argument('--min-displacement', type=float, default=0.04,
                        help='metres the cube must move between start and goal')
    parser.add_argument('--max-steps', type=int, default=200, help='rollout step budget')
    parser.add_argument('--seeds', default='0,1,2')
    parser.add_argument('--updates', type=int, default=100000)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--threads', type=int, default=2, help='torch threads per run')
    parser.add_argument('--set', action='append', default=[],
                        help='extra config override for both agents')
    parser.add_argument('--data-jobs', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--eval-jobs', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--work', default='/tmp/am_chaining')
    parser.add_argument('--results-dir', default=str(REPO / 'bench' / 'results'))
    parser.add_argument('--stage', default='all', choices=['all', 'data', 'train', 'eval',
                                                          'report'])
    parser.add_argument('--notes', default='')
    args = parser.parse_args()
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
    stage_eval(args, work, runs)
    if args.stage == 'eval':
        return
    result = stage_report(args, work, runs)
    print(json.dumps(result['metrics'], indent=2))


if __name__ == '__main__':
    main()
