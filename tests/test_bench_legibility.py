'''bench/legibility.py: a small real run writes both reports; bad elevations are refused.'''

import json
from pathlib import Path
import subprocess
import sys

SCRIPT = Path(__file__).resolve().parents[1] / 'bench' / 'legibility.py'


def test_small_run_writes_its_reports(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), '--elevations', '60', '--train-frames', '64',
         '--test-frames', '16', '--train-s', '1', '--threads', '1', '--results-dir',
         str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / 'legibility.json').read_text())
    figures = report['metrics']['by_shadow_elevation_deg']['60']
    assert figures['updates'] > 0 and figures['error_cm'] > 0
    assert figures['error_cm'] >= figures['across_cm'] and figures['within_3cm_pct'] <= 100
    assert '| 60 deg |' in (tmp_path / 'legibility.md').read_text()


def test_bad_elevations_are_refused(tmp_path):
    for bad in ('abc', '0,60', '91'):
        result = subprocess.run([sys.executable, str(SCRIPT), '--elevations', bad,
                                 '--results-dir', str(tmp_path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and 'must be degrees in (0, 90]' in result.stderr
    assert not any(tmp_path.iterdir())
