'''One lint configuration for the whole tree (pyproject.toml: 99 columns, single quotes).'''

from pathlib import Path
import shutil
import subprocess

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes_on_the_whole_tree():
    ruff = shutil.which('ruff')
    assert ruff, 'ruff is missing: run make setup'
    result = subprocess.run(
        [ruff, 'check', '--no-cache', str(REPO_ROOT)], capture_output=True, text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
