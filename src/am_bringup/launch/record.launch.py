'''Record teleop episodes: `ros2 launch am_bringup record.launch.py`.

robot:=sim starts am_sim and, with teleop:=scripted (the default there), the scripted
teleoperator that records `episodes` episodes of `operator` (play or reach) and then ends
the launch. robot:=gazebo|real includes robot_launch/servo_launch and records what your
teleop device commands; start and stop episodes with the recorder's services
(~/start_episode, ~/stop_episode).
The bags hold every topic the trainer reads (config/recorder.yaml).
'''

from launch import LaunchDescription

from am_bringup.launch_actions import stack_description
from am_bringup.stack import record_stack

ARGUMENTS = (
    ('robot', 'sim', 'sim | gazebo | real'),
    ('teleop', '', 'scripted (sim only) | none; default scripted in sim, none otherwise'),
    ('operator', 'play', 'what the scripted teleoperator does: play (pick and place) | '
     'reach (the gripper to random points of the workspace)'),
    ('episodes', '10', 'episodes the scripted teleoperator records'),
    ('steps', '200', 'control steps per scripted episode'),
    ('output_dir', '', 'recorder output folder (default from config/recorder.yaml)'),
    ('scene', 'cube-single', 'am_sim scene'),
    ('use_sim_time', 'false', 'use /clock'),
    ('real_time_factor', '1.0', 'am_sim speed; > 1 needs use_sim_time:=true'),
    ('seed', '-1', 'seed of the scripted operator; -1 draws one'),
)


def _default_teleop(args: dict) -> list:
    if not args['teleop']:
        args.pop('teleop')  # the stack picks: scripted in sim, none otherwise
    return []


def generate_launch_description() -> LaunchDescription:
    # The scripted teleoperator ends the recording session: its exit ends the launch.
    return stack_description(ARGUMENTS, record_stack, extra=_default_teleop,
                             shutdown_on_exit=True)
