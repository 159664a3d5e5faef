'''`make setup`'s refusals: they must say what is wrong and leave no venv a rerun would trust.

Each test runs the real scripts/setup.sh in a copy of the workspace's setup files, so the
checkout's own .venv is never touched.
'''

import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def workspace_copy(tmp_path: Path) -> Path:
    for folder in ('scripts', 'requirements'):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    shutil.copy(REPO_ROOT / 'colcon.meta', tmp_path)
    (tmp_path / 'src').mkdir()
    return tmp_path


def run_setup(root: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(('ROS_', 'AMENT_', 'VIRTUAL_ENV', 'COLCON_'))}
    clean['PATH'] = os.pathsep.join(
        p for p in clean['PATH'].split(os.pathsep) if '.venv' not in p and 'install' not in p
    )
    clean.update(env)
    return subprocess.run(
        ['bash', str(root / 'scripts' / 'setup.sh')], capture_output=True, text=True,
        env=clean, timeout=240,
    )


def test_unsupported_python_is_refused_with_advice(workspace_copy: Path):
    fake = workspace_copy / 'python3.9'
    fake.write_text('#!/bin/sh\necho 3.9\n')
    fake.chmod(0o755)
    result = run_setup(workspace_copy, PYTHON=str(fake))
    assert result.returncode != 0
    assert 'Python 3.9 found' in result.stderr and 'PYTHON=python3.11' in result.stderr
    assert not (workspace_copy / '.venv').exists()


def test_broken_sourced_ros_is_refused_with_advice(workspace_copy: Path):
    # The base interpreter has no rclpy: a sourced distro whose Python cannot import it.
    result = run_setup(workspace_copy, ROS_DISTRO='jazzy', PYTHON=sys.base_prefix + '/bin/python3')
    assert result.returncode != 0
    assert 'rclpy does not import' in result.stderr
    assert 'source /opt/ros/jazzy/setup.bash' in result.stderr
    assert not (workspace_copy / '.venv').exists()


def test_failed_install_leaves_no_venv_behind(workspace_copy: Path):
    requirements = workspace_copy / 'requirements' / 'python.txt'
    requirements.write_text('am-stack-no-such-package==0.0.0\n')
    result = run_setup(workspace_copy, PYTHON=sys.base_prefix + '/bin/python3')
    assert result.returncode != 0
    assert 'install failed, removing' in result.stderr
    assert not (workspace_copy / '.venv').exists()
