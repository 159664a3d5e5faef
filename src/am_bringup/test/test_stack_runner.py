'''The stack description, the am-launch runner and the launch files.

The runner tests start the real executables over DDS and check that the whole process
tree is gone afterwards.
'''

import importlib.util
import os
from pathlib import Path
import signal
import subprocess
import threading
import time

import psutil
import pytest
from rosbags.highlevel import AnyReader
import yaml

from am_bringup.runner import command_line, parse_args
from am_bringup.stack import StackError, config_dir, record_stack, robot_stack

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parents[1]


def test_robot_stack_nodes_and_overrides():
    specs = robot_stack({'robot': 'sim', 'checkpoint': '/ckpt', 'record': 'true'})
    assert [s.executable for s in specs] == ['sim_robot', 'recorder', 'policy']
    policy = specs[-1]
    assert policy.parameters['checkpoint'] == '/ckpt'
    assert policy.parameters['commander'] == 'servo'
    assert policy.parameters['frame_id'] == 'world'
    # A real robot brings its own drivers: only the policy node is ours.
    assert [s.executable for s in robot_stack({'robot': 'real'})] == ['policy']


def test_faster_than_real_time_forces_sim_time():
    specs = record_stack({'real_time_factor': '4.0', 'episodes': '3'})
    sim, *others = specs
    assert sim.executable == 'sim_robot' and 'use_sim_time' not in sim.parameters
    assert all(s.parameters.get('use_sim_time') is True for s in others)
    teleop = specs[-1]
    assert teleop.executable == 'scripted_teleop' and teleop.parameters['episodes'] == 3


def test_record_stack_chooses_the_scripted_operator():
    teleop = record_stack({'operator': 'reach'})[-1]
    assert teleop.parameters['operator'] == 'reach' and teleop.parameters['label'] == 'reach'
    assert 'operator' not in record_stack({})[-1].parameters  # scripted_teleop.yaml's
    with pytest.raises(StackError, match='operator:=dance is not one of play, reach'):
        record_stack({'operator': 'dance'})


@pytest.mark.parametrize('args, message', [
    ({'robot': 'moon'}, 'robot:=moon is not one of sim, gazebo, real'),
    ({'commander': 'joystick'}, 'commander:=joystick'),
    ({'record': 'maybe'}, 'record:=maybe is not a boolean'),
    ({'checkpoints': 'x'}, 'unknown argument(s) checkpoints'),
])
def test_bad_robot_arguments_say_what_is_wrong(args, message):
    with pytest.raises(StackError, match=message.replace('(', r'\(').replace(')', r'\)')):
        robot_stack(args)


def test_scripted_teleop_needs_the_simulator():
    with pytest.raises(StackError, match='robot:=sim'):
        record_stack({'robot': 'real', 'teleop': 'scripted'})


def test_parse_args_and_command_line():
    stack, args = parse_args(['robot', 'checkpoint:=/a/b', 'record:=true'])
    assert stack == 'robot' and args == {'checkpoint': '/a/b', 'record': 'true'}
    with pytest.raises(StackError, match='name:=value'):
        parse_args(['robot', 'checkpoint=/a'])
    with pytest.raises(StackError, match='unknown stack'):
        parse_args(['everything'])
    policy = robot_stack({'checkpoint': '/a/b'})[-1]
    cmd = command_line(policy)
    assert cmd[0].endswith('lib/am_policy_node/policy')
    assert cmd[cmd.index('--params-file') + 1] == str(config_dir() / 'policy.yaml')
    assert 'checkpoint:=/a/b' in cmd and '__node:=policy' in cmd


def test_every_parameter_file_matches_its_node():
    '''Each YAML key is a parameter the node declares (a typo would be silently ignored).'''
    from am_dataset_recorder.core import RecorderConfig
    from am_policy_node.config import PolicyNodeConfig
    from am_sim.core import SimConfig
    from am_sim.teleop_core import TeleopConfig

    configs = {'sim_robot.yaml': SimConfig, 'scripted_teleop.yaml': TeleopConfig,
               'recorder.yaml': RecorderConfig, 'policy.yaml': PolicyNodeConfig}
    for name, config in configs.items():
        keys = set(yaml.safe_load((PACKAGE_DIR / 'config' / name).read_text())
                   ['/**']['ros__parameters'])
        fields = set(config.__dataclass_fields__)
        assert keys <= fields, f'{name}: unknown {sorted(keys - fields)}'


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.ros
@pytest.mark.slow
def test_record_stack_records_episodes_and_leaves_nothing_behind(tmp_path: Path):
    out = tmp_path / 'bags'
    runner = subprocess.Popen(
        ['am-launch', 'record', 'episodes:=2', 'steps:=30', f'output_dir:={out}',
         'real_time_factor:=0', 'seed:=3'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 90
    while runner.poll() is None and time.monotonic() < deadline:
        seen.update(p.pid for p in _tree(runner.pid))
        time.sleep(0.2)
    output = runner.stdout.read().decode(errors='replace') if runner.poll() is not None else ''
    if runner.poll() is None:
        os.killpg(runner.pid, signal.SIGKILL)
        pytest.fail('am-launch record did not finish')
    assert runner.returncode == 0, output
    assert len(seen) >= 4, 'runner + sim_robot + recorder + scripted_teleop'
    assert not [pid for pid in seen if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE], output
    bags = sorted(p for p in out.iterdir() if (p / 'metadata.yaml').exists())
    assert len(bags) == 2, output
    with AnyReader([bags[0]]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts['/servo_node/delta_twist_cmds'] >= 25
    assert counts['/camera/image_raw'] >= 25


@pytest.mark.ros
def test_ctrl_c_stops_the_robot_stack_cleanly(tmp_path: Path):
    checkpoint = REPO_ROOT / 'src' / 'am_policy_node' / 'test' / 'data' / 'reach_64px'
    runner = subprocess.Popen(
        ['am-launch', 'robot', f'checkpoint:={checkpoint}', 'record:=true',
         f'output_dir:={tmp_path}'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(iter(runner.stdout.readline, b'')), daemon=True)
    reader.start()

    def started(tag: str) -> bool:
        return any(tag in line.decode(errors='replace') for line in list(lines))

    try:
        assert _wait(lambda: started('policy ready') and started('real-time factor'), 60), \
            b''.join(lines).decode(errors='replace')
        seen = {p.pid for p in _tree(runner.pid)}
        assert len(seen) >= 4, 'runner + sim_robot + recorder + policy'
        runner.send_signal(signal.SIGINT)
        runner.wait(30)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    reader.join(5)
    output = b''.join(lines).decode(errors='replace')
    assert runner.returncode == 0, output
    alive = [pid for pid in seen if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, output


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize('path', ['launch/robot.launch.py', 'launch/record.launch.py',
                                  'am_bringup/launch_actions.py'])
def test_launch_code_compiles_everywhere(path):
    '''Without `launch` here, at least the launch code must be valid Python.'''
    source = (PACKAGE_DIR / path).read_text()
    compile(source, path, 'exec')
    assert 'generate_launch_description' in source or 'def stack_description' in source


@pytest.mark.parametrize('name', ['robot.launch.py', 'record.launch.py'])
def test_launch_files_load_where_launch_exists(name):
    pytest.importorskip('launch_ros', reason='launch/launch_ros are not installable here')
    spec = importlib.util.spec_from_file_location(name[:-3], PACKAGE_DIR / 'launch' / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {a.name for a in description.get_launch_arguments()}
    assert {'robot', 'use_sim_time'} <= declared
