'''Simulated scenes (OGBench manipulation, MuJoCo) and their scripted operators.

Pure Python (no rclpy): am_sim's ROS node, the offline episode generator and in-process
evaluation all use `make_scene`, so they render and step identically.
'''

from am_learning.envs.operator import (
    JOINT_VELOCITY_DIMS,
    OPERATED_SCENES,
    OPERATORS,
    OperatorConfig,
    PlayOperator,
    ReachOperator,
    ReachOperatorConfig,
    decode_puzzle_state,
    decode_state,
    make_operator,
)
from am_learning.envs.scene import REACH_TOLERANCE_M, SCENES, Scene, make_scene

__all__ = [
    'decode_puzzle_state',
    'decode_state',
    'JOINT_VELOCITY_DIMS',
    'OPERATED_SCENES',
    'make_operator',
    'make_scene',
    'OPERATORS',
    'OperatorConfig',
    'PlayOperator',
    'ReachOperator',
    'ReachOperatorConfig',
    'REACH_TOLERANCE_M',
    'Scene',
    'SCENES',
]
