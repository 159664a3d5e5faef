'''The policy node's parameters: one frozen dataclass, same names as the ROS parameters.

Every field carries its description (it becomes the ParameterDescriptor's text) and
whether it may change while the node runs. `PolicyNodeConfig.validate` is what the node's
on-set-parameters callback calls: a candidate config that fails it is rejected and the
old value stays.
'''

from dataclasses import dataclass, field, fields, replace
import math
from typing import Any

from am_learning.conventions import (
    ARM_JOINTS,
    CAMERA_TOPIC,
    EE_POSE_TOPIC,
    GRIPPER_JOINT,
    GRIPPER_TOPIC,
    JOINT_STATES_TOPIC,
    TWIST_TOPIC,
)
from am_policy_node.safety import SafetyLimits

COMMANDERS = ('servo', 'moveit_py')
TRIGGERS = ('image', 'timer')


def _p(default: Any, description: str, *, read_only: bool = False) -> Any:
    '''A config field whose metadata feeds the ROS parameter descriptor.'''
    factory = (lambda: list(default)) if isinstance(default, list | tuple) else None
    meta = {'description': description, 'read_only': read_only}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class PolicyNodeConfig:
    '''Everything the policy node reads from its parameters.'''

    # --- model -------------------------------------------------------------------------------
    checkpoint: str = _p('', 'Checkpoint folder or file of a trained goal-reaching policy '
                         '(am_learning). Required.', read_only=True)
    device: str = _p('cpu', 'Torch device the policy runs on.', read_only=True)
    cem_samples: int = _p(0, 'CEM samples per iteration; 0 keeps the checkpoint default.',
                          read_only=True)
    cem_iterations: int = _p(0, 'CEM iterations; 0 keeps the checkpoint default.',
                             read_only=True)
    use_actor: bool = _p(True, 'With a checkpoint that has an actor head: start CEM at the '
                         "actor's action; false acts as if the checkpoint had no actor.",
                         read_only=True)
    seed: int = _p(0, "Seed of the policy's random generator (CEM sampling).", read_only=True)
    torch_threads: int = _p(1, 'torch intra-op threads for acting. 1 is fastest for one '
                            'observation (measured on 2 busy cores: p99 0.8 ms with 1 thread, '
                            '112 ms with 2, from threads spinning against other processes).',
                            read_only=True)
    # --- timing ------------------------------------------------------------------------------
    control_rate_hz: float = _p(20.0, 'Control steps per second (the rate the model was '
                                'trained at).', read_only=True)
    trigger: str = _p('image', 'When a decision is taken: "image" = as soon as a new camera '
                      'image arrives (at most control_rate_hz), "timer" = on the control timer '
                      'with the newest image.', read_only=True)
    status_rate_hz: float = _p(5.0, 'Rate of ~/status messages.', read_only=True)
    # --- inputs ------------------------------------------------------------------------------
    camera_topic: str = _p(CAMERA_TOPIC, 'Camera image topic (sensor-data QoS).',
                           read_only=True)
    camera_compressed: bool = _p(False, 'Subscribe to <camera_topic>/compressed '
                                 '(sensor_msgs/CompressedImage) instead of raw images.',
                                 read_only=True)
    joint_states_topic: str = _p(JOINT_STATES_TOPIC, 'sensor_msgs/JointState topic.',
                                 read_only=True)
    joint_names: list[str] = _p(list(ARM_JOINTS) + [GRIPPER_JOINT], 'Joints whose positions '
                                "form the proprioception, in the model's order.",
                                read_only=True)
    ee_pose_topic: str = _p(EE_POSE_TOPIC, 'geometry_msgs/PoseStamped of the end effector, '
                            'used for the workspace box.', read_only=True)
    max_image_age_s: float = _p(0.15, 'A camera image older than this stops the arm '
                                '(zero twist).')
    max_joint_state_age_s: float = _p(0.5, 'Joint states older than this stop the arm.')
    max_ee_pose_age_s: float = _p(0.5, 'End-effector pose older than this counts as unknown.')
    require_ee_pose: bool = _p(True, 'Stop the arm when the end-effector pose is unknown '
                               '(the workspace box cannot be enforced without it).')
    # --- outputs -----------------------------------------------------------------------------
    commander: str = _p('servo', 'Arm commander: "servo" (TwistStamped to MoveIt Servo) or '
                        '"moveit_py" (a pose goal per step planned and executed with MoveItPy).',
                        read_only=True)
    twist_topic: str = _p(TWIST_TOPIC, "MoveIt Servo's twist command topic.", read_only=True)
    frame_id: str = _p('base_link', 'Frame of the twist commands and of the workspace box.')
    gripper_topic: str = _p(GRIPPER_TOPIC, 'std_msgs/Float64MultiArray gripper command topic '
                            '(forward position controller); empty disables it.',
                            read_only=True)
    gripper_action: str = _p('', 'control_msgs/action/GripperCommand action name; empty '
                             'disables it (control_msgs must be installed).', read_only=True)
    gripper_max_position: float = _p(0.8, 'GripperCommand position of a fully closed gripper.')
    gripper_max_effort: float = _p(50.0, 'GripperCommand max effort.')
    moveit_group: str = _p('ur_manipulator', 'moveit_py: planning group.', read_only=True)
    moveit_ee_link: str = _p('tool0', 'moveit_py: link the pose goals are for.',
                             read_only=True)
    moveit_node_name: str = _p('am_policy_moveit_py', "moveit_py: name of MoveItPy's node.",
                               read_only=True)
    # --- safety ------------------------------------------------------------------------------
    workspace_min: list[float] = _p([0.2, -0.4, 0.01], 'Lower corner (x, y, z) of the box '
                                    'the end effector must stay in, metres (default: '
                                    "OGBench's UR5e workspace with a margin).")
    workspace_max: list[float] = _p([0.65, 0.4, 0.4], 'Upper corner of the box, metres.')
    max_linear_speed: float = _p(1.0, 'Cap on the end-effector speed, m/s (1.0 = the full '
                                 'action scale at 20 Hz; set lower on a real arm).')
    max_yaw_rate: float = _p(6.0, 'Cap on the end-effector yaw rate, rad/s.')
    # --- goal ending -------------------------------------------------------------------------
    reach_threshold: float = _p(0.9, 'Q at or above this for reach_steps steps = reached.')
    reach_steps: int = _p(3, 'Consecutive steps above reach_threshold that end a goal.')
    q_floor: float = _p(0.02, 'Q below this for q_floor_steps steps = give up.')
    q_floor_steps: int = _p(40, 'Consecutive steps below q_floor that end a goal.')
    goal_timeout_s: float = _p(30.0, 'Seconds a goal may run (an action goal may ask for '
                               'another timeout).')
    # --- goal picking from rviz --------------------------------------------------------------
    goal_frames_bag: str = _p('', 'Bag (folder) of recorded frames for picking goals with '
                              "rviz's clicked point / goal pose; empty disables picking.",
                              read_only=True)
    goal_frames_dataset: str = _p('', 'Dataset cache with end-effector positions for picking '
                                  'goals (used instead of goal_frames_bag when set).',
                                  read_only=True)
    pick_yaw_weight: float = _p(0.05, 'Metres one radian of yaw difference counts as when a '
                                'goal pose picks the nearest frame.')

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def limits(self) -> SafetyLimits:
        return SafetyLimits(
            workspace_min=tuple(float(v) for v in self.workspace_min),
            workspace_max=tuple(float(v) for v in self.workspace_max),
            max_linear_speed=float(self.max_linear_speed),
            max_yaw_rate=float(self.max_yaw_rate),
        )

    def validate(self) -> None:
        '''Raise ValueError naming the first unusable value.'''
        positive = ('control_rate_hz', 'status_rate_hz', 'max_image_age_s',
                    'max_joint_state_age_s', 'max_ee_pose_age_s', 'goal_timeout_s',
                    'gripper_max_position', 'gripper_max_effort')
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be a finite number > 0, got {value!r}')
        if self.torch_threads < 1:
            raise ValueError(f'torch_threads must be >= 1, got {self.torch_threads}')
        for name in ('cem_samples', 'cem_iterations'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name} must be >= 0 (0 = checkpoint default)')
        if self.commander not in COMMANDERS:
            raise ValueError(f'commander must be one of {COMMANDERS}, got {self.commander!r}')
        if self.trigger not in TRIGGERS:
            raise ValueError(f'trigger must be one of {TRIGGERS}, got {self.trigger!r}')
        if not self.camera_topic:
            raise ValueError('camera_topic must not be empty')
        if len(set(self.joint_names)) != len(self.joint_names) or any(
                not n for n in self.joint_names):
            raise ValueError(f'joint_names must be distinct non-empty names: {self.joint_names}')
        if not self.frame_id:
            raise ValueError('frame_id must not be empty')
        self.limits.validate()
        if not 0.0 < self.reach_threshold <= 1.0:
            raise ValueError(f'reach_threshold must be in (0, 1], got {self.reach_threshold}')
        if not 0.0 <= self.q_floor < self.reach_threshold:
            raise ValueError(f'q_floor must be in [0, reach_threshold={self.reach_threshold}), '
                             f'got {self.q_floor}')
        for name in ('reach_steps', 'q_floor_steps'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        if not (math.isfinite(self.pick_yaw_weight) and self.pick_yaw_weight >= 0):
            raise ValueError(f'pick_yaw_weight must be >= 0, got {self.pick_yaw_weight}')

    def with_values(self, **values: Any) -> 'PolicyNodeConfig':
        '''A copy with some fields replaced (list parameters arrive as sequences).'''
        clean = {k: (list(v) if isinstance(v, list | tuple) else v) for k, v in values.items()}
        return replace(self, **clean)


def parameter_specs() -> list[tuple[str, Any, str, bool]]:
    '''(name, default, description, read_only) of every parameter, in declaration order.'''
    default = PolicyNodeConfig()
    return [(f.name, getattr(default, f.name), f.metadata['description'],
             f.metadata['read_only']) for f in fields(PolicyNodeConfig)]
