'''Simulated scenes (OGBench manipulation, MuJoCo) and their scripted play operator.

Pure Python (no rclpy): am_sim's ROS node, the offline episode generator and in-process
evaluation all use `make_scene`, so they render and step identically.
'''

from am_learning.envs.operator import (
    OPERATED_SCENES,
    OperatorConfig,
    PlayOperator,
    decode_puzzle_state,
    decode_state,
)
from am_learning.envs.scene import REACH_TOLERANCE_M, SCENES, Scene, make_scene

__all__ = [
    'decode_puzzle_state',
    'decode_state',
    'OPERATED_SCENES',
    'make_scene',
    'OperatorConfig',
    'PlayOperator',
    'REACH_TOLERANCE_M',
    'Scene',
    'SCENES',
]
