'''Record teleop episodes: `ros2 launch am_bringup record.launch.py`.

robot:=sim starts am_sim and, with teleop:=scripted (the default there), the scripted
teleoperator that records `episodes` episodes and then ends the launch. robot:=gazebo|real
includes robot_launch/servo_launch and records what your teleop device commands; start and
stop episodes with the recorder's services (~/start_episode, ~/stop_episode).
The bags hold every topic the trainer reads (config/recorder.yaml).
'''

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

from am_bringup.stack import config_dir, record_stack

ARGUMENTS = (
    ('robot', 'sim', 'sim | gazebo | real'),
    ('teleop', '', 'scripted (sim only) | none; default scripted in sim, none otherwise'),
    ('episodes', '10', 'episodes the scripted teleoperator records'),
    ('steps', '200', 'control steps per scripted episode'),
    ('output_dir', '', 'recorder output folder (default from config/recorder.yaml)'),
    ('scene', 'cube-single', 'am_sim scene'),
    ('use_sim_time', 'false', 'use /clock'),
    ('real_time_factor', '1.0', 'am_sim speed; > 1 needs use_sim_time:=true'),
    ('robot_launch', '', 'gazebo/real: your robot bringup launch file'),
    ('servo_launch', '', 'gazebo/real: your MoveIt Servo launch file'),
)


def _actions(context):
    args = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    includes = [args.pop('robot_launch'), args.pop('servo_launch')]
    if not args['teleop']:
        args.pop('teleop')
    actions = []
    if args['robot'] != 'sim':
        for path in includes:
            if path:
                actions.append(IncludeLaunchDescription(PythonLaunchDescriptionSource(path)))
    for spec in record_stack(args):
        parameters = [str(config_dir() / spec.params_file)] if spec.params_file else []
        on_exit = [EmitEvent(event=Shutdown(reason=f'{spec.name} finished'))]
        actions.append(Node(
            package=spec.package, executable=spec.executable, name=spec.name,
            parameters=parameters + [dict(spec.parameters)],
            remappings=list(spec.remappings), output='screen',
            on_exit=on_exit if spec.required else None,
        ))
    return actions


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=_actions)])
