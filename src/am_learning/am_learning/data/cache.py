'''The dataset cache: bags in, memory-mappable arrays + manifest out; rebuilt only when stale.

Layout of a cache folder:
    manifest.json      sources (bag files with size and mtime), config, topics, rates,
                       action scale, normalisation statistics, counts, per-episode facts
    actions.npy        (N, 5) float32 in [-1, 1]
    proprio.npy        (N, P) float32
    images.npy         (N, S, S, 3) uint8 RGB        (when images are used)
    states.npy         (N, D) float32                (when every episode has a state)
    episode_ends.npy   (E,) int64 exclusive ends
A build writes into a hidden sibling folder and renames it into place, so a cache folder is
always complete; a cache is stale when its bags' files or the config differ from now.
'''

import collections
from collections.abc import Iterator
import concurrent.futures
import contextlib
from dataclasses import dataclass, field
import datetime
import fcntl
import itertools
import json
import logging
import os
from pathlib import Path
import shutil
import tempfile

import numpy as np
from tqdm import tqdm

from am_learning.data.align import (
    EpisodeArrays,
    UnusableEpisodeError,
    align_episode,
    episode_windows,
)
from am_learning.data.bags import BagReadError, bag_files, find_bags, read_bag
from am_learning.data.config import DatasetConfig, DatasetError
from am_learning.data.dataset import EpisodeDataset

log = logging.getLogger(__name__)

CACHE_FORMAT = 'am_learning.dataset_cache'
CACHE_VERSION = 1
MANIFEST = 'manifest.json'
ARRAYS = ('actions', 'proprio', 'images', 'states', 'episode_ends')


# --- sources -------------------------------------------------------------------------------

def source_fingerprint(bag_dir: Path, bags: list[Path]) -> list[dict]:
    '''Per bag: its path relative to bag_dir and every file's size and mtime (ns).'''
    bag_dir = Path(bag_dir)
    out = []
    for bag in bags:
        files = []
        for path in bag_files(bag):
            stat = path.stat()
            files.append({'name': path.name, 'size': stat.st_size, 'mtime_ns': stat.st_mtime_ns})
        rel = bag.relative_to(bag_dir).as_posix() if bag != bag_dir else '.'
        out.append({'bag': rel, 'files': files})
    return out


def _read_manifest(cache_dir: Path) -> dict:
    path = Path(cache_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f'{cache_dir} is not a dataset cache (no {MANIFEST})') from None
    except (OSError, ValueError) as err:
        raise DatasetError(f'{path} cannot be read: {err}') from None
    if manifest.get('format') != CACHE_FORMAT:
        raise DatasetError(f'{path} is not an am_learning dataset manifest')
    if manifest.get('version') != CACHE_VERSION:
        raise DatasetError(
            f'{cache_dir} has cache version {manifest.get("version")}, this code reads '
            f'{CACHE_VERSION}: rebuild it (am-dataset build ... --force)'
        )
    return manifest


def _stored_fingerprint(manifest: dict) -> list[dict]:
    return [{'bag': s['bag'], 'files': s['files']} for s in manifest.get('sources', [])]


def is_cache_fresh(bag_dir: Path, cache_dir: Path, config: DatasetConfig) -> bool:
    '''True when cache_dir holds a cache built from exactly these bag files with this config.'''
    try:
        manifest = _read_manifest(cache_dir)
    except DatasetError:
        return False
    bags = find_bags(Path(bag_dir)) if Path(bag_dir).exists() else []
    return (
        manifest.get('config_identity') == config.identity()
        and _stored_fingerprint(manifest) == source_fingerprint(Path(bag_dir), bags)
    )


# --- writing arrays ------------------------------------------------------------------------

class _NpyAppender:
    '''Writes an .npy file whose length is not known in advance: the data is appended after
    a fixed-size header that is filled in on close (no second copy of a large array).'''

    HEADER_BYTES = 256

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = None
        self.dtype: np.dtype | None = None
        self.tail: tuple[int, ...] | None = None
        self.count = 0

    def append(self, array: np.ndarray) -> None:
        if self.file is None:
            self.file = open(self.path, 'wb')  # noqa: SIM115 - closed in close()
            self.file.write(b'\0' * self.HEADER_BYTES)
            self.dtype, self.tail = array.dtype, array.shape[1:]
        if array.dtype != self.dtype or array.shape[1:] != self.tail:
            raise DatasetError(
                f'{self.path.name}: frames of shape {array.shape[1:]} {array.dtype} after '
                f'{self.tail} {self.dtype}'
            )
        self.file.write(memoryview(np.ascontiguousarray(array)).cast('B'))
        self.count += len(array)

    def close(self) -> tuple[int, ...] | None:
        if self.file is None:
            return None
        shape = (self.count, *self.tail)
        header = repr({'descr': np.lib.format.dtype_to_descr(self.dtype),
                       'fortran_order': False, 'shape': shape})
        body = header.encode('latin1')
        pad = self.HEADER_BYTES - 10 - len(body) - 1
        if pad < 0:
            raise DatasetError(f'{self.path.name}: shape {shape} too long for the npy header')
        self.file.seek(0)
        self.file.write(b'\x93NUMPY\x01\x00' + (self.HEADER_BYTES - 10).to_bytes(2, 'little')
                        + body + b' ' * pad + b'\n')
        self.file.close()
        self.file = None
        return shape


class _Stats:
    '''Running per-dimension mean / std / min / max (float64 sums).'''

    def __init__(self) -> None:
        self.n = 0
        self.sum = self.sumsq = self.min = self.max = None

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if self.sum is None:
            self.sum, self.sumsq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
            self.min, self.max = np.full(x.shape[1], np.inf), np.full(x.shape[1], -np.inf)
        self.n += len(x)
        self.sum += x.sum(0)
        self.sumsq += np.square(x).sum(0)
        if len(x):
            self.min, self.max = np.minimum(self.min, x.min(0)), np.maximum(self.max, x.max(0))

    def to_dict(self) -> dict | None:
        if self.sum is None or self.n == 0:
            return None
        mean = self.sum / self.n
        std = np.sqrt(np.maximum(self.sumsq / self.n - mean**2, 0.0))
        return {k: [round(float(v), 7) for v in a] for k, a in
                (('mean', mean), ('std', std), ('min', self.min), ('max', self.max))}


# --- reading bags (in worker threads when there are several) --------------------------------

@dataclass
class _BagResult:
    bag: Path
    episodes: list[EpisodeArrays] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    topics: dict[str, str] = field(default_factory=dict)
    rates_hz: dict[str, float] = field(default_factory=dict)


def _rates(streams: object) -> dict[str, float]:
    '''Measured message rate (Hz) per read stream of a bag.'''
    rates = {}
    named = {'images': streams.images, 'twist': streams.twist, 'gripper': streams.gripper,
             'ee_pose': streams.ee_pose, 'state': streams.state}
    if streams.joints:
        named['joint_states'] = max(streams.joints.values(), key=len)
    for name, series in named.items():
        if series is not None and len(series) > 1 and series.stamps[-1] > series.stamps[0]:
            span = (series.stamps[-1] - series.stamps[0]) / 1e9
            rates[name] = round((len(series) - 1) / span, 3)
    return rates


def _process_bag(bag: Path, config: DatasetConfig, fast: bool) -> _BagResult:
    '''Read one bag and align its episodes.'''
    result = _BagResult(bag=bag)
    try:
        streams = read_bag(bag, config, fast=fast)
    except BagReadError as err:
        result.error = str(err)
        return result
    result.topics = streams.topics
    result.rates_hz = _rates(streams)
    for window in episode_windows(streams):
        try:
            result.episodes.append(align_episode(streams, window, config))
        except UnusableEpisodeError as err:
            result.skipped.append((window.episode_id, str(err)))
    return result


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _results(bags: list[Path], config: DatasetConfig, workers: int,
             fast: bool) -> Iterator[_BagResult]:
    '''Per bag, in the order of `bags` (so a cache's frame order never depends on timing).

    Threads, not processes: the work per frame is a CDR view plus cv2.resize, which releases
    the GIL, so threads use every core without a process start-up (seconds with spawn) or
    pickling the frames back; at most 2 * workers bags are in flight.'''
    if workers <= 1:
        for bag in bags:
            yield _process_bag(bag, config, fast)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                               thread_name_prefix='am-dataset') as pool:
        pending: collections.deque = collections.deque()
        queue = iter(bags)
        try:
            for bag in itertools.islice(queue, 2 * workers):
                pending.append(pool.submit(_process_bag, bag, config, fast))
            while pending:
                result = pending.popleft().result()
                for bag in itertools.islice(queue, 1):
                    pending.append(pool.submit(_process_bag, bag, config, fast))
                yield result
        finally:
            for future in pending:
                future.cancel()


# --- build / load --------------------------------------------------------------------------

def _check_replaceable(cache_dir: Path) -> None:
    if not cache_dir.exists():
        return
    if not cache_dir.is_dir():
        raise DatasetError(f'{cache_dir} exists and is not a folder')
    if any(cache_dir.iterdir()) and not (cache_dir / MANIFEST).is_file():
        raise DatasetError(
            f'{cache_dir} is a non-empty folder without {MANIFEST}: refusing to replace it '
            'with a dataset cache (choose another --out)'
        )


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    '''An exclusive lock between builds that install into `folder` (flock on the folder
    itself, so no lock file is left behind).'''
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _install(tmp: Path, cache_dir: Path) -> None:
    '''Move the finished build into place; the old cache is removed only afterwards. Builds
    of the same cache that finish together install one after the other (the last one stays;
    all are complete).'''
    old = Path(tempfile.mkdtemp(prefix=f'.{cache_dir.name}.old-', dir=cache_dir.parent))
    try:
        with _folder_lock(cache_dir.parent):
            _check_replaceable(cache_dir)
            if cache_dir.exists():
                os.rename(cache_dir, old / 'cache')
            os.rename(tmp, cache_dir)
    finally:
        shutil.rmtree(old, ignore_errors=True)


def build_cache(bag_dir: Path, cache_dir: Path, config: DatasetConfig, *,
                progress: bool = True, workers: int | None = None, force: bool = False,
                fast: bool = True) -> Path:
    '''Build the dataset cache of every bag under bag_dir into cache_dir; returns cache_dir.

    Does nothing when cache_dir is already fresh (same bag files, same config) unless
    `force`. Unreadable bags and unusable episodes are skipped with a warning naming them;
    DatasetError when no episode is usable. workers: threads reading bags (None: one per
    core). fast=False: the naive image decoding path.'''
    bag_dir, cache_dir = Path(bag_dir), Path(cache_dir)
    if not bag_dir.exists():
        raise DatasetError(f'bag folder {bag_dir} does not exist')
    bags = find_bags(bag_dir)
    if not bags:
        raise DatasetError(f'no rosbag2 bags (metadata.yaml folders, .mcap, .db3) under {bag_dir}')
    if not force and is_cache_fresh(bag_dir, cache_dir, config):
        log.info('%s is up to date with %d bag(s) in %s', cache_dir, len(bags), bag_dir)
        return cache_dir
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(cache_dir.parent):  # not while a concurrent build installs its cache
        _check_replaceable(cache_dir)
    sources = source_fingerprint(bag_dir, bags)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{cache_dir.name}.building-', dir=cache_dir.parent))
    try:
        workers = min(_cores(), len(bags)) if workers is None else max(1, int(workers))
        manifest = _write_arrays(tmp, bag_dir, bags, sources, config, workers, fast, progress,
                                 cache_dir)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _install(tmp, cache_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    counts = manifest['counts']
    log.info('built %s: %d episode(s), %d frame(s) from %d bag(s) (%d skipped)', cache_dir,
             counts['episodes'], counts['frames'], counts['bags'], counts['bags_skipped'])
    return cache_dir


def _common_state_layout(episodes: list[dict]) -> str | None:
    '''The state layout label every episode shares; None when they differ or carry none.'''
    labels = {e.get('state_layout', '') for e in episodes}
    if len(labels) != 1:
        return None
    return labels.pop() or None


def _write_arrays(tmp: Path, bag_dir: Path, bags: list[Path], sources: list[dict],
                  config: DatasetConfig, workers: int, fast: bool, progress: bool,
                  cache_dir: Path) -> dict:
    appenders = {name: _NpyAppender(tmp / f'{name}.npy') for name in ARRAYS[:-1]}
    stats = {'actions': _Stats(), 'proprio': _Stats(), 'states': _Stats()}
    ends: list[int] = []
    episodes: list[dict] = []
    skipped: list[dict] = []
    topics_seen: dict[str, str] = {}
    rates: dict[str, list[float]] = {}
    frames = 0
    states_everywhere = True
    bar = tqdm(total=len(bags), desc='bags', unit='bag', disable=not progress)
    try:
        for source, result in zip(sources, _results(bags, config, workers, fast)):
            bar.update(1)
            if result.error is not None:
                log.warning('skipping bag %s: %s', result.bag, result.error)
                source.update(status='unreadable', error=result.error, episodes=0)
                skipped.append({'bag': source['bag'], 'reason': result.error})
                continue
            for episode_id, reason in result.skipped:
                log.warning('skipping episode %r of bag %s: %s', episode_id, result.bag, reason)
                skipped.append({'bag': source['bag'], 'episode_id': episode_id,
                                'reason': reason})
            topics_seen.update(result.topics)
            for name, hz in result.rates_hz.items():
                rates.setdefault(name, []).append(hz)
            source.update(status='ok', episodes=len(result.episodes))
            for episode in result.episodes:
                n = episode.num_frames
                appenders['actions'].append(episode.actions)
                appenders['proprio'].append(episode.proprio)
                if episode.images is not None:
                    appenders['images'].append(episode.images)
                if episode.states is not None and states_everywhere:
                    appenders['states'].append(episode.states)
                    stats['states'].add(episode.states)
                else:
                    states_everywhere = False
                stats['actions'].add(episode.actions)
                stats['proprio'].add(episode.proprio)
                episodes.append({**episode.info, 'source': source['bag'],
                                 'start_index': frames, 'end_index': frames + n})
                frames += n
                ends.append(frames)
            bar.set_postfix(episodes=len(episodes), frames=frames)
    finally:
        bar.close()
        shapes = {name: a.close() for name, a in appenders.items()}
    if not episodes:
        reasons = '\n  '.join(
            f'{s["bag"]}{" episode " + repr(s["episode_id"]) if "episode_id" in s else ""}: '
            f'{s["reason"]}' for s in skipped
        ) or '(no episode markers matched)'
        raise DatasetError(
            f'no usable episode in {len(bags)} bag(s) under {bag_dir}:\n  {reasons}'
        )
    if shapes['states'] is not None and shapes['states'][0] != frames:
        log.warning('states left out of %s: not every episode has %s', cache_dir,
                    config.state_topic)
        (tmp / 'states.npy').unlink()
        shapes['states'] = None
        stats['states'] = _Stats()
    np.save(tmp / 'episode_ends.npy', np.asarray(ends, dtype=np.int64))
    shapes['episode_ends'] = (len(ends),)
    arrays = {name: {'file': f'{name}.npy', 'shape': list(shape)}
              for name, shape in shapes.items() if shape is not None}
    return {
        'format': CACHE_FORMAT,
        'version': CACHE_VERSION,
        'created_utc': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
        'bag_dir': str(bag_dir.resolve()),
        'config': config.to_dict(),
        'config_identity': config.identity(),
        'sources': sources,
        'skipped': skipped,
        'topics': {
            'camera': config.camera_topic if config.use_images else None,
            'compressed_camera': config.compressed_camera_topic if config.use_images else None,
            'joint_states': config.joint_states_topic,
            'twist': config.twist_topic,
            'gripper': config.gripper_topic,
            'ee_pose': config.ee_pose_topic,
            'episode_events': config.events_topic,
            'state': config.state_topic,
            'in_bags': dict(sorted(topics_seen.items())),
        },
        'rates': {
            'control_rate_hz': config.control_rate_hz,
            'measured_median_hz': {k: float(np.median(v)) for k, v in sorted(rates.items())},
        },
        'action_scale': config.action_scale.to_dict(),
        'image_size': config.image_size if 'images' in arrays else None,
        'proprio_names': list(config.joint_names),
        'state_dim': shapes['states'][1] if shapes.get('states') else None,
        'state_layout': _common_state_layout(episodes) if shapes.get('states') else None,
        'normalization': {k: s.to_dict() for k, s in stats.items() if s.to_dict() is not None},
        'counts': {
            'bags': len(bags),
            'bags_skipped': sum(1 for s in sources if s.get('status') != 'ok'),
            'episodes': len(episodes),
            'episodes_skipped': sum(1 for s in skipped if 'episode_id' in s),
            'frames': frames,
        },
        'arrays': arrays,
        'episodes': episodes,
        'extra': config.extra,
    }


def load_dataset(cache_dir: Path, *, mmap: bool = True) -> EpisodeDataset:
    '''The cache's arrays as an EpisodeDataset (np.memmap views when mmap, read-only).'''
    cache_dir = Path(cache_dir)
    manifest = _read_manifest(cache_dir)
    arrays: dict[str, np.ndarray | None] = dict.fromkeys(ARRAYS)
    for name, spec in manifest.get('arrays', {}).items():
        path = cache_dir / spec['file']
        use_mmap = mmap and int(np.prod(spec['shape'])) > 0 and name != 'episode_ends'
        try:
            array = np.load(path, mmap_mode='r' if use_mmap else None, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DatasetError(f'{path} cannot be loaded: {err}') from None
        if list(array.shape) != list(spec['shape']):
            raise DatasetError(
                f'{path} has shape {array.shape}, the manifest says {spec["shape"]}: '
                'the cache is damaged, rebuild it'
            )
        arrays[name] = array
    missing = [n for n in ('actions', 'proprio', 'episode_ends') if arrays[n] is None]
    if missing:
        raise DatasetError(f'{cache_dir} lacks {", ".join(missing)}: rebuild it')
    try:
        return EpisodeDataset(
            actions=arrays['actions'], episode_ends=arrays['episode_ends'],
            proprio=arrays['proprio'], images=arrays['images'], states=arrays['states'],
            manifest=manifest,
        )
    except ValueError as err:
        raise DatasetError(f'{cache_dir}: {err}') from None


def dataset_from_bags(bag_dir: Path, cache_dir: Path, config: DatasetConfig, *,
                      progress: bool = True, workers: int | None = None,
                      mmap: bool = True) -> EpisodeDataset:
    '''The dataset of the bags under bag_dir, through a cache that is rebuilt only when the
    bags or the config changed.'''
    build_cache(bag_dir, cache_dir, config, progress=progress, workers=workers)
    return load_dataset(cache_dir, mmap=mmap)
