'''Measuring how fast bags become a dataset cache (bench/dataset_build.py reports it).

`measure()` writes 640x480 episode bags the way the recorder does (MCAP, rgb8 camera at the
control rate, joint states, twist + gripper commands, episode markers), then times complete
cache builds of them, each into a fresh cache, and in the same run (frames carry a
camera-like texture, so JPEGs cost what real ones cost to decode):
  - naive:          every message fully deserialised, colours converted (and JPEGs
                    decoded) at camera resolution, then resized; one thread
  - fast_1_thread:  camera frames read straight from the CDR bytes, resized before the
                    colour conversion (JPEGs decoded at a reduced scale); one thread
  - fast:           the same with one thread per core over the bags (`am-dataset build`)
for rgb8 (and bgr8 and JPEG CompressedImage, naive and fast), plus the two stages that bound
a build: reading the bags (rosbags, no decoding) and the INTER_AREA resize alone.
Frames per second = dataset frames / wall-clock time of a complete build.
'''

import os
from pathlib import Path
import shutil
import tempfile
import time

import cv2
import numpy as np
from rosbags.rosbag2 import Reader

from am_learning.data.bags import find_bags
from am_learning.data.cache import build_cache, load_dataset
from am_learning.data.config import DatasetConfig
from am_learning.data.synthetic import EpisodeSpec, make_frame, write_synthetic_bag


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _warm_page_cache(root: Path) -> None:
    '''Read every file once so that no timed build pays for the first disk read.'''
    for path in root.rglob('*'):
        if path.is_file():
            with open(path, 'rb') as f:
                while f.read(1 << 24):
                    pass


def _build_once(bag_dir: Path, cache: Path, config: DatasetConfig, *, workers: int,
                fast: bool) -> tuple[float, float]:
    '''(wall-clock seconds, CPU seconds of this process) of one complete build.'''
    if cache.exists():
        shutil.rmtree(cache)
    wall, cpu = time.perf_counter(), time.process_time()
    build_cache(bag_dir, cache, config, progress=False, workers=workers, force=True, fast=fast)
    return time.perf_counter() - wall, time.process_time() - cpu


def _read_only_s(bag_dir: Path) -> float:
    '''Time to iterate every message of every bag with rosbags, decoding nothing.'''
    start = time.perf_counter()
    total = 0
    for bag in find_bags(bag_dir):
        with Reader(bag) as reader:
            for _, _, raw in reader.messages():
                total += len(raw)
    return time.perf_counter() - start


def _resize_only_s(width: int, height: int, size: int, frames: int) -> float:
    frame = make_frame(0, width, height)
    cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    start = time.perf_counter()
    for _ in range(frames):
        cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return time.perf_counter() - start


def _bag_mb(root: Path) -> float:
    return round(sum(p.stat().st_size for p in root.rglob('*') if p.is_file()) / 2**20, 1)


def measure(*, frames: int = 800, bags: int = 4, width: int = 640, height: int = 480,
            image_size: int = 64, repeats: int = 3, workers: int | None = None,
            variants: tuple[str, ...] = ('rgb8', 'bgr8', 'jpeg'),
            workdir: Path | None = None) -> dict:
    '''Run the whole measurement; returns metrics and details. Frames/s: best of `repeats`
    builds per path; CPU ms per frame (all threads of the process): their median, which
    the other jobs on a shared machine disturb less than the wall clock.

    variants: camera formats to measure besides rgb8 ('bgr8', 'jpeg'); rgb8 is always
    measured with the naive path, the fast path on one thread and on `workers` threads.'''
    workers = workers or _cores()
    per_bag = max(2, frames // bags)
    config = DatasetConfig(image_size=image_size)
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix='am-dataset-bench-', dir=workdir))
    runs: dict[str, list[float]] = {}
    cpu_s: dict[str, list[float]] = {}
    details: dict = {}
    try:
        formats = {'rgb8': ('rgb8', None), 'bgr8': ('bgr8', None), 'jpeg': ('rgb8', 'jpeg')}
        for variant in ('rgb8', *[v for v in variants if v != 'rgb8']):
            encoding, compression = formats[variant]
            bag_dir = root / variant
            start = time.perf_counter()
            n = 0
            for i in range(bags):
                write_synthetic_bag(bag_dir / f'episode_{i:03d}', [EpisodeSpec(per_bag)],
                                    image_width=width, image_height=height,
                                    encoding=encoding, compression=compression, seed=i,
                                    first_step=i * per_bag, texture=True)
                n += per_bag
            details[f'{variant}_bag_write_s'] = round(time.perf_counter() - start, 2)
            details[f'{variant}_bag_mb'] = _bag_mb(bag_dir)
            _warm_page_cache(bag_dir)
            paths = [('naive', 1, False), ('fast', workers, True)]
            if variant == 'rgb8':
                paths.insert(1, ('fast_1_thread', 1, True))
            # Warm-up on one bag: imports, typestores, rosbags' generated deserialisers.
            for _, _, fast in paths:
                _build_once(bag_dir / 'episode_000', root / 'warmup', config, workers=1,
                            fast=fast)
            # Round robin, so that every path sees the same (shared, noisy) machine.
            for _ in range(repeats):
                for name, n_workers, fast in paths:
                    key = f'{variant}_{name}'
                    wall, cpu = _build_once(bag_dir, root / key, config, workers=n_workers,
                                            fast=fast)
                    runs.setdefault(key, []).append(wall)
                    cpu_s.setdefault(key, []).append(cpu)
            naive_ds = load_dataset(root / f'{variant}_naive')
            fast_ds = load_dataset(root / f'{variant}_fast')
            if fast_ds.num_frames != n:
                raise RuntimeError(f'{variant}: {fast_ds.num_frames} frames cached, {n} written')
            details[f'{variant}_fast_equals_naive'] = bool(
                np.array_equal(naive_ds.images, fast_ds.images)
                and np.array_equal(naive_ds.actions, fast_ds.actions))
            details[f'{variant}_fast_vs_naive_mean_abs_pixel_diff'] = round(float(np.mean(
                np.abs(naive_ds.images.astype(np.int16) - fast_ds.images))), 4)
            if variant == 'rgb8':
                read_s = min(_read_only_s(bag_dir) for _ in range(repeats))
            for key in [k for k in runs if k.startswith(variant)]:
                shutil.rmtree(root / key, ignore_errors=True)
            shutil.rmtree(bag_dir, ignore_errors=True)
        resize_s = _resize_only_s(width, height, image_size, n)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    fps = {name: n / min(seconds) for name, seconds in runs.items()}
    metrics = {
        'dataset_build_fps': round(fps['rgb8_fast'], 1),
        'dataset_build_fps_1_thread': round(fps['rgb8_fast_1_thread'], 1),
        'dataset_build_fps_naive': round(fps['rgb8_naive'], 1),
        'speedup_vs_naive': round(fps['rgb8_fast'] / fps['rgb8_naive'], 2),
        'speedup_1_thread_vs_naive': round(fps['rgb8_fast_1_thread'] / fps['rgb8_naive'], 2),
        'read_only_fps': round(n / read_s, 1),
        'resize_only_fps_1_thread': round(n / resize_s, 1),
        **{f'cpu_ms_per_frame_{k}': round(1e3 * float(np.median(v)) / n, 3)
           for k, v in cpu_s.items()},
    }
    for variant in variants:
        if variant != 'rgb8':
            metrics[f'dataset_build_fps_{variant}'] = round(fps[f'{variant}_fast'], 1)
            metrics[f'dataset_build_fps_{variant}_naive'] = round(fps[f'{variant}_naive'], 1)
            metrics[f'speedup_{variant}_vs_naive'] = round(
                fps[f'{variant}_fast'] / fps[f'{variant}_naive'], 2)
    details.update({
        'frames': n, 'bags': bags, 'camera': f'{width}x{height}', 'image_size': image_size,
        'workers': workers, 'repeats': repeats,
        'build_seconds': {k: [round(s, 3) for s in v] for k, v in runs.items()},
        'load_average_1min': {'before': round(load_before, 2),
                              'after': round(os.getloadavg()[0], 2)},
    })
    return {'metrics': metrics, 'details': details}


def dataset_build_fps(**kwargs: object) -> float:
    '''Frames/s of a cache build from 640x480 bags on every core (see `measure`).'''
    return measure(variants=('rgb8',), **kwargs)['metrics']['dataset_build_fps']
