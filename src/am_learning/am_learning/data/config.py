'''How bags become a dataset: the settings that decide every frame of a dataset cache.

Two caches built from the same bags with equal configs hold the same arrays, so the config
is part of the cache's identity: changing any field makes the cache stale.
'''

from dataclasses import asdict, dataclass, field
from typing import Literal

from am_learning.conventions import (
    ARM_JOINTS,
    CAMERA_TOPIC,
    EE_POSE_TOPIC,
    EPISODE_EVENTS_TOPIC,
    GRIPPER_JOINT,
    GRIPPER_TOPIC,
    JOINT_STATES_TOPIC,
    SIM_STATE_TOPIC,
    TWIST_TOPIC,
    ActionScale,
)


class DatasetError(RuntimeError):
    '''A dataset cannot be built or loaded; the message says why and what to change.'''


@dataclass(frozen=True)
class DatasetConfig:
    '''Settings of a dataset built from bags (stored in the cache's manifest).'''

    image_size: int = 64
    '''Square training resolution in pixels; camera frames are resized with cv2.INTER_AREA.'''
    control_rate_hz: float = 20.0
    '''Frames per second of the dataset: one frame per control tick.'''
    action_scale: ActionScale | None = None
    '''Physical size of a full-scale action; None: ActionScale's defaults at control_rate_hz.'''
    camera_topic: str = CAMERA_TOPIC
    '''sensor_msgs/Image topic (rgb8, bgr8, mono8, rgba8 or bgra8).'''
    compressed_camera_topic: str | None = CAMERA_TOPIC + '/compressed'
    '''sensor_msgs/CompressedImage topic (jpeg/png), used when camera_topic is not in a bag.'''
    joint_states_topic: str = JOINT_STATES_TOPIC
    '''sensor_msgs/JointState topic; joints may be split over several messages.'''
    joint_names: tuple[str, ...] = (*ARM_JOINTS, GRIPPER_JOINT)
    '''Joint positions that form the proprioception vector, in this order (may be empty).'''
    gripper_joint: str | None = GRIPPER_JOINT
    '''Joint whose position tells the gripper state (for actions of bags without gripper
    commands); None: unknown, the gripper action is then "open".'''
    gripper_position_means: Literal['opening', 'closure'] = 'closure'
    '''What the gripper joint's position in [0, 1] measures. am_sim publishes OGBench's
    `gripper_opening`, which is in fact a closure (0 open, 1 closed), as is a Robotiq
    driver joint; 'opening' for grippers that report 1 = open.'''
    twist_topic: str = TWIST_TOPIC
    '''geometry_msgs/TwistStamped arm commands (MoveIt Servo input).'''
    gripper_topic: str = GRIPPER_TOPIC
    '''std_msgs/Float64MultiArray gripper commands: [closure in 0..1].'''
    ee_pose_topic: str = EE_POSE_TOPIC
    '''geometry_msgs/PoseStamped end-effector pose: actions of bags without arm commands.'''
    events_topic: str = EPISODE_EVENTS_TOPIC
    '''am_msgs/EpisodeEvent markers: split a bag into episodes when present.'''
    state_topic: str | None = SIM_STATE_TOPIC
    '''std_msgs/Float32MultiArray low-dimensional state; None: never read one.'''
    use_images: bool = True
    '''Read camera frames (episodes without a camera topic are skipped).'''
    require_state: bool = False
    '''Skip episodes without the state topic. Otherwise states are kept only when every
    usable episode has them.'''
    stale_command_timeout_s: float = 0.1
    '''A twist command older than this is no longer in force (MoveIt Servo's
    incoming_command_timeout): the arm is commanded to stand still.'''
    time_source: Literal['bag', 'header'] = 'bag'
    '''Timestamps used for alignment: the bag's receive time (one clock for every topic), or
    header stamps where messages have them (bag time for those that do not).'''
    min_episode_frames: int = 2
    '''Episodes shorter than this are skipped with a warning.'''
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    '''Free-form notes copied into the manifest; not part of the cache's identity.'''

    def __post_init__(self) -> None:
        if self.action_scale is None:
            object.__setattr__(
                self, 'action_scale', ActionScale(control_rate_hz=float(self.control_rate_hz))
            )
        elif abs(self.action_scale.control_rate_hz - self.control_rate_hz) > 1e-9:
            raise ValueError(
                f'action_scale.control_rate_hz ({self.action_scale.control_rate_hz}) differs '
                f'from control_rate_hz ({self.control_rate_hz})'
            )
        object.__setattr__(self, 'joint_names', tuple(self.joint_names))
        if not 8 <= self.image_size <= 1024:
            raise ValueError(f'image_size must be in [8, 1024], got {self.image_size}')
        if not 0 < self.control_rate_hz <= 1000:
            raise ValueError(f'control_rate_hz must be in (0, 1000], got {self.control_rate_hz}')
        if self.stale_command_timeout_s <= 0:
            raise ValueError('stale_command_timeout_s must be positive')
        if self.time_source not in ('bag', 'header'):
            raise ValueError(f"time_source must be 'bag' or 'header', got {self.time_source!r}")
        if self.gripper_position_means not in ('opening', 'closure'):
            raise ValueError("gripper_position_means must be 'opening' or 'closure'")
        if self.min_episode_frames < 1:
            raise ValueError('min_episode_frames must be at least 1')
        if len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f'joint_names has duplicates: {self.joint_names}')
        if not self.use_images and self.state_topic is None:
            raise ValueError('a dataset needs images or a state topic (or both)')

    @property
    def period_ns(self) -> int:
        '''Control period in integer nanoseconds (the tick grid is exact in this unit).'''
        return round(1e9 / self.control_rate_hz)

    def to_dict(self) -> dict:
        '''JSON-serialisable form, as stored in the manifest.'''
        out = asdict(self)
        out['joint_names'] = list(self.joint_names)
        return out

    def identity(self) -> dict:
        '''The fields that decide the cache's contents (`extra` left out).'''
        out = self.to_dict()
        out.pop('extra')
        return out

    @classmethod
    def from_dict(cls, data: dict) -> 'DatasetConfig':
        '''Inverse of `to_dict`; unknown keys are an error (they would be silently lost).'''
        data = dict(data)
        known = set(cls.__dataclass_fields__)
        if unknown := set(data) - known:
            raise ValueError(f'unknown DatasetConfig fields: {sorted(unknown)}')
        if isinstance(data.get('action_scale'), dict):
            data['action_scale'] = ActionScale(**data['action_scale'])
        if 'joint_names' in data:
            data['joint_names'] = tuple(data['joint_names'])
        return cls(**data)
