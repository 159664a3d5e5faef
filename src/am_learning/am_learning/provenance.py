'''Where and from what a figure was measured: the `machine` and `git_commit` that every report
names (the benchmarks under bench/ and am-demo's report).'''

import os
from pathlib import Path
import platform
import subprocess


def cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


CPU_FEATURES = ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16')
'''The CPU flags that set training speed here: one "AMD EPYC" of this workplace had AMX
(bf16 autocast pays), another only AVX2 (emulated bf16, about 9x slower than fp32).'''


def cpu_features() -> str:
    '''The CPU_FEATURES this CPU has, e.g. "avx2 avx512f amx_bf16" ("" where unknown).'''
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('flags'):
                flags = set(line.split(':', 1)[1].split())
                return ' '.join(f for f in CPU_FEATURES if f in flags)
    except OSError:
        pass
    return ''


def machine(accelerator: str = 'no GPU') -> str:
    '''"2 cores, 24 GiB, <CPU model> (<features>), no GPU, Linux <release>".'''
    mem_gb = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
    features = cpu_features()
    cpu = f'{cpu_model()} ({features})' if features else cpu_model()
    return (f'{len(os.sched_getaffinity(0))} cores, {mem_gb:.0f} GiB, {cpu}, '
            f'{accelerator}, {platform.system()} {platform.release()}')


def git_commit(root: Path | str, *paths: str) -> str:
    '''HEAD of the repository at `root`, with "-dirty" when `paths` (relative to it) have
    uncommitted changes; $AM_GIT_COMMIT or "unknown" outside a repository.'''
    run = {'cwd': root, 'capture_output': True, 'text': True}
    try:
        head = subprocess.run(['git', 'rev-parse', 'HEAD'], **run).stdout.strip()
    except OSError:  # no git, or no such folder
        head = ''
    if not head:
        return os.environ.get('AM_GIT_COMMIT', 'unknown')
    dirty = subprocess.run(['git', 'status', '--porcelain', '--', *paths],
                           **run).stdout.strip() if paths else ''
    return head + ('-dirty' if dirty else '')
