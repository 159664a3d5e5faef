'''What every benchmark report says about where and from what it was measured.

Imported by the scripts in bench/ (run as `python bench/<name>.py`, so this folder is on
sys.path).
'''

import os
from pathlib import Path
import platform
import subprocess

ROOT = Path(__file__).resolve().parents[1]


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
    '''"2 cores, 24 GiB, <CPU model> (<features>), no GPU, Linux <release>" for the report's
    machine key.'''
    mem_gb = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
    features = cpu_features()
    cpu = f'{cpu_model()} ({features})' if features else cpu_model()
    return (f'{len(os.sched_getaffinity(0))} cores, {mem_gb:.0f} GiB, {cpu}, '
            f'{accelerator}, {platform.system()} {platform.release()}')


def git_commit(*paths: str) -> str:
    '''HEAD, with "-dirty" when the measured paths have uncommitted changes.'''
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    if not head:
        return os.environ.get('AM_GIT_COMMIT', 'unknown')
    dirty = subprocess.run(['git', 'status', '--porcelain', '--', *paths], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip() if paths else ''
    return head + ('-dirty' if dirty else '')


def state_training_args() -> list[str]:
    '''am-train arguments of every state-based bench: OGBench's joint velocities left out of
    the networks' input (am_learning.envs.JOINT_VELOCITY_DIMS says why). A bench's own
    `--set network.state_ignore=[]` comes later on the command line and puts them back.'''
    from am_learning.envs.operator import JOINT_VELOCITY_DIMS

    return ['--set', f'network.state_ignore={list(JOINT_VELOCITY_DIMS)}']
