'''Fixtures for tests that run real ROS 2 nodes.

`ros_node` is an rclpy node inside the test process, spun by a background executor, used
to publish, subscribe and call services. `start_node` starts one of the workspace's
executables as its own process (exactly as a launch file would), with parameters, and
stops it at the end of the test, with its log attached to a failure.
'''

from collections.abc import Callable, Iterator
import os
from pathlib import Path
import signal
import subprocess
import threading
import time

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL = REPO_ROOT / 'install'


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, period: float = 0.02) -> bool:
    '''Poll `predicate` until it is true or `timeout` seconds passed; return its last value.'''
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


def future_result(future, timeout: float = 15.0):
    '''Block until an rclpy future (service call, action goal or result) is done; its result.

    The test's node is spun by another thread (`ros_node`), so this only waits.'''
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    assert done.wait(timeout), f'no answer within {timeout:g} s'
    return future.result()


def executable_path(package: str, executable: str) -> Path:
    '''Where colcon installed a node executable (setup.cfg install_scripts).'''
    path = INSTALL / package / 'lib' / package / executable
    if not path.exists():
        raise FileNotFoundError(f'{path} not found: run `make setup` to build the workspace')
    return path


def _param_args(params: dict) -> list[str]:
    args: list[str] = []
    for name, value in params.items():
        if isinstance(value, bool):
            text = 'true' if value else 'false'
        elif isinstance(value, (list, tuple)):
            text = '[' + ','.join(repr(v) if isinstance(v, str) else str(v) for v in value) + ']'
        else:
            text = str(value)
        args += ['-p', f'{name}:={text}']
    return args


class NodeProcess:
    '''A node running in its own process, with its combined output in a log file.'''

    def __init__(self, popen: subprocess.Popen, log_path: Path, name: str) -> None:
        self.popen = popen
        self.log_path = log_path
        self.name = name

    def log(self) -> str:
        return self.log_path.read_text(errors='replace') if self.log_path.exists() else ''

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        '''Send `sig`, wait for the exit, kill if needed; return the exit code.'''
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


@pytest.fixture
def start_node(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., NodeProcess]]:
    '''Start workspace executables; every one still running is stopped at teardown.'''
    started: list[NodeProcess] = []

    def _start(
        package: str,
        executable: str,
        params: dict | None = None,
        remaps: dict | None = None,
        name: str | None = None,
        extra_args: list[str] | None = None,
        env: dict | None = None,
    ) -> NodeProcess:
        cmd = [str(executable_path(package, executable))] + list(extra_args or [])
        cmd += ['--ros-args']
        if name:
            cmd += ['-r', f'__node:={name}']
        for src, dst in (remaps or {}).items():
            cmd += ['-r', f'{src}:={dst}']
        cmd += _param_args(params or {})
        log_path = tmp_path / f'{name or executable}-{len(started)}.log'
        proc_env = dict(os.environ)
        proc_env['PYTHONUNBUFFERED'] = '1'
        proc_env.update(env or {})
        with open(log_path, 'wb') as log:
            popen = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=proc_env, start_new_session=True
            )
        node = NodeProcess(popen, log_path, name or executable)
        started.append(node)
        return node

    yield _start

    failed = request.node.rep_call.failed if hasattr(request.node, 'rep_call') else False
    for node in started:
        node.stop()
        if failed:
            print(f'----- log of {node.name} -----\n{node.log()}')


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    '''Remember each phase's report on the item, so fixtures can tell a failure.'''
    report = yield
    setattr(item, 'rep_' + report.when, report)
    return report


@pytest.fixture
def ros_node() -> Iterator['rclpy.node.Node']:  # noqa: F821
    '''An rclpy node in the test process, spun by a multi-threaded executor in a thread.'''
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor

    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('am_test_probe', context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        spun = executor.get_nodes()  # the probe and any action_client nodes; shutdown forgets them
        executor.shutdown(timeout_sec=2.0)
        for each in spun:
            each.destroy_node()
        rclpy.shutdown(context=context)
        thread.join(timeout=2.0)


def action_client(node: 'rclpy.node.Node', action_type, name: str):  # noqa: F821
    '''An ActionClient for `name`, spun by the executor that spins `node` (`ros_node`).

    rclpy's ActionClient registers with its node before it has made its lock, so one made on
    a node that another thread is spinning can kill that thread (AttributeError: no
    attribute '_lock'; the test then waits for answers that never come). The client is made
    on a new node of the same context, which joins the executor once the client is whole.
    '''
    import rclpy
    from rclpy.action import ActionClient

    side = rclpy.create_node(f'{node.get_name()}_action_{len(node.executor.get_nodes())}',
                             context=node.context)
    client = ActionClient(side, action_type, name)
    node.executor.add_node(side)
    return client
