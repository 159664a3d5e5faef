'''`am-demo` (`make demo`): record, train and reach goals end to end, then write a report.

    am-demo [--preset default|full|tiny] [--out runs/demo]

1. record: the simulated robot + recorder + scripted teleoperator (`am-launch record`)
   record episodes (the default preset: the reach operator) into rosbag2 bags over DDS;
2. dataset: `am-dataset build` turns the bags into a training cache;
3. train: `am-train` trains Actionable Models, and GCBC as the baseline, on it;
4. reach: the robot stack with the policy node (`am-launch robot checkpoint:=...`) is
   given each goal image through ~/reach_goal by `goal_trials`, as a user would; the same
   trials without anyone moving the arm give the do-nothing baseline; GCBC is rolled out
   in-process on the same goals (`am-eval`);
5. report: report.md + report.png (training curves, success per policy, a rollout next to
   its goal image).
Each step's output lands in the run folder; a step whose output exists is not redone.
'''

import argparse
from collections.abc import Sequence
import csv
from dataclasses import asdict, dataclass, replace
import datetime
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import numpy as np

from am_bringup.runner import executable_path
from am_bringup.stack import StackError


@dataclass(frozen=True)
class Preset:
    '''Sizes of one demo run; `default` took 13.7 minutes on 2 cores (819 s measured).'''

    operator: str
    '''What the scripted teleoperator records: play (pick and place) or reach (the gripper
    to random points of the workspace: the data reach goals need).'''
    episodes: int
    '''Episodes recorded through ROS.'''
    steps: int
    '''Control steps per episode (20 Hz).'''
    real_time_factor: float
    '''Simulation speed while recording. 2 is the highest lossless factor measured with the
    shadowed camera (bench/results/collection.md); the demos record at 4 and accept that
    1.5-4% of the commands arrive a step late (measured: 514 of 12,246, 253 of 12,232, then
    174 of 12,237), for half the recording time.'''
    image_size: int
    '''Training resolution.'''
    am_updates: int
    gcbc_updates: int
    gamma: float
    '''AM's discount: 0.95 for reach goals (tens of steps; Q then ranks near against far),
    0.99 for the cube tasks (100-200 steps), as the visual and state benchmarks found.'''
    trials: int
    '''Goals given to the policy.'''
    kind: str
    '''reach (gripper goal poses) or eval (the cube-single evaluation tasks).'''
    timeout_s: float
    '''Seconds per goal.'''


PRESETS = {
    'default': Preset(operator='reach', episodes=60, steps=200, real_time_factor=4.0,
                      image_size=64, am_updates=10000, gcbc_updates=3000, gamma=0.95,
                      trials=10, kind='reach', timeout_s=10.0),
    'full': Preset(operator='play', episodes=500, steps=200, real_time_factor=4.0,
                   image_size=64, am_updates=100000, gcbc_updates=30000, gamma=0.99,
                   trials=25, kind='eval', timeout_s=10.0),
    'tiny': Preset(operator='reach', episodes=3, steps=60, real_time_factor=4.0,
                   image_size=32, am_updates=200, gcbc_updates=100, gamma=0.95, trials=2,
                   kind='reach', timeout_s=3.0),
}


DO_NOTHING_TIMEOUT_S = 2.0
'''Seconds per goal of the do-nothing baseline: nothing moves the arm, so waiting out the
preset's timeout only adds wall time (it took 112 s of the default preset's 932, now 28).'''


def say(text: str) -> None:
    print(f'[am-demo] {text}', flush=True)


def run_step(cmd: list[str], log: Path, what: str) -> None:
    '''Run one pipeline command, its output in `log`; fail with its tail.

    Its wall time is added to <run folder>/timings.json under `what`.'''
    say(f'{what}: {" ".join(cmd)}  (log: {log})')
    start = time.monotonic()
    with open(log, 'w') as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log.read_text(errors='replace')[-2500:]
        raise RuntimeError(f'{what} failed with code {code}:\n{tail}')
    elapsed = time.monotonic() - start
    say(f'{what}: done in {elapsed:.0f} s')
    timings_path = log.parent / 'timings.json'
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    timings[what] = elapsed
    timings_path.write_text(json.dumps(timings, indent=2))


class Stack:
    '''`am-launch robot ...` in the background, stopped with Ctrl-C semantics.'''

    def __init__(self, args: list[str], log: Path) -> None:
        self._log = open(log, 'w')
        self.log_path = log
        self.popen = subprocess.Popen(['am-launch', 'robot', *args], stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors='replace'):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f'the robot stack did not report {text!r}:\n'
                           + self.log_path.read_text(errors='replace')[-2500:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def record(preset: Preset, out: Path, seed: int) -> Path:
    bags = out / 'bags'
    done = out / 'bags.done'
    if done.exists():
        return bags
    run_step(['am-launch', 'record', f'operator:={preset.operator}',
              f'episodes:={preset.episodes}', f'steps:={preset.steps}',
              f'output_dir:={bags}', f'real_time_factor:={preset.real_time_factor}',
              f'seed:={seed}'], out / 'record.log',
             f'record {preset.episodes} {preset.operator} episodes x {preset.steps} steps '
             'over ROS')
    done.write_text('')
    return bags


def build_dataset(preset: Preset, bags: Path, out: Path) -> Path:
    cache = out / 'cache'
    run_step(['am-dataset', 'build', str(bags), '--out', str(cache), '--image-size',
              str(preset.image_size), '--no-progress'], out / 'dataset.log',
             'build the dataset cache')
    return cache


def train(preset: Preset, cache: Path, out: Path, agent: str, updates: int,
          seed: int) -> Path:
    run_dir = out / agent
    if (run_dir / 'checkpoint' / 'model.safetensors').exists() and (run_dir / 'done').exists():
        return run_dir
    run_step(['am-train', '--dataset', str(cache), '--run-dir', str(run_dir), '--agent',
              agent, '--updates', str(updates), '--seed', str(seed),
              '--set', f'network.image_size={preset.image_size}',
              '--set', f'gamma={preset.gamma}',
              '--set', f'log_interval={max(50, updates // 20)}', '--no-progress'],
             out / f'train_{agent}.log', f'train {agent} for {updates} updates')
    (run_dir / 'done').write_text('')
    return run_dir


def ros_trials(preset: Preset, out: Path, checkpoint: Path, seed: int) -> dict:
    '''The robot stack + policy node; do-nothing trials first, then the policy's.'''
    results = {}
    stack = Stack([f'checkpoint:={checkpoint}'], out / 'robot_stack.log')
    try:
        stack.wait_for('policy ready', 120)
        # '' is YAML for the empty string: no action server, nobody moves the arm, so a
        # do-nothing goal ends where it starts and needs no more than a moment to measure.
        for name, action, timeout_s in (
                ('do_nothing', "''", min(preset.timeout_s, DO_NOTHING_TIMEOUT_S)),
                ('am', '/policy/reach_goal', preset.timeout_s)):
            path = out / f'trials_{name}.json'
            if not path.exists():
                run_step([
                    str(executable_path('am_sim', 'goal_trials')), '--ros-args',
                    '-p', f'trials:={preset.trials}', '-p', f'kind:={preset.kind}',
                    '-p', f'seed:={seed + 1000}', '-p', f'policy_action:={action}',
                    '-p', f'timeout_s:={timeout_s}', '-p', f'out:={path}'],
                    out / f'trials_{name}.log',
                    f'{preset.trials} {preset.kind} goals, {name.replace("_", "-")}')
            results[name] = json.loads(path.read_text())
    finally:
        stack.stop()
    return results


def gcbc_eval(preset: Preset, out: Path, run_dir: Path, seed: int) -> dict:
    eval_dir = out / 'eval_gcbc'
    if not (eval_dir / 'eval.json').exists():
        tasks = ['--tasks', 'none', '--reach', str(preset.trials)] if preset.kind == 'reach' \
            else ['--tasks', 'all', '--reach', '0', '--episodes-per-task',
                  str(max(1, preset.trials // 5))]
        run_step(['am-eval', str(run_dir / 'checkpoint'), *tasks, '--max-steps',
                  str(int(preset.timeout_s * 20)), '--seed', str(seed + 1000), '--out',
                  str(eval_dir), '--no-progress'], out / 'eval_gcbc.log',
                 'roll GCBC out in-process on the same kind of goals')
    return json.loads((eval_dir / 'eval.json').read_text())


def write_report(out: Path, preset: Preset, trials: dict, gcbc: dict, timings: dict,
                 provenance: dict) -> Path:
    '''report.md, report.png and report.json (with the keys every benchmark report has:
    `provenance` gives benchmark, command, date, machine and git_commit).'''
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    success = {name: r['summary']['success_pct'] for name, r in trials.items()}
    touched = {name: r['summary']['touched_pct'] for name, r in trials.items()}
    key = 'reach' if preset.kind == 'reach' else 'eval_tasks'
    success['gcbc'] = float(gcbc['success_pct'][key])

    fig = plt.figure(figsize=(13, 7))
    ax = fig.add_subplot(2, 2, 1)
    for agent in ('am', 'gcbc'):
        rows = list(csv.DictReader(open(out / agent / 'metrics.csv')))
        loss = 'optim/loss'
        ax.plot([float(r['step']) for r in rows], [float(r[loss]) for r in rows], label=agent)
    ax.set_title('training loss')
    ax.set_xlabel('updates')
    ax.legend()
    ax = fig.add_subplot(2, 2, 2)
    rows = list(csv.DictReader(open(out / 'am' / 'metrics.csv')))
    for column in ('diag/q_data_action', 'diag/q_random_action', 'diag/q_offset_5',
                   'diag/q_offset_50', 'diag/q_random_goal'):
        if rows and column in rows[0]:
            ax.plot([float(r['step']) for r in rows], [float(r[column]) for r in rows],
                    label=column[5:])
    ax.set_title('AM diagnostics (Q)')
    ax.set_xlabel('updates')
    ax.legend(fontsize=7)
    ax = fig.add_subplot(2, 2, 3)
    names = list(success)
    ax.bar(names, [success[n] for n in names], color=['tab:gray', 'tab:blue', 'tab:orange'])
    ax.set_ylabel('success %')
    ax.set_ylim(0, 100)
    ax.set_title(f'{preset.trials} {preset.kind} goals')
    film = out / 'trials_am_trial0.npz'
    if film.exists():
        data = np.load(film)
        frames = data['frames']
        picks = np.linspace(0, len(frames) - 1, num=min(7, len(frames))).astype(int)
        strip = np.concatenate([data['goal'], np.full((data['goal'].shape[0], 4, 3), 255,
                                                      np.uint8)]
                               + [frames[i] for i in picks], axis=1)
        ax = fig.add_subplot(2, 2, 4)
        ax.imshow(strip)
        ax.set_axis_off()
        ax.set_title('goal (left), then the rollout')
    fig.tight_layout()
    png = out / 'report.png'
    fig.savefig(png, dpi=90)
    plt.close(fig)

    lines = ['# am stack demo', '',
             f'Preset: {json.dumps(asdict(preset))}', '',
             '| policy | success % | touched % | mean final distance (cm) |',
             '|---|---|---|---|']
    for name, r in trials.items():
        s = r['summary']
        lines.append(f'| {name} (over ROS) | {s["success_pct"]:.0f} | {s["touched_pct"]:.0f} '
                     f'| {100 * s["mean_final_distance_m"]:.1f} |')
    lines.append(f'| gcbc (in-process) | {success["gcbc"]:.0f} | | |')
    lines += ['', 'Success: the gripper within 3 cm of the goal when the goal ends (the policy '
              "node's own stop rule or the time limit); touched: within 3 cm at any time.",
              '', '| step | wall seconds |', '|---|---|']
    lines += [f'| {k} | {v:.0f} |' for k, v in timings.items()]
    lines += ['', f'![report]({png.name})', '']
    report = out / 'report.md'
    report.write_text('\n'.join(lines))
    metrics = {'success': {name: {preset.kind: pct} for name, pct in success.items()},
               'touched': {name: {preset.kind: pct} for name, pct in touched.items()},
               'rollouts': preset.trials, 'wall_s': round(sum(timings.values()), 1)}
    notes = (f'{preset.trials} goals per policy and one training seed: a demonstration, not a '
             'benchmark figure. do_nothing and am over ROS (the policy node through '
             '~/reach_goal), gcbc rolled out in-process on goals of the same kind.')
    (out / 'report.json').write_text(json.dumps(
        {**provenance, 'metrics': metrics, 'notes': notes, 'preset': asdict(preset),
         'success_pct': success, 'touched_pct': touched, 'timings_s': timings}, indent=2))
    return report


def run_provenance(preset_name: str, argv: Sequence[str]) -> dict:
    '''The report's benchmark, command, date, machine and git_commit (HEAD of the checkout
    this code runs from, "-dirty" when its src/ has uncommitted changes).'''
    from am_learning.provenance import git_commit, machine

    return {'benchmark': f'demo_{preset_name}', 'command': ' '.join(['am-demo', *argv]),
            'date': datetime.date.today().isoformat(), 'machine': machine(),
            'git_commit': git_commit(Path(__file__).resolve().parent, ':/src')}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--preset', default='default', choices=sorted(PRESETS))
    parser.add_argument('--out', default='runs/demo')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--episodes', type=int, help='override the preset')
    parser.add_argument('--am-updates', type=int, help='override the preset')
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    if args.episodes:
        preset = replace(preset, episodes=args.episodes)
    if args.am_updates:
        preset = replace(preset, am_updates=args.am_updates)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    say(f'preset {args.preset}: {asdict(preset)}; output in {out}')
    try:
        bags = record(preset, out, args.seed)
        cache = build_dataset(preset, bags, out)
        am_run = train(preset, cache, out, 'am', preset.am_updates, args.seed)
        gcbc_run = train(preset, cache, out, 'gcbc', preset.gcbc_updates, args.seed)
        trials = ros_trials(preset, out, am_run / 'checkpoint', args.seed)
        gcbc = gcbc_eval(preset, out, gcbc_run, args.seed)
        timings = json.loads((out / 'timings.json').read_text())
        report = write_report(out, preset, trials, gcbc, timings,
                              run_provenance(args.preset, argv))
    except (RuntimeError, OSError, StackError) as error:
        say(f'failed: {error}')
        return 1
    say(f'report: {report} (and {report.with_suffix(".png")})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
