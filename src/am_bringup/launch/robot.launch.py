'''Start the am stack on a robot: `ros2 launch am_bringup robot.launch.py`.

Arguments (all optional):
  robot:=sim|gazebo|real     sim starts am_sim; gazebo/real include robot_launch and
                             servo_launch (your robot bringup and MoveIt Servo)
  commander:=servo|moveit_py how the policy moves the arm
  checkpoint:=PATH           trained checkpoint folder (am-train's run/checkpoint)
  record:=true|false         also run the recorder
  use_sim_time:=true|false   follow /clock
  robot_launch:=FILE         gazebo/real: launch file of the robot (drivers, controllers)
  servo_launch:=FILE         gazebo/real: launch file of MoveIt Servo (or move_group)
  rviz:=true|false           rviz2 with the camera, the goal image and goal picking tools

The node list and parameters come from am_bringup.stack, shared with `am-launch`.
'''

from launch import LaunchDescription
from launch_ros.actions import Node

from am_bringup.launch_actions import stack_description
from am_bringup.stack import config_dir, parse_bool, robot_stack

ARGUMENTS = (
    ('robot', 'sim', 'sim | gazebo | real'),
    ('commander', 'servo', 'servo (MoveIt Servo twists) | moveit_py (planned pose goals)'),
    ('checkpoint', '', 'trained checkpoint folder'),
    ('record', 'false', 'also record episodes with the recorder'),
    ('use_sim_time', 'false', 'use /clock (Gazebo, or am_sim faster than real time)'),
    ('scene', 'cube-single', 'am_sim scene: cube-single, cube-double, scene, puzzle-3x3'),
    ('output_dir', '', 'recorder output folder (default from config/recorder.yaml)'),
    ('real_time_factor', '1.0', 'am_sim speed; > 1 needs use_sim_time:=true'),
    ('rviz', 'false', 'start rviz2 with config/am.rviz'),
)


def _rviz(args: dict) -> list:
    if not parse_bool('rviz', args.pop('rviz')):
        return []
    return [Node(package='rviz2', executable='rviz2', output='screen',
                 arguments=['-d', str(config_dir() / 'am.rviz')])]


def generate_launch_description() -> LaunchDescription:
    return stack_description(ARGUMENTS, robot_stack, extra=_rviz)
