'''The node list of every way to start the stack: one source of truth.

`launch/robot.launch.py` and `launch/record.launch.py` turn these specs into launch_ros
Node actions; `am-launch` (am_bringup.runner) starts the same executables with the same
parameter files as plain processes, for machines without the ros2 CLI. Neither imports
rclpy here: this module is pure data.
'''

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROBOTS = ('sim', 'gazebo', 'real')
COMMANDERS = ('servo', 'moveit_py')
TELEOPS = ('scripted', 'none')
SCRIPTED_OPERATORS = ('play', 'reach')
'''What the scripted teleoperator can do (am_learning.envs.OPERATORS; not imported here:
it loads the simulator).'''


class StackError(ValueError):
    '''A launch argument that has no meaning; the message says which and what is allowed.'''


@dataclass(frozen=True)
class NodeSpec:
    '''One node to start: an installed executable, its parameter file and overrides.'''

    package: str
    executable: str
    name: str
    params_file: str | None = None
    '''File name under am_bringup's config folder, or None.'''
    parameters: Mapping[str, object] = field(default_factory=dict)
    '''Overrides applied after the parameter file (launch arguments end up here).'''
    remappings: tuple[tuple[str, str], ...] = ()
    required: bool = True
    '''The whole stack stops when a required node exits.'''


def config_dir() -> Path:
    '''am_bringup's installed config folder, or the source tree's when not installed.'''
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory('am_bringup')) / 'config'
    except (ImportError, LookupError):
        return Path(__file__).resolve().parents[1] / 'config'


def parse_bool(name: str, value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ('true', '1', 'yes', 'on'):
        return True
    if lowered in ('false', '0', 'no', 'off', ''):
        return False
    raise StackError(f'{name}:={value} is not a boolean (use true or false)')


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise StackError(f'{name}:={value} is not one of {", ".join(allowed)}')
    return value


def _sim_time(use_sim_time: bool) -> dict:
    return {'use_sim_time': True} if use_sim_time else {}


def needs_sim_time(args: Mapping[str, str]) -> bool:
    '''use_sim_time as asked, or forced on when am_sim does not run in real time (it then
    publishes /clock and stamps everything with simulation time).'''
    asked = parse_bool('use_sim_time', args.get('use_sim_time', 'false'))
    factor = _float('real_time_factor', args.get('real_time_factor', '1.0'))
    return asked or (args.get('robot', 'sim') == 'sim' and factor != 1.0)


def robot_nodes(robot: str = 'sim', scene: str = 'cube-single',
                real_time_factor: float = 1.0) -> list[NodeSpec]:
    '''The robot side: am_sim for `sim`; nothing for gazebo/real (the user's bringup and
    MoveIt Servo provide the same topics, included by the launch file).'''
    _choice('robot', robot, ROBOTS)
    if robot != 'sim':
        return []
    # The simulator is the clock: it never follows /clock itself (its own step timer would
    # then wait for the time it is supposed to publish).
    params = {'scene': scene, 'real_time_factor': real_time_factor}
    return [NodeSpec('am_sim', 'sim_robot', 'sim_robot', 'sim_robot.yaml', params)]


def recorder_node(output_dir: str = '', use_sim_time: bool = False) -> NodeSpec:
    params = {'output_dir': output_dir} if output_dir else {}
    return NodeSpec('am_dataset_recorder', 'recorder', 'recorder', 'recorder.yaml',
                    {**params, **_sim_time(use_sim_time)})


def robot_stack(args: Mapping[str, str]) -> list[NodeSpec]:
    '''`robot.launch.py`: robot (+ recorder) + policy node.

    Arguments: robot (sim|gazebo|real), commander (servo|moveit_py), checkpoint,
    record (true|false), use_sim_time, scene, output_dir.
    '''
    known = {'robot', 'commander', 'checkpoint', 'record', 'use_sim_time', 'scene',
             'output_dir', 'real_time_factor'}
    _reject_unknown(args, known)
    robot = _choice('robot', args.get('robot', 'sim'), ROBOTS)
    commander = _choice('commander', args.get('commander', 'servo'), COMMANDERS)
    use_sim_time = needs_sim_time(args)
    record = parse_bool('record', args.get('record', 'false'))
    checkpoint = args.get('checkpoint', '')
    nodes = robot_nodes(robot, args.get('scene', 'cube-single'),
                        _float('real_time_factor', args.get('real_time_factor', '1.0')))
    if record:
        nodes.append(recorder_node(args.get('output_dir', ''), use_sim_time))
    policy_params: dict = {'commander': commander, **_sim_time(use_sim_time)}
    if robot == 'sim':
        policy_params['frame_id'] = 'world'  # am_sim's frame
    if checkpoint:
        policy_params['checkpoint'] = checkpoint
    nodes.append(NodeSpec('am_policy_node', 'policy', 'policy', 'policy.yaml', policy_params))
    return nodes


def record_stack(args: Mapping[str, str]) -> list[NodeSpec]:
    '''`record.launch.py`: robot + recorder (+ the scripted teleoperator in sim).

    Arguments: robot, teleop (scripted|none), operator (play|reach, scripted only),
    episodes, steps, output_dir, scene, use_sim_time, real_time_factor, seed.
    '''
    known = {'robot', 'teleop', 'operator', 'episodes', 'steps', 'output_dir', 'scene',
             'use_sim_time', 'real_time_factor', 'seed'}
    _reject_unknown(args, known)
    robot = _choice('robot', args.get('robot', 'sim'), ROBOTS)
    teleop = _choice('teleop', args.get('teleop', 'scripted' if robot == 'sim' else 'none'),
                     TELEOPS)
    if teleop == 'scripted' and robot != 'sim':
        raise StackError('teleop:=scripted drives the simulated robot only: use robot:=sim')
    use_sim_time = needs_sim_time(args)
    nodes = robot_nodes(robot, args.get('scene', 'cube-single'),
                        _float('real_time_factor', args.get('real_time_factor', '1.0')))
    nodes.append(recorder_node(args.get('output_dir', ''), use_sim_time))
    if teleop == 'scripted':
        params: dict = {'scene': args.get('scene', 'cube-single'), **_sim_time(use_sim_time)}
        for key in ('episodes', 'steps', 'seed'):
            if key in args:
                params[key] = _int(key, args[key])
        if 'operator' in args:  # the episodes are labelled with what the operator did
            params['operator'] = params['label'] = _choice(
                'operator', args['operator'], SCRIPTED_OPERATORS)
        # The teleoperator ends the recording session: when it is done, the stack stops.
        nodes.append(NodeSpec('am_sim', 'scripted_teleop', 'scripted_teleop',
                              'scripted_teleop.yaml', params))
    return nodes


STACKS = {'robot': robot_stack, 'record': record_stack}


def _reject_unknown(args: Mapping[str, str], known: set[str]) -> None:
    unknown = sorted(set(args) - known)
    if unknown:
        raise StackError(f'unknown argument(s) {", ".join(unknown)}; '
                         f'known: {", ".join(sorted(known))}')


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise StackError(f'{name}:={value} is not an integer') from None


def _float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise StackError(f'{name}:={value} is not a number') from None
