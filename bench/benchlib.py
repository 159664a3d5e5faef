'''What the scripts in bench/ share: where and from what a report was measured, and
running one stage command with its log.

Imported by the scripts in bench/ (run as `python bench/<name>.py`, so this folder is on
sys.path).
'''

import os
from pathlib import Path
import subprocess

from am_learning import provenance
from am_learning.provenance import machine

__all__ = ['OGBENCH_MAX_STEPS', 'ROOT', 'git_commit', 'machine', 'run', 'state_training_args']

ROOT = Path(__file__).resolve().parents[1]
OGBENCH_MAX_STEPS = {'cube-single': 200, 'cube-double': 500, 'scene': 750, 'puzzle-3x3': 500}
'''OGBench's evaluation episode limits (control steps) per manipulation scene.'''


def git_commit(*paths: str) -> str:
    '''This repository's HEAD, with "-dirty" when the measured paths have uncommitted
    changes.'''
    return provenance.git_commit(ROOT, *paths)


def state_training_args() -> list[str]:
    '''am-train arguments of every state-based bench: OGBench's joint velocities left out of
    the networks' input (am_learning.envs.JOINT_VELOCITY_DIMS says why). A bench's own
    `--set network.state_ignore=[]` comes later on the command line and puts them back.'''
    from am_learning.envs.operator import JOINT_VELOCITY_DIMS

    return ['--set', f'network.state_ignore={list(JOINT_VELOCITY_DIMS)}']


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    '''Run one stage command, its output in `log`; raise with the log's tail on failure.
    `env`: variables set for the command on top of this process's environment.'''
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, 'w') as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT,
                               env={**os.environ, **env} if env else None)
    if code != 0:
        tail = log.read_text(errors='replace')[-3000:]
        raise RuntimeError(f'{" ".join(cmd)} failed ({code}):\n{tail}')
