'''`am-dataset`: build a dataset cache from a folder of bags, and inspect a cache.

    am-dataset build BAG_DIR --out CACHE [--image-size 64] [--rate 20] [--force] ...
    am-dataset inspect CACHE [--contact-sheet sheet.png] [--json]

`build` does nothing when the cache is already up to date with the bags and the settings.
Exit status: 0 on success, 1 when the dataset cannot be built or read (the message says
why), 2 on bad arguments.
'''

import argparse
import json
import logging
from pathlib import Path
import sys

import numpy as np

from am_learning.data.cache import build_cache, load_dataset
from am_learning.data.config import DatasetConfig, DatasetError
from am_learning.data.dataset import EpisodeDataset

log = logging.getLogger('am_learning.am_dataset')
ACTION_NAMES = ('dx', 'dy', 'dz', 'dyaw', 'gripper')


def _topic_or_none(value: str) -> str | None:
    return None if value.lower() in ('', 'none') else value


def _parser() -> argparse.ArgumentParser:
    defaults = DatasetConfig()
    parser = argparse.ArgumentParser(
        prog='am-dataset', description='Dataset caches from rosbag2 episodes.')
    sub = parser.add_subparsers(dest='command', required=True)

    build = sub.add_parser('build', help='build (or refresh) a cache from a folder of bags')
    build.add_argument('bag_dir', type=Path, help='a bag, or a folder searched for bags')
    build.add_argument('--out', type=Path, required=True, help='cache folder to write')
    build.add_argument('--image-size', type=int, default=defaults.image_size,
                       help='square training resolution (pixels)')
    build.add_argument('--rate', type=float, default=defaults.control_rate_hz,
                       help='control rate (frames per second)')
    build.add_argument('--max-step-m', type=float, default=defaults.action_scale.max_step_m,
                       help='displacement of a full-scale translation action (m)')
    build.add_argument('--max-yaw-step-rad', type=float,
                       default=defaults.action_scale.max_yaw_step_rad,
                       help='yaw change of a full-scale rotation action (rad)')
    build.add_argument('--camera-topic', default=defaults.camera_topic)
    build.add_argument('--compressed-camera-topic', type=_topic_or_none,
                       default=defaults.compressed_camera_topic, help="'none' to ignore")
    build.add_argument('--joint-states-topic', default=defaults.joint_states_topic)
    build.add_argument('--joints', default=','.join(defaults.joint_names),
                       help='comma-separated joint names forming proprioception (may be empty)')
    build.add_argument('--gripper-joint', type=_topic_or_none, default=defaults.gripper_joint)
    build.add_argument('--gripper-position-means', choices=('opening', 'closure'),
                       default=defaults.gripper_position_means)
    build.add_argument('--twist-topic', default=defaults.twist_topic)
    build.add_argument('--gripper-topic', default=defaults.gripper_topic)
    build.add_argument('--ee-pose-topic', default=defaults.ee_pose_topic)
    build.add_argument('--events-topic', default=defaults.events_topic)
    build.add_argument('--state-topic', type=_topic_or_none, default=defaults.state_topic,
                       help="'none' to never read a state vector")
    build.add_argument('--no-images', action='store_true', help='state-vector dataset only')
    build.add_argument('--require-state', action='store_true',
                       help='skip episodes without the state topic')
    build.add_argument('--stale-timeout', type=float, default=defaults.stale_command_timeout_s,
                       help='seconds a twist command stays in force')
    build.add_argument('--time-source', choices=('bag', 'header'), default=defaults.time_source)
    build.add_argument('--min-frames', type=int, default=defaults.min_episode_frames,
                       help='skip shorter episodes')
    build.add_argument('--workers', type=int, default=None,
                       help='processes reading bags (default: one per core for large jobs)')
    build.add_argument('--force', action='store_true', help='rebuild even when up to date')
    build.add_argument('--no-progress', action='store_true', help='no progress bar')

    inspect = sub.add_parser('inspect', help='summarise a cache')
    inspect.add_argument('cache', type=Path)
    inspect.add_argument('--contact-sheet', type=Path, default=None,
                         help='write a PNG grid of frames from a few episodes')
    inspect.add_argument('--sheet-episodes', type=int, default=6)
    inspect.add_argument('--sheet-frames', type=int, default=8)
    inspect.add_argument('--json', action='store_true', help='print the summary as JSON')
    return parser


def config_from_args(args: argparse.Namespace) -> DatasetConfig:
    '''The DatasetConfig the `build` flags describe (ValueError for inconsistent flags).'''
    from am_learning.conventions import ActionScale

    joints = tuple(j.strip() for j in args.joints.split(',') if j.strip())
    return DatasetConfig(
        image_size=args.image_size,
        control_rate_hz=args.rate,
        action_scale=ActionScale(control_rate_hz=args.rate, max_step_m=args.max_step_m,
                                 max_yaw_step_rad=args.max_yaw_step_rad),
        camera_topic=args.camera_topic,
        compressed_camera_topic=args.compressed_camera_topic,
        joint_states_topic=args.joint_states_topic,
        joint_names=joints,
        gripper_joint=args.gripper_joint,
        gripper_position_means=args.gripper_position_means,
        twist_topic=args.twist_topic,
        gripper_topic=args.gripper_topic,
        ee_pose_topic=args.ee_pose_topic,
        events_topic=args.events_topic,
        state_topic=args.state_topic,
        use_images=not args.no_images,
        require_state=args.require_state,
        stale_command_timeout_s=args.stale_timeout,
        time_source=args.time_source,
        min_episode_frames=args.min_frames,
    )


def summarise(dataset: EpisodeDataset) -> dict:
    '''What `inspect` reports: counts, lengths, topics, rates, action and proprio stats.'''
    m = dataset.manifest
    lengths = np.diff(np.concatenate([[0], dataset.episode_ends]))
    successes = [e.get('success') for e in m.get('episodes', [])]
    norm = m.get('normalization', {})
    return {
        'episodes': dataset.num_episodes,
        'frames': dataset.num_frames,
        'episode_length': {'min': int(lengths.min()), 'mean': round(float(lengths.mean()), 2),
                           'max': int(lengths.max())},
        'successes': sum(1 for s in successes if s),
        'bags': m.get('counts', {}).get('bags'),
        'bags_skipped': m.get('counts', {}).get('bags_skipped'),
        'episodes_skipped': m.get('counts', {}).get('episodes_skipped'),
        'bag_dir': m.get('bag_dir'),
        'created_utc': m.get('created_utc'),
        'image_size': m.get('image_size'),
        'proprio_names': m.get('proprio_names'),
        'state_dim': m.get('state_dim'),
        'action_sources': sorted({e.get('action_source') for e in m.get('episodes', [])}),
        'topics': {k: v for k, v in m.get('topics', {}).items() if k != 'in_bags'},
        'rates': m.get('rates'),
        'action_scale': m.get('action_scale'),
        'action_stats': norm.get('actions'),
        'proprio_stats': norm.get('proprio'),
        'skipped': m.get('skipped', []),
    }


def _print_summary(cache: Path, s: dict) -> None:
    out = sys.stdout.write
    out(f'cache        {cache}\n')
    out(f'built        {s["created_utc"]} from {s["bags"]} bag(s) in {s["bag_dir"]} '
        f'({s["bags_skipped"]} bag(s) and {s["episodes_skipped"]} episode(s) skipped)\n')
    length = s['episode_length']
    out(f'episodes     {s["episodes"]} (length min {length["min"]}, mean {length["mean"]}, '
        f'max {length["max"]}; {s["successes"]} marked successful)\n')
    out(f'frames       {s["frames"]}\n')
    out(f'images       {s["image_size"]}x{s["image_size"]} RGB\n' if s['image_size']
        else 'images       none\n')
    out(f'proprio      {", ".join(s["proprio_names"]) or "none"}\n')
    out(f'state        {s["state_dim"] or "none"}\n')
    out(f'actions from {", ".join(s["action_sources"])}\n')
    rates = s['rates'] or {}
    measured = ', '.join(f'{k} {v:g} Hz' for k, v in rates.get('measured_median_hz', {}).items())
    out(f'rates        control {rates.get("control_rate_hz")} Hz; measured {measured}\n')
    out('topics       ' + ', '.join(f'{k}={v}' for k, v in s['topics'].items() if v) + '\n')
    for title, stats, names in (('action', s['action_stats'], ACTION_NAMES),
                                ('proprio', s['proprio_stats'], s['proprio_names'])):
        if not stats:
            continue
        out(f'{title:<22}{"mean":>9}{"std":>9}{"min":>9}{"max":>9}\n')
        for i, name in enumerate(names):
            out(f'  {name:<20}' + ''.join(f'{stats[k][i]:>9.3f}' for k in
                                          ('mean', 'std', 'min', 'max')) + '\n')
    for skip in s['skipped']:
        episode = f' episode {skip["episode_id"]!r}' if 'episode_id' in skip else ''
        out(f'skipped      {skip["bag"]}{episode}: {skip["reason"]}\n')


def contact_sheet(dataset: EpisodeDataset, path: Path, *, episodes: int = 6,
                  frames: int = 8, tile: int = 96) -> Path:
    '''A PNG grid: one row per episode (spread over the dataset), frames evenly in time.'''
    import cv2

    if dataset.images is None:
        raise DatasetError('this cache has no images: no contact sheet')
    rows = np.linspace(0, dataset.num_episodes - 1, min(episodes, dataset.num_episodes))
    starts, ends = dataset.episode_starts, dataset.episode_ends
    grid = []
    for e in np.unique(rows.round().astype(int)):
        idx = np.linspace(starts[e], ends[e] - 1, frames).round().astype(int)
        tiles = [cv2.resize(np.asarray(dataset.images[i]), (tile, tile),
                            interpolation=cv2.INTER_NEAREST) for i in idx]
        grid.append(np.concatenate([np.pad(t, ((1, 1), (1, 1), (0, 0))) for t in tiles], 1))
    sheet = np.concatenate(grid, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise DatasetError(f'could not write {path}')
    return path


def main(argv: list[str] | None = None) -> int:
    '''Entry point of the `am-dataset` console script.'''
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='am-dataset: %(levelname)s: %(message)s')
    try:
        if args.command == 'build':
            try:
                config = config_from_args(args)
            except ValueError as err:
                sys.stderr.write(f'am-dataset: error: {err}\n')
                return 2
            build_cache(args.bag_dir, args.out, config, progress=not args.no_progress,
                        workers=args.workers, force=args.force)
            _print_summary(args.out, summarise(load_dataset(args.out)))
        else:
            dataset = load_dataset(args.cache)
            summary = summarise(dataset)
            if args.contact_sheet is not None:
                summary['contact_sheet'] = str(contact_sheet(
                    dataset, args.contact_sheet, episodes=args.sheet_episodes,
                    frames=args.sheet_frames))
            if args.json:
                sys.stdout.write(json.dumps(summary, indent=1) + '\n')
            else:
                _print_summary(args.cache, summary)
                if args.contact_sheet is not None:
                    sys.stdout.write(f'contact sheet {summary["contact_sheet"]}\n')
    except DatasetError as err:
        sys.stderr.write(f'am-dataset: error: {err}\n')
        return 1
    except KeyboardInterrupt:
        sys.stderr.write('am-dataset: interrupted (no cache was changed)\n')
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
