'''End to end on CI: 3 episodes recorded over ROS -> a few hundred updates -> the policy
node, given goal images through its action, moves the simulated arm.'''

import json
from pathlib import Path
import subprocess

import pytest


@pytest.mark.ros
@pytest.mark.slow
def test_tiny_demo_records_trains_and_moves_the_arm(tmp_path: Path):
    out = tmp_path / 'demo'
    result = subprocess.run(['am-demo', '--preset', 'tiny', '--out', str(out)],
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'report:' in result.stdout

    bags = [p for p in (out / 'bags').iterdir() if (p / 'metadata.yaml').exists()]
    assert len(bags) == 3
    manifest = json.loads((out / 'cache' / 'manifest.json').read_text())
    assert len(manifest['episodes']) == 3
    assert (out / 'am' / 'checkpoint' / 'model.safetensors').exists()

    am = json.loads((out / 'trials_am.json').read_text())
    idle = json.loads((out / 'trials_do_nothing.json').read_text())
    assert am['summary']['trials'] == 2
    # Nobody moves the arm in the baseline; the policy does, through ~/reach_goal.
    assert idle['summary']['mean_ee_path_m'] < 0.005
    assert am['summary']['mean_ee_path_m'] > 0.02
    assert {t['reason'] for t in am['trials']} <= {'reached', 'timeout', 'q_below_floor'}

    report = json.loads((out / 'report.json').read_text())
    assert set(report['success_pct']) == {'do_nothing', 'am', 'gcbc'}
    # The keys every benchmark report has (../shared/BENCHMARKS.md).
    assert report['benchmark'] == 'demo_tiny'
    assert report['command'] == f'am-demo --preset tiny --out {out}'
    assert report['git_commit'] and 'cores' in report['machine'] and report['date']
    assert report['metrics']['success']['am']['reach'] == report['success_pct']['am']
    assert report['metrics']['rollouts'] == 2
    assert (out / 'report.png').stat().st_size > 10_000
