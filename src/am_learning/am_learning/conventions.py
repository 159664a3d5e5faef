'''Conventions shared by the robot side (am_sim, recorder, policy node) and the learner.

One place for the default topic names, the joint names of the simulated UR5e + Robotiq,
and the mapping between the normalised action the learner sees and the commands a robot
behind MoveIt Servo receives. Pure numpy: importable without ROS.

Action (5-D, each in [-1, 1]), per control step of `1 / control_rate_hz` seconds:
    [dx, dy, dz, dyaw, gripper]
    dx, dy, dz: end-effector displacement as a fraction of `max_step_m`
    dyaw:       end-effector yaw change as a fraction of `max_yaw_step_rad`
    gripper:    -1 fully open ... +1 fully closed (an absolute target, not a delta)
Twist command (geometry_msgs/TwistStamped to MoveIt Servo): the same displacement as a
velocity held for one control period. Gripper command (std_msgs/Float64MultiArray to a
forward position controller): closure in [0, 1].
'''

from dataclasses import asdict, dataclass

import numpy as np

YAW_INDEX = 3
'''Where the yaw step sits in the action.'''
GRIPPER_INDEX = 4
'''Where the gripper target sits in the action (> 0: towards closed).'''

# Default topics (every one is remappable in the nodes and configurable in the dataset).
CAMERA_TOPIC = '/camera/image_raw'
JOINT_STATES_TOPIC = '/joint_states'
TWIST_TOPIC = '/servo_node/delta_twist_cmds'
GRIPPER_TOPIC = '/gripper_controller/commands'
EE_POSE_TOPIC = '/ee_pose'
EPISODE_EVENTS_TOPIC = '/am/episode_events'
SIM_STATE_TOPIC = '/am_sim/state'
OGBENCH_STATE_LAYOUT = 'ogbench_state'
'''MultiArrayLayout label of SIM_STATE_TOPIC's arrays: OGBench's state vector (its layout in
am_learning.envs.operator). The dataset cache keeps the label; am-train leaves out the
entries that layout's default says to (cli_train.STATE_LAYOUT_IGNORE).'''
CLOCK_TOPIC = '/clock'

# The simulated UR5e's arm joints, then the gripper joint: its closure in [0, 1] (0 open,
# 1 closed; OGBench's proprio/gripper_opening has this meaning despite its name).
ARM_JOINTS = (
    'shoulder_pan_joint',
    'shoulder_lift_joint',
    'elbow_joint',
    'wrist_1_joint',
    'wrist_2_joint',
    'wrist_3_joint',
)
GRIPPER_JOINT = 'gripper_joint'
ACTION_DIM = 5


@dataclass(frozen=True)
class ActionScale:
    '''How a normalised action maps to physical motion; stored in every dataset manifest.'''

    control_rate_hz: float = 20.0
    '''Control steps per second.'''
    max_step_m: float = 0.05
    '''End-effector displacement of a full-scale (|a| = 1) translation step, metres.'''
    max_yaw_step_rad: float = 0.3
    '''End-effector yaw change of a full-scale rotation step, radians.'''

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    def to_dict(self) -> dict:
        return asdict(self)


def action_to_twist(action: np.ndarray, scale: ActionScale) -> tuple[np.ndarray, float, float]:
    '''Normalised action -> (linear velocity m/s (3,), yaw rate rad/s, gripper closure 0..1).'''
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    linear = a[:3] * scale.max_step_m / scale.period_s
    yaw_rate = float(a[YAW_INDEX] * scale.max_yaw_step_rad / scale.period_s)
    closure = float((a[GRIPPER_INDEX] + 1.0) / 2.0)
    return linear, yaw_rate, closure


def twist_to_action(
    linear: np.ndarray, yaw_rate: np.ndarray | float, closure: np.ndarray | float,
    scale: ActionScale,
) -> np.ndarray:
    '''Inverse of `action_to_twist`, vectorised over a leading axis; clipped to [-1, 1].

    linear: (..., 3) m/s; yaw_rate: (...) rad/s; closure: (...) in [0, 1]. Returns (..., 5).
    '''
    linear = np.asarray(linear, dtype=np.float64)
    step = linear * scale.period_s / scale.max_step_m
    yaw = np.asarray(yaw_rate, dtype=np.float64) * scale.period_s / scale.max_yaw_step_rad
    grip = 2.0 * np.asarray(closure, dtype=np.float64) - 1.0
    action = np.concatenate([step, yaw[..., None], grip[..., None]], axis=-1)
    return np.clip(action, -1.0, 1.0).astype(np.float32)


def displacement_to_action(
    delta_pos: np.ndarray, delta_yaw: np.ndarray, closure: np.ndarray, scale: ActionScale
) -> np.ndarray:
    '''Actions from end-effector motion, for bags without commands (vectorised).

    delta_pos: (..., 3) metres moved in one control step; delta_yaw: (...) radians,
    closure: (...) gripper closure in [0, 1] reached after the step.
    '''
    delta_yaw = (np.asarray(delta_yaw) + np.pi) % (2 * np.pi) - np.pi
    return twist_to_action(
        np.asarray(delta_pos) / scale.period_s, delta_yaw / scale.period_s, closure, scale
    )
