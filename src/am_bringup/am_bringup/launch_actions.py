'''Turn am_bringup.stack's node specs into launch actions (used by launch/*.launch.py only,
so `launch` and `launch_ros` are imported only where they exist).'''

from collections.abc import Callable, Mapping, Sequence

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    IncludeLaunchDescription,
    OpaqueFunction,
)
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from am_bringup.stack import NodeSpec, config_dir

# Launch arguments every stack takes besides its own: the user's robot bringup.
INCLUDE_ARGUMENTS = (
    ('robot_launch', '', 'gazebo/real: your robot bringup launch file'),
    ('servo_launch', '', 'gazebo/real: your MoveIt Servo launch file'),
)


def node_action(spec: NodeSpec, shutdown_on_exit: bool = False) -> Node:
    '''A launch_ros Node with the spec's parameter file, overrides and remappings.'''
    parameters = [str(config_dir() / spec.params_file)] if spec.params_file else []
    on_exit = ([EmitEvent(event=Shutdown(reason=f'{spec.name} exited'))]
               if shutdown_on_exit and spec.required else None)
    return Node(package=spec.package, executable=spec.executable, name=spec.name,
                parameters=parameters + [dict(spec.parameters)],
                remappings=list(spec.remappings), output='screen', on_exit=on_exit)


def stack_description(
    arguments: Sequence[tuple[str, str, str]],
    stack: Callable[[Mapping[str, str]], list[NodeSpec]],
    extra: Callable[[dict], list] | None = None,
    shutdown_on_exit: bool = False,
) -> LaunchDescription:
    '''Declare `arguments` + the include arguments; at launch time include the user's robot
    and MoveIt Servo launch files (robot other than sim) and start `stack(args)`.

    `extra(args)` may pop its own arguments and return more actions (e.g. rviz).
    '''
    declared = list(arguments) + list(INCLUDE_ARGUMENTS)

    def actions(context) -> list:
        args = {name: LaunchConfiguration(name).perform(context) for name, _, _ in declared}
        includes = [args.pop(name) for name, _, _ in INCLUDE_ARGUMENTS]
        out = extra(args) if extra else []
        if args.get('robot', 'sim') != 'sim':
            out += [IncludeLaunchDescription(PythonLaunchDescriptionSource(path))
                    for path in includes if path]
        out += [node_action(spec, shutdown_on_exit) for spec in stack(args)]
        return out

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, default, text in declared] + [OpaqueFunction(function=actions)])
