'''provenance: the machine and commit that every report names.'''

import subprocess

from am_learning.provenance import CPU_FEATURES, cpu_features, git_commit, machine


def test_machine_names_cores_memory_and_the_cpu_features_it_has():
    text = machine('one H200')
    assert ' cores, ' in text and ' GiB, ' in text and 'one H200' in text
    assert set(cpu_features().split()) <= set(CPU_FEATURES)


def test_git_commit_is_head_and_says_dirty_for_the_measured_paths(tmp_path, monkeypatch):
    def git(*args: str) -> str:
        return subprocess.run(['git', *args], cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()

    git('init', '-q')
    (tmp_path / 'src').mkdir()
    (tmp_path / 'src' / 'a.py').write_text('a = 1\n')
    (tmp_path / 'notes.md').write_text('x\n')
    git('add', '.')
    git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'first')
    head = git('rev-parse', 'HEAD')
    assert git_commit(tmp_path, 'src') == head
    (tmp_path / 'notes.md').write_text('y\n')  # outside the measured paths
    assert git_commit(tmp_path, 'src') == head
    assert git_commit(tmp_path / 'src', ':/notes.md') == head + '-dirty'  # from a subfolder
    (tmp_path / 'src' / 'a.py').write_text('a = 2\n')
    assert git_commit(tmp_path, 'src') == head + '-dirty'

    monkeypatch.setenv('AM_GIT_COMMIT', 'abc123')
    assert git_commit(tmp_path / 'no-such-folder') == 'abc123'
