'''paired_acting: two ways of acting on the same checkpoints, compared start by start.

    python bench/paired_acting.py RUN/checkpoint [RUN/checkpoint ...] --scene cube-single \\
        --a-name actor --b-name no_actor --b-args=--no-actor --seeds 1000,2000,3000 \\
        --rollouts 20 --jobs 2 --work /tmp/paired --name ogbench_state_actor_paired

For every checkpoint and evaluation seed, am-eval runs the scene's evaluation tasks twice
(`--rollouts` per task, OGBench's step limit): once with `--a-args`, once with `--b-args`. The
seed fixes the tasks' starts and goals, so rollout i of one arm and rollout i of the other
start from the same state towards the same goal: the comparison is paired. Reported per arm:
successes, and am-eval's cube stages (percent near / lifted / a grasp attempted); between
the arms, McNemar's test over the starts where exactly one arm succeeded (won, lost,
z = (won - lost) / sqrt(won + lost); |z| > 1.96 is a difference at the 5% level). A spread
of a few rollouts in a hundred is what two evaluation seeds of one checkpoint already differ
by, so two acting rules are compared here and not by their separate success rates.

Evaluations already in --work are reused (a run can be continued or extended with seeds).
Writes bench/results/<name>.json and .md.
'''

import argparse
from concurrent.futures import ThreadPoolExecutor
import datetime
import json
import math
from pathlib import Path
import shlex
import sys

from benchlib import OGBENCH_MAX_STEPS, ROOT, git_commit, machine, run

# OGBench's episode limits; point-world is am-eval's toy scene (reach tasks only).
MAX_STEPS = {**OGBENCH_MAX_STEPS, 'point-world': 30}
STAGES = ('near', 'lifted', 'attempted_grasp')
'''Of am-eval's cube_stages_pct: the gripper came near a cube, lifted one, closed at all.'''


def label(checkpoint: Path) -> str:
    '''A checkpoint's name: its run's folder (am-train's RUN/checkpoint), RUN_STEP for a
    learning-curve snapshot (ogbench_state's RUN/curve/STEP), else the folder's name.'''
    if checkpoint.name == 'checkpoint':
        return checkpoint.parent.name
    if checkpoint.parent.name == 'curve':
        return f'{checkpoint.parent.parent.name}_{checkpoint.name}'
    return checkpoint.name


def evaluate(checkpoint: Path, out: Path, seed: int, extra: list[str], args) -> dict:
    '''am-eval of one checkpoint, one seed, one arm (reused when out/eval.json exists).
    With --jobs > 1 each evaluation gets one torch thread: two on 2 cores, not four.'''
    if not (out / 'eval.json').exists():
        run([sys.executable, '-m', 'am_learning.cli_eval', str(checkpoint),
             '--scene', args.scene, '--tasks', 'all', '--reach', str(args.reach),
             '--episodes-per-task', str(args.rollouts), '--max-steps',
             str(MAX_STEPS[args.scene]), '--seed', str(seed), '--device', 'cpu',
             '--filmstrips', '0', '--no-progress', '--out', str(out), *extra],
            out.parent / f'{out.name}.log',
            env={'OMP_NUM_THREADS': '1'} if args.jobs > 1 else None)
    return json.loads((out / 'eval.json').read_text())


def mcnemar(a: list[bool], b: list[bool]) -> dict:
    '''Paired comparison of two success lists over the same starts.'''
    if len(a) != len(b):
        raise ValueError(f'unpaired: {len(a)} rollouts against {len(b)}')
    won = sum(x and not y for x, y in zip(a, b))
    lost = sum(y and not x for x, y in zip(a, b))
    z = (won - lost) / math.sqrt(won + lost) if won + lost else 0.0
    return {'won': won, 'lost': lost, 'z': round(z, 2)}


def pair(report_a: dict, report_b: dict) -> tuple[list[bool], list[bool]]:
    '''Success per rollout of both arms, checked to be the same tasks in the same order.'''
    a, b = report_a['rollout_details'], report_b['rollout_details']
    if [d['task'] for d in a] != [d['task'] for d in b]:
        raise ValueError('the two arms did not roll out the same tasks in the same order')
    return [d['success'] for d in a], [d['success'] for d in b]


def _stages(report: dict) -> dict[str, float] | None:
    '''am-eval's cube stages (percent of rollouts); None where no rollout had a cube.'''
    pct = report.get('cube_stages_pct')
    return {s: pct[s] for s in STAGES} if pct else None


def compare(args) -> dict:
    arms = {args.a_name: shlex.split(args.a_args), args.b_name: shlex.split(args.b_args)}
    jobs = [(ckpt, seed, arm) for ckpt in args.checkpoints for seed in args.seeds
            for arm in arms]

    def one(job):
        ckpt, seed, arm = job
        name = f'{label(ckpt)}_{seed}_{arm}'
        report = evaluate(ckpt, args.work / name, seed, arms[arm], args)
        details = report['rollout_details']
        print(f'{name}: {sum(d["success"] for d in details)} of {len(details)}', flush=True)
        return report

    with ThreadPoolExecutor(args.jobs) as pool:
        reports = dict(zip(jobs, pool.map(one, jobs)))
    cells, all_a, all_b = [], [], []
    for ckpt in args.checkpoints:
        for seed in args.seeds:
            ra, rb = reports[ckpt, seed, args.a_name], reports[ckpt, seed, args.b_name]
            a, b = pair(ra, rb)
            all_a += a
            all_b += b
            cells.append({'run': label(ckpt), 'step': ra['checkpoint_step'], 'seed': seed,
                          'rollouts': len(a), args.a_name: sum(a), args.b_name: sum(b),
                          'stages_pct': {arm: _stages(r) for arm, r in
                                         ((args.a_name, ra), (args.b_name, rb))},
                          'paired': mcnemar(a, b)})
    n = len(all_a)
    dataset = args.scene.replace('-', '_')
    return {
        'success': {args.a_name: {dataset: round(100 * sum(all_a) / n, 2)},
                    args.b_name: {dataset: round(100 * sum(all_b) / n, 2)}},
        'successes': {args.a_name: sum(all_a), args.b_name: sum(all_b)},
        'rollouts': n,
        'paired': mcnemar(all_a, all_b),
        'cells': cells,
    }


def write_markdown(path: Path, result: dict, a: str, b: str) -> None:
    m = result['metrics']
    lines = [f'# {result["benchmark"]}', '', f'`{result["command"]}`  ',
             f'{result["date"]}, {result["machine"]}, commit {result["git_commit"]}', '',
             f'Arms: **{a}** (`{result["arms"][a] or "(default)"}`) against **{b}** '
             f'(`{result["arms"][b] or "(default)"}`), the same checkpoints, the same starts.', '',
             f'| run | updates | eval seed | rollouts | {a} | {b} | won | lost | z | '
             f'{a}: near / lifted / attempted, % | {b}: near / lifted / attempted, % |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for c in m['cells']:
        sa, sb = ('-' if c['stages_pct'][arm] is None else
                  ' / '.join(f'{c["stages_pct"][arm][s]:.0f}' for s in STAGES)
                  for arm in (a, b))
        lines.append(f'| {c["run"]} | {c["step"]} | {c["seed"]} | {c["rollouts"]} | {c[a]} | '
                     f'{c[b]} | {c["paired"]["won"]} | {c["paired"]["lost"]} | '
                     f'{c["paired"]["z"]} | {sa} | {sb} |')
    p = m['paired']
    dataset = next(iter(m['success'][a]))
    lines += ['', f'All: {a} {m["successes"][a]} of {m["rollouts"]} '
              f'({m["success"][a][dataset]}%), {b} {m["successes"][b]} '
              f'({m["success"][b][dataset]}%); paired by start {a} won {p["won"]} and lost '
              f'{p["lost"]}: McNemar z = {p["z"]} (|z| > 1.96: a difference at the 5% level).']
    if result['notes']:
        lines += ['', f'Notes: {result["notes"]}']
    path.write_text('\n'.join(lines) + '\n')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoints', nargs='+', type=Path)
    parser.add_argument('--scene', default='cube-single', choices=sorted(MAX_STEPS))
    parser.add_argument('--a-name', default='a')
    parser.add_argument('--a-args', default='', help='am-eval arguments of arm a')
    parser.add_argument('--b-name', default='b')
    parser.add_argument('--b-args', default='', help='am-eval arguments of arm b')
    parser.add_argument('--seeds', default='1000', help='evaluation seeds, e.g. 1000,2000')
    parser.add_argument('--rollouts', type=int, default=20, help='per evaluation task')
    parser.add_argument('--reach', type=int, default=0,
                        help='reach-goal rollouts per seed besides the evaluation tasks')
    parser.add_argument('--jobs', type=int, default=1, help='evaluations at a time')
    parser.add_argument('--work', type=Path, required=True, help='evaluation outputs')
    parser.add_argument('--name', default='paired_acting', help='report file stem')
    parser.add_argument('--results-dir', type=Path, default=ROOT / 'bench' / 'results')
    parser.add_argument('--notes', default='')
    args = parser.parse_args(argv)
    if args.a_name == args.b_name:
        parser.error('--a-name and --b-name must differ')
    if args.rollouts < 1 or args.jobs < 1 or args.reach < 0:
        parser.error('--rollouts and --jobs must be >= 1, --reach >= 0')
    args.seeds = [int(s) for s in args.seeds.split(',')]
    missing = [str(c) for c in args.checkpoints if not c.exists()]
    if missing:
        parser.error(f'no such checkpoint: {", ".join(missing)}')
    labels = [label(c) for c in args.checkpoints]
    if len(set(labels)) < len(labels):
        parser.error(f'checkpoints with the same name {labels}: their evaluations would '
                     'share folders in --work')
    args.work.mkdir(parents=True, exist_ok=True)
    result = {
        'benchmark': args.name,
        'command': shlex.join(['python', 'bench/paired_acting.py',
                               *(sys.argv[1:] if argv is None else argv)]),
        'date': datetime.date.today().isoformat(), 'machine': machine(),
        'git_commit': git_commit('src/am_learning', 'bench/paired_acting.py'),
        'arms': {args.a_name: args.a_args, args.b_name: args.b_args},
        'metrics': compare(args), 'notes': args.notes,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f'{args.name}.json').write_text(json.dumps(result, indent=2) + '\n')
    write_markdown(args.results_dir / f'{args.name}.md', result, args.a_name, args.b_name)
    p = result['metrics']['paired']
    print(json.dumps({k: result['metrics'][k] for k in ('success', 'rollouts', 'paired')}))
    print(f'wrote {args.results_dir / args.name}.json/.md (won {p["won"]}, lost {p["lost"]}, '
          f'z = {p["z"]})')


if __name__ == '__main__':
    main()
