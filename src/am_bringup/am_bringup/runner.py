'''`am-launch`: start a stack of am_bringup.stack without the ros2 CLI.

    am-launch robot robot:=sim checkpoint:=runs/demo/checkpoint record:=true
    am-launch record episodes:=10 output_dir:=data/bags

Starts the same executables with the same parameter files as the launch files, prefixes
each node's output with its name, forwards Ctrl-C / SIGTERM to every node, stops the
whole stack when a required node exits, and leaves no process behind (each node runs in
its own process group, killed if it ignores SIGINT and SIGTERM).
'''

from collections.abc import Sequence
from dataclasses import dataclass
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

from am_bringup.stack import STACKS, NodeSpec, StackError, config_dir

SHUTDOWN_GRACE_S = 10.0


def parse_args(argv: Sequence[str]) -> tuple[str, dict[str, str]]:
    '''`STACK name:=value ...` -> (stack, arguments).'''
    if not argv or argv[0] in ('-h', '--help'):
        raise StackError(f'usage: am-launch {{{",".join(STACKS)}}} [name:=value ...]')
    stack, args = argv[0], {}
    if stack not in STACKS:
        raise StackError(f'unknown stack {stack!r}: use one of {", ".join(STACKS)}')
    for item in argv[1:]:
        name, sep, value = item.partition(':=')
        if not sep or not name:
            raise StackError(f'argument {item!r} is not of the form name:=value')
        args[name] = value
    return stack, args


def executable_path(package: str, name: str) -> Path:
    '''An installed node executable (colcon: <prefix>/lib/<package>/<name>).'''
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        prefix = Path(get_package_prefix(package))
    except PackageNotFoundError:
        raise StackError(f'package {package} is not installed: run `make setup` and '
                         'source scripts/env.sh') from None
    path = prefix / 'lib' / package / name
    if not path.exists():
        raise StackError(f'{path} does not exist: rebuild with `make setup`')
    return path


def executable(spec: NodeSpec) -> Path:
    '''The installed executable of a node spec.'''
    return executable_path(spec.package, spec.executable)


def _param_text(value: object) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def command_line(spec: NodeSpec, config: Path | None = None) -> list[str]:
    '''The node's command line: executable, node name, parameter file, overrides, remaps.'''
    cmd = [str(executable(spec)), '--ros-args', '-r', f'__node:={spec.name}']
    if spec.params_file:
        params_file = (config or config_dir()) / spec.params_file
        if not params_file.exists():
            raise StackError(f'parameter file {params_file} is missing')
        cmd += ['--params-file', str(params_file)]
    for name, value in spec.parameters.items():
        cmd += ['-p', f'{name}:={_param_text(value)}']
    for source, target in spec.remappings:
        cmd += ['-r', f'{source}:={target}']
    return cmd


@dataclass
class _Running:
    spec: NodeSpec
    popen: subprocess.Popen


def _pump(name: str, stream, out) -> None:
    for line in iter(stream.readline, b''):
        out.write(f'[{name}] {line.decode(errors="replace")}')
        out.flush()


class StackRunner:
    '''Runs a list of node specs as processes and stops them all together.'''

    def __init__(self, specs: list[NodeSpec], out=sys.stdout) -> None:
        self._specs = specs
        self._out = out
        self._running: list[_Running] = []
        self._stop = threading.Event()

    def start(self) -> None:
        env = dict(os.environ)
        # Loopback-only discovery unless the user chose otherwise (a real robot's network).
        env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        env['PYTHONUNBUFFERED'] = '1'
        for spec in self._specs:
            cmd = command_line(spec)
            popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
            threading.Thread(target=_pump, args=(spec.name, popen.stdout, self._out),
                             daemon=True).start()
            self._running.append(_Running(spec, popen))
            self._log(f'started {spec.package}/{spec.executable} as {spec.name} '
                      f'(pid {popen.pid})')

    def request_stop(self, *_args) -> None:
        self._stop.set()

    def wait(self) -> int:
        '''Block until a stop is requested or a required node exits; then stop everything.'''
        exit_code = 0
        while not self._stop.is_set():
            for run in self._running:
                code = run.popen.poll()
                if code is not None and run.spec.required:
                    self._log(f'{run.spec.name} exited with code {code}: stopping the stack')
                    exit_code = code
                    self._stop.set()
                    break
            self._stop.wait(0.1)
        self.shutdown()
        return exit_code

    def shutdown(self) -> None:
        '''SIGINT to every node, then SIGTERM, then SIGKILL of its whole process group.'''
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            alive = [run for run in self._running if run.popen.poll() is None]
            if not alive:
                break
            for run in alive:
                try:
                    os.killpg(run.popen.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + SHUTDOWN_GRACE_S / 2
            for run in alive:
                try:
                    run.popen.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for run in self._running:
            # Reap grandchildren a node may have left in its group.
            try:
                os.killpg(run.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    @property
    def pids(self) -> list[int]:
        return [run.popen.pid for run in self._running]

    def _log(self, text: str) -> None:
        self._out.write(f'[am-launch] {text}\n')
        self._out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        stack, args = parse_args(list(sys.argv[1:] if argv is None else argv))
        specs = STACKS[stack](args)
        for spec in specs:
            command_line(spec)  # fail before starting anything
    except StackError as error:
        print(f'am-launch: {error}', file=sys.stderr)
        return 2
    runner = StackRunner(specs)
    signal.signal(signal.SIGINT, runner.request_stop)
    signal.signal(signal.SIGTERM, runner.request_stop)
    runner.start()
    return runner.wait()


if __name__ == '__main__':
    sys.exit(main())
