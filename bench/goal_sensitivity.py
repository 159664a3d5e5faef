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
Writes bench/results/<name>.json and .md.
'''

import argparse
import datetime
import json
from pathlib import Path
import sys

from benchlib import git_commit, machine
import numpy as np

REPO = Path(__file__).resolve().parents[1]
OFFSET_STD = 0.5  # per axis, in the state's units (OGBench scales metres x10): 5 cm


def measure(checkpoint: Path, dataset, samples: int, seed: int) -> dict:
    import torch

    from am_learning.cem import cem_maximize
    from am_learning.checkpoint import load_checkpoint
    from am_learning.envs.operator import EFFECTOR_POS_DIMS
    from am_learning.networks import PolicyNetwork
    from am_learning.train import check_dataset_fits

    ckpt = load_checkpoint(checkpoint)
    if ckpt.config.network.observation != 'state':
        raise SystemExit(f'{checkpoint}: a state-based checkpoint is needed')
    try:
        check_dataset_fits(ckpt.config, dataset)
    except ValueError as err:
        raise SystemExit(f'{checkpoint}: {err}') from None
    net = ckpt.network.eval()
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    frames = rng.integers(0, dataset.num_frames, size=samples)
    state = torch.from_numpy(dataset.states[frames]).float()
    proprio = torch.from_numpy(dataset.proprio[frames]).float() \
        if ckpt.config.network.proprio_dim else None
    data_action = torch.from_numpy(dataset.actions[frames]).float()
    offset = torch.from_numpy(rng.normal(0.0, OFFSET_STD, size=(samples, 3))).float()
    goal = state.clone()
    goal[:, EFFECTOR_POS_DIMS] += offset
    with torch.no_grad():
        if isinstance(net, PolicyNetwork):
            action = net(state, goal, proprio)
        else:
            feature = net.encode(state, goal, proprio)
            action, _ = cem_maximize(lambda a: net.logits(feature, a), samples,
                                     data_action.shape[1], ckpt.config.act_cem, gen)

    def cos(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.nn.functional.cosine_similarity(a[:, :3], b[:, :3]).mean())

    return {'checkpoint': str(checkpoint), 'agent': ckpt.config.agent, 'updates': ckpt.step,
            'state_ignore': list(ckpt.config.network.state_ignore),
            'towards_goal': cos(action, offset), 'copies_data': cos(action, data_action),
            'data_towards_goal': cos(data_action, offset)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoints', nargs='+', type=Path)
    parser.add_argument('--dataset', type=Path, required=True, help='dataset cache folder')
    parser.add_argument('--samples', type=int, default=1024)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--name', default='goal_sensitivity', help='report file stem')
    parser.add_argument('--results-dir', type=Path, default=REPO / 'bench' / 'results')
    parser.add_argument('--notes', default='')
    args = parser.parse_args()

    import torch

    from am_learning.data import load_dataset

    torch.set_num_threads(2)
    dataset = load_dataset(args.dataset)
    if dataset.states is None:
        raise SystemExit(f'{args.dataset}: the dataset has no state vectors')
    rows = [measure(c, dataset, args.samples, args.seed) for c in args.checkpoints]
    for r in rows:
        print(f'{r["checkpoint"]}: towards goal {r["towards_goal"]:.2f}, copies data '
              f'{r["copies_data"]:.2f} (data towards goal {r["data_towards_goal"]:.2f})')
    result = {
        'name': args.name, 'command': 'python ' + ' '.join(sys.argv),
        'date': datetime.date.today().isoformat(), 'machine': machine(),
        'commit': git_commit('src/am_learning', 'bench/goal_sensitivity.py'),
        'dataset': str(args.dataset), 'samples': args.samples,
        'metrics': {'runs': rows}, 'notes': args.notes,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f'{args.name}.json').write_text(json.dumps(result, indent=2) + '\n')
    lines = [f'# {args.name}', '', f'`{result["command"]}`  ', f'{result["date"]}, '
             f'{result["machine"]}, commit {result["commit"]}', '',
             'Greedy action (xyz) against a goal whose only change is the effector moved '
             f'{OFFSET_STD / 10 * 100:.0f} cm per axis (std), {args.samples} dataset states; '
             'mean cosines.', '',
             '| checkpoint | agent | updates | ignored state entries | towards goal | '
             'copies data | data towards goal |', '|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["checkpoint"]} | {r["agent"]} | {r["updates"]} | '
                     f'{r["state_ignore"] or "none"} | {r["towards_goal"]:.2f} | '
                     f'{r["copies_data"]:.2f} | {r["data_towards_goal"]:.2f} |')
    if args.notes:
        lines += ['', f'Notes: {args.notes}']
    (args.results_dir / f'{args.name}.md').write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
