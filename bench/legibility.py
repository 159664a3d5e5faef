'''legibility: how well a conv net reads the gripper's position off one am_sim camera frame.

    python bench/legibility.py --elevations 90,60 --train-frames 6000 --test-frames 1000 \
        --train-s 150

For each elevation of the shadow light (`Scene.aim_shadow_light`: 90 shines straight down,
as OGBench's light does; am_sim's default is `SHADOW_ELEVATION_DEG`), frames of the
cube-single scene at 64 px with the gripper posed at random points and yaws of the box reach
goals are drawn from (the cube moved every 50 frames), as reach goal images show it. A conv
net of AM's image-trunk shape (stride-2 3x3 convs 32-64-64, a 256-unit layer) learns, for
--train-s seconds on the CPU, to regress the effector position from the frame alone; on
held-out frames its error is split along the camera's line of sight through the gripper and
across it. What a camera-only policy can read of where a goal image puts the gripper: the
depth along the line of sight is the direction one camera shows least. --autocast-bf16
trains under bfloat16 autocast, as am-train does by default, instead of float32.

Writes bench/results/legibility.json and .md (legibility_bf16.* with --autocast-bf16).
'''

import argparse
import datetime
import json
from pathlib import Path
import time

from benchlib import git_commit, machine
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCENE = 'cube-single'
IMAGE_SIZE = 64
BATCH = 64


def posed_frames(elevation_deg: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    '''n frames with the gripper posed at random in the reach box, and its positions (m).'''
    from am_learning.envs.scene import make_scene

    scene = make_scene(SCENE, IMAGE_SIZE, seed=seed)
    scene.aim_shadow_light(elevation_deg)
    rng = np.random.default_rng(seed)
    low, high = np.asarray(scene._env._arm_sampling_bounds)
    images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    positions = np.zeros((n, 3), np.float32)
    for i in range(n):
        if i % 50 == 0:
            scene.reset(seed=seed * 1_000_000 + i)
        images[i], positions[i], _ = scene.posed(rng.uniform(low, high),
                                                 rng.uniform(-np.pi, np.pi))
    scene.close()
    return images, positions


def regressor() -> 'torch.nn.Module':  # noqa: F821
    from torch import nn

    layers: list[nn.Module] = []
    channels = 3
    for out in (32, 64, 64):
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.ReLU()]
        channels = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 8 * 8, 256), nn.ReLU(),
                         nn.Linear(256, 3))


def measure(elevation_deg: float, args: argparse.Namespace) -> dict:
    import torch

    from am_learning.envs.scene import CAMERA_POSE, split_along_sight

    torch.manual_seed(args.seed)
    start = time.perf_counter()
    train_x, train_y = posed_frames(elevation_deg, args.train_frames, args.seed + 1)
    test_x, test_y = posed_frames(elevation_deg, args.test_frames, args.seed + 2)
    render_s = time.perf_counter() - start
    mean, std = train_y.mean(0), train_y.std(0)

    def tensor(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0

    x, y = tensor(train_x), torch.from_numpy((train_y - mean) / std)
    net = regressor()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(args.seed)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.train_s:
        rows = torch.randint(0, len(x), (BATCH,), generator=generator)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=args.autocast_bf16):
            out = net(x[rows])
        loss = torch.nn.functional.mse_loss(out.float(), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
    with torch.no_grad():
        predicted = net.eval()(tensor(test_x)).numpy() * std + mean
    error = predicted - test_y
    along, across = split_along_sight(error, test_y, np.asarray(CAMERA_POSE[0]))
    total = np.linalg.norm(error, axis=1)
    return {'along_abs_cm': float(100 * np.abs(along).mean()),
            'along_mean_cm': float(100 * along.mean()),
            'across_cm': float(100 * across.mean()),
            'error_cm': float(100 * total.mean()),
            'within_3cm_pct': float(100 * (total < 0.03).mean()),
            'updates': steps, 'render_s': round(render_s, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--elevations', default='90,60',
                   help='shadow-light elevations to compare, degrees (90 = straight down)')
    p.add_argument('--train-frames', type=int, default=6000)
    p.add_argument('--test-frames', type=int, default=1000)
    p.add_argument('--train-s', type=float, default=150.0, help='training seconds per look')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--autocast-bf16', action='store_true',
                   help="train under bfloat16 autocast (am-train's default), else float32")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--results-dir', type=Path, default=REPO / 'bench' / 'results')
    p.add_argument('--notes', default='')
    args = p.parse_args()
    try:
        elevations = [float(e) for e in args.elevations.split(',')]
    except ValueError:
        elevations = []
    if not elevations or not all(0 < e <= 90 for e in elevations):
        p.error(f'--elevations must be degrees in (0, 90], got {args.elevations!r}')
    import torch

    torch.set_num_threads(args.threads)
    looks = {}
    for elevation in elevations:
        looks[f'{elevation:g}'] = figures = measure(elevation, args)
        print(f'shadow light at {elevation:g} deg: ' + ', '.join(
            f'{k} {v:.2f}' if isinstance(v, float) else f'{k} {v}'
            for k, v in figures.items()), flush=True)
    result = {
        'benchmark': 'legibility',
        'command': 'python bench/legibility.py ' + ' '.join(
            f'--{k.replace("_", "-")} {v}' for k, v in (
                ('elevations', args.elevations), ('train_frames', args.train_frames),
                ('test_frames', args.test_frames), ('train_s', f'{args.train_s:g}'),
                ('seed', args.seed))) + (' --autocast-bf16' if args.autocast_bf16 else ''),
        'date': datetime.date.today().isoformat(), 'machine': machine(),
        'git_commit': git_commit('src/am_learning/am_learning/envs', 'bench/legibility.py'),
        'metrics': {'by_shadow_elevation_deg': looks},
        'training_precision': 'bfloat16 autocast' if args.autocast_bf16 else 'float32',
        'notes': args.notes,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    name = 'legibility_bf16' if args.autocast_bf16 else 'legibility'
    (args.results_dir / f'{name}.json').write_text(json.dumps(result, indent=2) + '\n')
    lines = ['# legibility: the gripper position read off one 64 px frame', '',
             f'`{result["command"]}`  ', f'{result["date"]}, {result["machine"]}, '
             f'commit {result["git_commit"]}, training in {result["training_precision"]}', '',
             '| shadow light elevation | along the line of sight, mean abs (mean) cm | '
             'across it, cm | error, cm | within 3 cm | updates |', '|---|---|---|---|---|---|']
    for look, f in looks.items():
        lines.append(f'| {look} deg | {f["along_abs_cm"]:.2f} ({f["along_mean_cm"]:+.2f}) | '
                     f'{f["across_cm"]:.2f} | {f["error_cm"]:.2f} | '
                     f'{f["within_3cm_pct"]:.1f}% | {f["updates"]} |')
    if args.notes:
        lines += ['', f'Notes: {args.notes}']
    (args.results_dir / f'{name}.md').write_text('\n'.join(lines) + '\n')
    print(f'wrote {args.results_dir / name}.md')


if __name__ == '__main__':
    main()
