'''am-train: train an agent on a dataset; one run folder per run; resumable.

    am-train --dataset CACHE_DIR --run-dir runs/am1 [--config cfg.yaml] [--set k=v ...]
    am-train --bags BAG_DIR --cache CACHE_DIR --run-dir runs/am1 --agent her_neg
    am-train --synthetic point-world --observation state --run-dir /tmp/demo --updates 2000
    am-train --dataset CACHE_DIR --run-dir runs/am1 --updates 1000000 --time-limit-min 30

The run folder gets config.json, metrics.csv (diagnostics every log_interval updates),
plots.png and checkpoint/ (weights, config, dataset manifest, resume state). Running the
same command again resumes from the checkpoint; --no-resume starts over. With
--time-limit-min the run stops after the update during which the limit passed (or at
--updates, whichever comes first) and writes its checkpoint; train_time.json in the run
folder records the wall time, the limit and whether it ended the run.
'''

import argparse
from dataclasses import replace
import json
import logging
from pathlib import Path
import sys
import time
from typing import Any

from am_learning import conventions as conv
from am_learning.config import AGENTS, TrainConfig
from am_learning.envs.operator import JOINT_VELOCITY_DIMS

log = logging.getLogger('am_learning.am_train')

STATE_LAYOUT_IGNORE: dict[str, tuple[int, ...]] = {
    conv.OGBENCH_STATE_LAYOUT: JOINT_VELOCITY_DIMS,
}
'''Per state layout label (the dataset manifest's state_layout): the entries am-train
leaves out of the networks' input unless told otherwise. OGBench's joint velocities let a
network copy the demonstrator's motion and ignore the goal (JOINT_VELOCITY_DIMS says more).'''


def parse_value(text: str) -> Any:
    '''A --set value: YAML scalars and lists (8, 0.5, true, [32, 64]) or a plain string.'''
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='am-train', description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n', 2)[2])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--dataset', type=Path, help='dataset cache folder (am-dataset build)')
    src.add_argument('--bags', type=Path, help='folder of rosbag2 bags (cached in --cache)')
    src.add_argument('--synthetic', choices=['point-world'],
                     help='a generated toy dataset (am_learning.testing), for smoke runs')
    p.add_argument('--cache', type=Path, help='cache folder for --bags (default BAGS/.cache)')
    p.add_argument('--run-dir', type=Path, required=True, help='output folder of the run')
    p.add_argument('--config', type=Path, help='YAML or JSON file of TrainConfig fields')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='override a config field, dotted for sections '
                        '(e.g. relabel.num_negatives=8, network.conv_channels=[32,64])')
    p.add_argument('--agent', choices=AGENTS, help='shorthand for --set agent=...')
    p.add_argument('--observation', choices=['image', 'state'],
                   help='shorthand for --set network.observation=...')
    p.add_argument('--updates', type=int, help='shorthand for --set updates=...')
    p.add_argument('--batch-size', type=int, help='shorthand for --set batch_size=...')
    p.add_argument('--device', help='shorthand for --set device=... (auto, cpu, cuda)')
    p.add_argument('--seed', type=int, help='shorthand for --set seed=...')
    p.add_argument('--finetune-from', help='AM checkpoint to start from (fine-tuning)')
    p.add_argument('--time-limit-min', type=float,
                   help="wall-clock limit of this invocation's training, minutes: stop after "
                        'the update during which it passed and write the checkpoint')
    p.add_argument('--no-resume', action='store_true', help='start over in --run-dir')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


def make_config(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    overrides = _overrides(args)
    return config.with_overrides(overrides) if overrides else config


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in args.set:
        if '=' not in item:
            raise ValueError(f'--set expects KEY=VALUE, got {item!r}')
        key, value = item.split('=', 1)
        overrides[key.strip()] = parse_value(value)
    for flag, key in (('agent', 'agent'), ('observation', 'network.observation'),
                      ('updates', 'updates'), ('batch_size', 'batch_size'),
                      ('device', 'device'), ('seed', 'seed'),
                      ('finetune_from', 'finetune_from')):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    return overrides


def state_ignore_is_given(args: argparse.Namespace) -> bool:
    '''Whether the user chose network.state_ignore (by --set or in the --config file).'''
    if 'network.state_ignore' in _overrides(args):
        return True
    if args.config:
        import yaml

        data = yaml.safe_load(Path(args.config).read_text()) or {}
        return 'state_ignore' in (data.get('network') or {})
    return False


def load_data(args: argparse.Namespace, config: TrainConfig) -> Any:
    if args.synthetic:
        from am_learning.testing import make_point_dataset
        size = config.network.image_size if config.network.observation == 'image' else None
        return make_point_dataset(40, 50, image_size=size, seed=config.seed)
    from am_learning.data import DatasetConfig, dataset_from_bags, load_dataset
    if args.dataset:
        return load_dataset(args.dataset)
    cache = args.cache or (args.bags / '.cache')
    state = config.network.observation == 'state'  # a state network needs no camera frames
    return dataset_from_bags(args.bags, cache,
                             DatasetConfig(image_size=config.network.image_size,
                                           use_images=not state, require_state=state),
                             progress=not args.no_progress)


def fit_to_dataset(config: TrainConfig, dataset: Any, *,
                   layout_default: bool = True) -> TrainConfig:
    '''Fill network.state_dim from the dataset when it is left at 0; with `layout_default`,
    leave out the state entries that the dataset's state layout says to
    (STATE_LAYOUT_IGNORE; the caller passes False when the user chose state_ignore).'''
    net = config.network
    if net.observation != 'state' or dataset.states is None:
        return config
    if net.state_dim == 0:
        net = replace(net, state_dim=int(dataset.states.shape[1]))
    layout = (getattr(dataset, 'manifest', None) or {}).get('state_layout')
    ignore = STATE_LAYOUT_IGNORE.get(layout, ())
    if layout_default and ignore and net.state_ignore != ignore:
        log.info("state layout %r: entries %s left out of the networks' input "
                 '(network.state_ignore; --set network.state_ignore=[] keeps them)',
                 layout, list(ignore))
        net = replace(net, state_ignore=ignore)
    return replace(config, network=net)


class TimeLimitError(Exception):
    '''Raised between updates once the wall-clock limit has passed.'''


def train_with_limit(trainer: Any, limit_s: float | None, progress: bool) -> tuple[dict, bool]:
    '''trainer.train() that stops before the first update started after `limit_s` seconds.

    Returns (the last metrics row, whether the limit ended the run). The check wraps the
    trainer's `update`, so the run ends on an update boundary with its state intact; the
    caller saves the checkpoint. The diagnostics of a partial log interval are not written.
    '''
    if limit_s is None:
        return trainer.train(progress=progress), False
    deadline = time.monotonic() + limit_s
    update = trainer.update

    def update_until_deadline() -> dict[str, float]:
        if time.monotonic() >= deadline:
            raise TimeLimitError
        return update()

    trainer.update = update_until_deadline
    try:
        return trainer.train(progress=progress), False
    except TimeLimitError:
        return {}, True
    finally:
        del trainer.update  # the bound method again


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    args = build_parser().parse_args(argv)
    if args.time_limit_min is not None and not args.time_limit_min > 0:
        print('am-train: error: --time-limit-min must be > 0', file=sys.stderr)
        return 2
    limit_s = None if args.time_limit_min is None else 60.0 * args.time_limit_min
    try:
        config = make_config(args)
        if args.synthetic and config.network.observation == 'state':
            config = config.with_overrides({'network.proprio_dim': 0})
        dataset = load_data(args, config)
        config = fit_to_dataset(config, dataset,
                                layout_default=not state_ignore_is_given(args)).validate()
        from am_learning.train import Trainer
        trainer = Trainer(config, dataset, run_dir=args.run_dir, resume=not args.no_resume)
        start_step, start = trainer.step, time.monotonic()
        row, limited = train_with_limit(trainer, limit_s, not args.no_progress)
        path = trainer.save()
        if limited:
            trainer.draw_plots()  # rows since the last redraw (at most every 30 s)
        timing = {'train_wall_s': time.monotonic() - start, 'time_limit_min': args.time_limit_min,
                  'stopped_by_time_limit': limited, 'start_step': start_step,
                  'end_step': trainer.step}
        args.run_dir.mkdir(parents=True, exist_ok=True)
        (args.run_dir / 'train_time.json').write_text(json.dumps(timing, indent=2) + '\n')
    except (ValueError, OSError, RuntimeError) as exc:
        print(f'am-train: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('am-train: interrupted; rerun the same command to resume from the last '
              'checkpoint', file=sys.stderr)
        return 130
    print(json.dumps({'checkpoint': str(path), 'step': trainer.step, **timing,
                      'last_metrics': row}, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
