'''goal_sensitivity: does a state-based policy act towards its goal, or copy the data's motion?

    python bench/goal_sensitivity.py --dataset CACHE RUN_DIR/checkpoint [CHECKPOINT ...]

For dataset states of an OGBench manipulation scene, the goal is the same state with the
effector moved by a random offset (everything else unchanged), so the only thing that should
steer the greedy action (CEM over Q for Q-agents, the network's output for GCBC) is that
offset. Reported per checkpoint, as mean cosines of the action's xyz part:

- `towards_goal`: greedy action vs the effector offset (a goal-directed policy: > 0);
- `copies_data`: greedy action vs the dataset's own action at that state (how much the
  policy reproduces the demonstrator's motion whatever the goal);
- `data_towards_goal`: the dataset action vs the offset (the floor: ~0 by construction).

This is the measurement behind network.state_ignore: with OGBench's joint velocities in the
input, AM's greedy actions followed the data (0.80) and not the goal (0.01).

Grasp timing (where the data closes the gripper): at frames from 20 before to 15 after each
grasp onset of the data (its gripper target turning from open to closed), with the goal the
state 25 frames after the onset, how often the greedy action closes the gripper beside how
often the data does. A policy that closes too early or not at all shows it here.

Approach yaw (Q-agents' CEM and GCBC alike): at frames 30 to 5 before each grasp onset,
where the data turns the gripper (|yaw step| > 0.1), how often the greedy action turns the
same way, and for Q-agents the mean Q of the data's action beside the same action with its
yaw step reversed, and with its x/y step reversed. A Q that barely tells the two yaw
directions apart leaves the greedy yaw to CEM's noise: the gripper meets the cube's edges.
Writes bench/results/<name>.json and .md.
'''

import argparse
import datetime
import json
from pathlib import Path
import sys

from benchlib import git_commit, machine
import numpy as np

from am_learning.conventions import GRIPPER_INDEX, YAW_INDEX

REPO = Path(__file__).resolve().parents[1]
OFFSET_STD = 0.5  # per axis, in the state's units (OGBench scales metres x10): 5 cm
GRASP_LEAD = 25  # grasp timing: the goal is the state this many frames after the onset
GRASP_OFFSETS = (-20, -10, -5, -2, -1, 0, 5, 15)  # frames around the onset probed
APPROACH_OFFSETS = (-30, -20, -10, -5)  # approach yaw: frames before the onset probed
TURNING = 0.1  # approach yaw: the data's |yaw step| above which it counts as turning


def _load(checkpoint: Path, dataset):
    '''The checkpoint's network in eval mode, refused when it does not fit the dataset.'''
    from am_learning.checkpoint import load_checkpoint
    from am_learning.train import check_dataset_fits

    ckpt = load_checkpoint(checkpoint)
    if ckpt.config.network.observation != 'state':
        raise SystemExit(f'{checkpoint}: a state-based checkpoint is needed')
    try:
        check_dataset_fits(ckpt.config, dataset)
    except ValueError as err:
        raise SystemExit(f'{checkpoint}: {err}') from None
    return ckpt, ckpt.network.eval()


def _inputs(ckpt, dataset, frames: np.ndarray):
    import torch

    state = torch.from_numpy(dataset.states[frames]).float()
    proprio = torch.from_numpy(dataset.proprio[frames]).float() \
        if ckpt.config.network.proprio_dim else None
    return state, proprio


def _with_goal(ckpt, dataset, frames: np.ndarray, goal):
    '''(state, goal, proprio): a Q-network's encode arguments at dataset frames.'''
    state, proprio = _inputs(ckpt, dataset, frames)
    return state, goal, proprio


def _greedy(ckpt, net, dataset, frames: np.ndarray, goal, gen, feature=None, *,
            use_actor: bool = True):
    '''The greedy action at dataset frames for goal states (CEM over Q, around the actor's
    action where the checkpoint has one, unless use_actor is false; or GCBC's output); a
    Q-network's `feature` of (frames, goal) is encoded here unless given.'''
    import torch

    from am_learning.networks import PolicyNetwork
    from am_learning.policy import greedy_q_action

    with torch.no_grad():
        inputs = _with_goal(ckpt, dataset, frames, goal)
        if isinstance(net, PolicyNetwork):
            return net(*inputs)
        if feature is None:
            feature = net.encode(*inputs)
        action, _ = greedy_q_action(net, feature, inputs, ckpt.config.act_cem, gen,
                                    use_actor=use_actor)
        return action


def measure(checkpoint: Path, dataset, samples: int, seed: int, use_actor: bool = True) -> dict:
    import torch

    from am_learning.envs.operator import EFFECTOR_POS_DIMS

    ckpt, net = _load(checkpoint, dataset)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    frames = rng.integers(0, dataset.num_frames, size=samples)
    data_action = torch.from_numpy(dataset.actions[frames]).float()
    offset = torch.from_numpy(rng.normal(0.0, OFFSET_STD, size=(samples, 3))).float()
    goal = torch.from_numpy(dataset.states[frames]).float()
    goal[:, EFFECTOR_POS_DIMS] += offset
    action = _greedy(ckpt, net, dataset, frames, goal, gen, use_actor=use_actor)

    def cos(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.nn.functional.cosine_similarity(a[:, :3], b[:, :3]).mean())

    return {'checkpoint': str(checkpoint), 'agent': ckpt.config.agent, 'updates': ckpt.step,
            'state_ignore': list(ckpt.config.network.state_ignore),
            'actor_proposal': bool(use_actor and getattr(net, 'actor', None) is not None),
            'towards_goal': cos(action, offset), 'copies_data': cos(action, data_action),
            'data_towards_goal': cos(data_action, offset)}


def grasp_onsets(dataset, before: int, after: int) -> np.ndarray:
    '''Frames where the data's gripper target turns from open (<= 0) to closed (> 0), with
    `before` frames of the same episode before them and `after` frames after.'''
    gripper = np.asarray(dataset.actions[:, GRIPPER_INDEX])
    ends = np.asarray(dataset.episode_ends)
    starts = np.concatenate([[0], ends[:-1]])
    episode = np.searchsorted(ends, np.arange(len(gripper)), side='right')
    onset = np.flatnonzero((gripper[1:] > 0) & (gripper[:-1] <= 0)) + 1
    return onset[(onset - before >= starts[episode[onset]])
                 & (onset + after < ends[episode[onset]])]


def _sampled_onsets(dataset, before: int, after: int, samples: int, seed: int) -> np.ndarray:
    onsets = grasp_onsets(dataset, before, after)
    rng = np.random.default_rng(seed)
    return rng.choice(onsets, size=min(samples, len(onsets)), replace=False)


def grasp_timing(checkpoint: Path, dataset, samples: int, seed: int,
                 lead: int = GRASP_LEAD, offsets: tuple[int, ...] = GRASP_OFFSETS,
                 use_actor: bool = True) -> dict:
    '''At frames around the data's grasp onsets, with the goal the state `lead` frames after
    the onset (the object in hand): how often the greedy action closes the gripper, how
    often the data does, and how often they agree.'''
    import torch

    ckpt, net = _load(checkpoint, dataset)
    onsets = _sampled_onsets(dataset, max(0, -min(offsets)), max(lead, max(offsets)) + 1,
                             samples, seed)
    if len(onsets) == 0:
        return {'checkpoint': str(checkpoint), 'onsets': 0, 'rows': []}
    gen = torch.Generator().manual_seed(seed)
    goal = torch.from_numpy(dataset.states[onsets + lead]).float()
    rows = []
    for offset in offsets:
        frames = onsets + offset
        greedy = _greedy(ckpt, net, dataset, frames, goal, gen, use_actor=use_actor)
        policy = greedy[:, GRIPPER_INDEX].numpy() > 0
        data = dataset.actions[frames, GRIPPER_INDEX] > 0
        rows.append({'offset': offset, 'data_closes': float(data.mean()),
                     'policy_closes': float(policy.mean()),
                     'agree': float((policy == data).mean())})
    return {'checkpoint': str(checkpoint), 'onsets': len(onsets), 'lead': lead, 'rows': rows}


def approach_yaw(checkpoint: Path, dataset, samples: int, seed: int, lead: int = GRASP_LEAD,
                 offsets: tuple[int, ...] = APPROACH_OFFSETS, use_actor: bool = True) -> dict:
    '''At frames before the data's grasp onsets where the data turns the gripper, goal the
    state `lead` frames after the onset: does the greedy yaw step turn the same way, and (for
    Q-functions) how much Q the data's action loses with its yaw or its x/y step reversed.'''
    import torch

    from am_learning.networks import QNetwork

    ckpt, net = _load(checkpoint, dataset)
    onsets = _sampled_onsets(dataset, -min(offsets), lead + 1, samples, seed)
    result = {'checkpoint': str(checkpoint), 'onsets': len(onsets), 'rows': []}
    if len(onsets) == 0:
        return result
    gen = torch.Generator().manual_seed(seed)
    goal = torch.from_numpy(dataset.states[onsets + lead]).float()
    for offset in offsets:
        frames = onsets + offset
        data = torch.from_numpy(dataset.actions[frames]).float()
        turning = data[:, YAW_INDEX].abs() > TURNING
        row = {'offset': offset, 'turning': float(turning.float().mean()),
               'same_way': None, 'q_data': None, 'q_yaw_reversed': None,
               'q_xy_reversed': None}
        if not turning.any():
            result['rows'].append(row)
            continue
        feature = None
        if isinstance(net, QNetwork):
            with torch.no_grad():
                feature = net.encode(*_with_goal(ckpt, dataset, frames, goal))
        greedy = _greedy(ckpt, net, dataset, frames, goal, gen, feature, use_actor=use_actor)
        row['same_way'] = float((greedy[turning, YAW_INDEX] * data[turning, YAW_INDEX] > 0)
                                .float().mean())
        if feature is not None:
            yaw_reversed, xy_reversed = data.clone(), data.clone()
            yaw_reversed[:, YAW_INDEX] *= -1
            xy_reversed[:, :2] *= -1
            with torch.no_grad():
                for name, action in (('q_data', data), ('q_yaw_reversed', yaw_reversed),
                                     ('q_xy_reversed', xy_reversed)):
                    logit = net.logits(feature[turning], action[turning].unsqueeze(1))[:, 0]
                    row[name] = float(torch.sigmoid(logit).mean())
        result['rows'].append(row)
    return result


def _cell(value: float | None) -> str:
    return '' if value is None else f'{value:.2f}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoints', nargs='+', type=Path)
    parser.add_argument('--dataset', type=Path, required=True, help='dataset cache folder')
    parser.add_argument('--samples', type=int, default=1024)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--name', default='goal_sensitivity', help='report file stem')
    parser.add_argument('--results-dir', type=Path, default=REPO / 'bench' / 'results')
    parser.add_argument('--no-actor', dest='actor', action='store_false',
                        help='act as if checkpoints with an actor head had none (CEM alone)')
    parser.add_argument('--notes', default='')
    args = parser.parse_args()

    import torch

    from am_learning.data import load_dataset

    torch.set_num_threads(2)
    dataset = load_dataset(args.dataset)
    if dataset.states is None:
        raise SystemExit(f'{args.dataset}: the dataset has no state vectors')
    common = {'samples': args.samples, 'seed': args.seed, 'use_actor': args.actor}
    rows = [measure(c, dataset, **common) for c in args.checkpoints]
    grasps = [grasp_timing(c, dataset, **common) for c in args.checkpoints]
    yaws = [approach_yaw(c, dataset, **common) for c in args.checkpoints]
    for r, g in zip(rows, grasps):
        print(f'{r["checkpoint"]}: towards goal {r["towards_goal"]:.2f}, copies data '
              f'{r["copies_data"]:.2f} (data towards goal {r["data_towards_goal"]:.2f}); '
              'closes at grasp offsets ' + ', '.join(
                  f'{x["offset"]:+d}: {x["policy_closes"]:.2f} (data {x["data_closes"]:.2f})'
                  for x in g['rows']))
    for y in yaws:
        print(f'{y["checkpoint"]}: approach yaw, greedy turns the way the data does at '
              + ', '.join(f'{x["offset"]:+d}: {_cell(x["same_way"])}' for x in y['rows']))
    result = {
        'benchmark': args.name, 'command': 'python ' + ' '.join(sys.argv),
        'date': datetime.date.today().isoformat(), 'machine': machine(),
        'git_commit': git_commit('src/am_learning', 'bench/goal_sensitivity.py'),
        'dataset': str(args.dataset), 'samples': args.samples, 'use_actor': args.actor,
        'metrics': {'runs': rows, 'grasp_timing': grasps,
                    'approach_yaw': yaws}, 'notes': args.notes,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f'{args.name}.json').write_text(json.dumps(result, indent=2) + '\n')
    lines = [f'# {args.name}', '', f'`{result["command"]}`  ', f'{result["date"]}, '
             f'{result["machine"]}, commit {result["git_commit"]}', '',
             'Greedy action (xyz) against a goal whose only change is the effector moved '
             f'{OFFSET_STD / 10 * 100:.0f} cm per axis (std), {args.samples} dataset states; '
             'mean cosines.', '',
             '| checkpoint | agent | updates | ignored state entries | CEM around an actor | '
             'towards goal | copies data | data towards goal |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["checkpoint"]} | {r["agent"]} | {r["updates"]} | '
                     f'{r["state_ignore"] or "none"} | {"yes" if r["actor_proposal"] else "no"} | '
                     f'{r["towards_goal"]:.2f} | '
                     f'{r["copies_data"]:.2f} | {r["data_towards_goal"]:.2f} |')
    lines += ['', f'Grasp timing: the fraction of greedy actions that close the gripper at '
              f"frames around the data's grasp onsets (offset 0: the data's first closing "
              f'frame), the goal the state {GRASP_LEAD} frames after the onset; in brackets the '
              "data's own fraction.", '',
              '| checkpoint | onsets | ' + ' | '.join(f'{o:+d}' for o in GRASP_OFFSETS) + ' |',
              '|---|---|' + '---|' * len(GRASP_OFFSETS)]
    for g in grasps:
        cells = [f'{x["policy_closes"]:.2f} ({x["data_closes"]:.2f})' for x in g['rows']]
        lines.append(f'| {g["checkpoint"]} | {g["onsets"]} | '
                     + ' | '.join(cells or ['no grasp in the data'] * len(GRASP_OFFSETS)) + ' |')
    lines += ['', f"Approach yaw: at frames before the data's grasp onsets where the data "
              f'turns the gripper (|yaw step| > {TURNING}), the goal as above: the fraction of '
              'greedy actions that turn the same way (0.5: no better than a coin), and for '
              "Q-functions the mean Q of the data's action / with its yaw step reversed / with "
              'its x and y steps reversed.', '',
              '| checkpoint | onsets | frames before onset | data turning | greedy turns the '
              'same way | Q data | Q yaw reversed | Q x/y reversed |',
              '|---|---|---|---|---|---|---|---|']
    for y in yaws:
        for x in y['rows']:
            lines.append(f'| {y["checkpoint"]} | {y["onsets"]} | {-x["offset"]} | '
                         f'{x["turning"]:.2f} | {_cell(x["same_way"])} | {_cell(x["q_data"])} | '
                         f'{_cell(x["q_yaw_reversed"])} | {_cell(x["q_xy_reversed"])} |')
        if not y['rows']:
            lines.append(f'| {y["checkpoint"]} | 0 | no grasp in the data | | | | | |')
    if args.notes:
        lines += ['', f'Notes: {args.notes}']
    (args.results_dir / f'{args.name}.md').write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
