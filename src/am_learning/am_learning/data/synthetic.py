'''Synthetic episode bags with known contents, for tests and the dataset benchmark.

Written with rosbags exactly as a recording would be: step k's observation topics (camera,
joint states, end-effector pose, state) stamped t0 + k / rate, its commands (twist and
gripper) 1 ms later (the operator answers the observation), episode markers on
/am/episode_events. The commanded actions are drawn at random, the end-effector pose and the
gripper joint follow them exactly, and every camera frame encodes its step index in its
colour (red = k % 256, green = 255 - k % 256, blue = 40), so a reader can check which frame
landed where. Needs the workspace's am_dataset_recorder for the am_msgs types.
'''

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from am_learning.conventions import GRIPPER_INDEX, YAW_INDEX, action_to_twist
from am_learning.data.config import DatasetConfig

T0_NS = 1_700_000_000_000_000_000
COMMAND_DELAY_NS = 1_000_000
EVENT_TYPE = 'am_msgs/msg/EpisodeEvent'


@dataclass(frozen=True)
class EpisodeSpec:
    '''One episode of a synthetic bag.'''

    frames: int
    ending: str = 'stop'
    ''''stop' (kept), 'discard' (operator discarded it) or 'open' (no STOP: cut short).'''
    label: str = ''
    success: bool = True


@dataclass
class SyntheticEpisode:
    '''What a reader must find for one kept episode.'''

    episode_id: str
    first_step: int
    '''Global step index of the first frame (the frame colours count global steps).'''
    actions: np.ndarray
    '''(frames, 5) float32 commanded actions.'''
    proprio: np.ndarray
    '''(frames, 7) float32 joint positions seen at each step.'''
    states: np.ndarray | None = None
    ending: str = 'stop'


@dataclass
class SyntheticBag:
    path: Path
    episodes: list[SyntheticEpisode] = field(default_factory=list)
    '''Every episode written, in order (check `ending` for the ones a reader keeps).'''


def frame_colour(step: int) -> tuple[int, int, int]:
    '''RGB colour of the camera frame of global step `step`.'''
    return step % 256, 255 - step % 256, 40


def make_frame(step: int, width: int, height: int) -> np.ndarray:
    '''(height, width, 3) RGB frame of step `step`: its colour, plus a small moving square in
    the lower right quarter (so a contact sheet shows motion).'''
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = frame_colour(step)
    side = max(2, min(width, height) // 8)
    x = width // 2 + (step * 7) % max(1, width // 2 - side)
    y = height // 2 + (step * 3) % max(1, height // 2 - side)
    frame[y : y + side, x : x + side] = (255, 255, 255)
    return frame


def _typestore() -> object:
    try:
        from am_dataset_recorder.episode_writer import make_typestore
    except ImportError as err:  # pragma: no cover - outside the workspace
        raise ImportError(
            'synthetic bags need the workspace package am_dataset_recorder for the am_msgs '
            'types (source scripts/env.sh)'
        ) from err
    return make_typestore()


class _Serialiser:
    def __init__(self, store: object) -> None:
        self.store = store
        self.t = store.types

    def header(self, stamp_ns: int) -> object:
        return self.t['std_msgs/msg/Header'](
            stamp=self.t['builtin_interfaces/msg/Time'](
                sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
            frame_id='camera',
        )

    def ser(self, msg: object, msgtype: str) -> bytes:
        return bytes(self.store.serialize_cdr(msg, msgtype))


def _image_message(s: _Serialiser, rgb: np.ndarray, stamp: int, encoding: str,
                   compression: str | None) -> tuple[str, bytes]:
    if compression is not None:
        ext = {'jpeg': '.jpg', 'png': '.png'}[compression]
        ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        msg = s.t['sensor_msgs/msg/CompressedImage'](
            header=s.header(stamp), format=f'rgb8; {compression} compressed bgr8',
            data=buf.reshape(-1))
        return 'sensor_msgs/msg/CompressedImage', s.ser(msg, 'sensor_msgs/msg/CompressedImage')
    conversions = {'rgb8': None, 'bgr8': cv2.COLOR_RGB2BGR, 'mono8': cv2.COLOR_RGB2GRAY,
                   'rgba8': cv2.COLOR_RGB2RGBA, 'bgra8': cv2.COLOR_RGB2BGRA}
    pixels = rgb if conversions[encoding] is None else cv2.cvtColor(rgb, conversions[encoding])
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    height, width = pixels.shape[:2]
    msg = s.t['sensor_msgs/msg/Image'](
        header=s.header(stamp), height=height, width=width, encoding=encoding,
        is_bigendian=0, step=width * channels, data=pixels.reshape(-1))
    return 'sensor_msgs/msg/Image', s.ser(msg, 'sensor_msgs/msg/Image')


def write_synthetic_bag(
    path: Path,
    episodes: list[EpisodeSpec],
    *,
    config: DatasetConfig | None = None,
    image_width: int = 32,
    image_height: int = 24,
    encoding: str = 'rgb8',
    compression: str | None = None,
    storage: str = 'mcap',
    markers: bool = True,
    commands: bool = True,
    ee_pose: bool = True,
    state_dim: int = 0,
    gap_steps: int = 5,
    seed: int = 0,
    first_step: int = 0,
    texture: bool = False,
) -> SyntheticBag:
    '''Write one bag holding `episodes` one after another (separated by `gap_steps` steps
    of idle recording) and return what a reader should find in it.

    Topic names come from `config` (defaults: the conventions). compression: None for raw
    sensor_msgs/Image in `encoding`, or 'jpeg' / 'png' on the compressed topic. markers:
    write EpisodeEvent START/STOP/DISCARD. commands: write twist + gripper commands
    (otherwise actions must come from the end-effector motion). texture: blend a fixed
    camera-like texture into every frame (JPEGs then cost what real ones cost to decode;
    the colour no longer encodes the step exactly).'''
    config = config or DatasetConfig()
    scale = config.action_scale
    dt = config.period_ns
    rng = np.random.default_rng(seed)
    store = _typestore()
    s = _Serialiser(store)
    camera_topic = (config.compressed_camera_topic if compression else config.camera_topic)
    topics = {
        camera_topic: ('sensor_msgs/msg/CompressedImage' if compression
                       else 'sensor_msgs/msg/Image'),
        config.joint_states_topic: 'sensor_msgs/msg/JointState',
    }
    if commands:
        topics[config.twist_topic] = 'geometry_msgs/msg/TwistStamped'
        topics[config.gripper_topic] = 'std_msgs/msg/Float64MultiArray'
    if ee_pose:
        topics[config.ee_pose_topic] = 'geometry_msgs/msg/PoseStamped'
    if state_dim:
        topics[config.state_topic] = 'std_msgs/msg/Float32MultiArray'
    if markers:
        topics[config.events_topic] = EVENT_TYPE
    plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
    result = SyntheticBag(path=Path(path))

    # The whole recording as one sequence of steps; idle gaps have zero motion.
    plan: list[tuple[int | None, int]] = []  # (episode index or None, step)
    step = first_step
    for e, spec in enumerate(episodes):
        if e:
            plan.extend((None, step + i) for i in range(gap_steps))
            step += gap_steps
        plan.extend((e, step + i) for i in range(spec.frames))
        step += spec.frames
    total = len(plan)
    actions = rng.uniform(-1, 1, size=(total, 5)).astype(np.float32)
    actions[:, GRIPPER_INDEX] = np.where(rng.uniform(size=total) < 0.5, -1.0, 1.0)
    for i, (e, _) in enumerate(plan):
        if e is None:
            actions[i, :GRIPPER_INDEX] = 0.0
    pos = np.array([0.4, 0.0, 0.2]) + np.concatenate(
        [np.zeros((1, 3)), np.cumsum(actions[:, :3] * scale.max_step_m, axis=0)])
    yaw = 0.1 + np.concatenate([[0.0], np.cumsum(actions[:, YAW_INDEX] * scale.max_yaw_step_rad)])
    yaw = (yaw + np.pi) % (2 * np.pi) - np.pi
    closure_before = np.concatenate([[0.0], (actions[:, GRIPPER_INDEX] + 1) / 2])  # after step i-1
    joint_names = list(config.joint_names)
    pattern = None
    if texture:
        noise = rng.integers(0, 256, (image_height, image_width, 3), dtype=np.uint8)
        pattern = cv2.GaussianBlur(noise, (0, 0), 2.0) // 2

    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
        conns = {t: writer.add_connection(t, ty, typestore=store) for t, ty in topics.items()}

        def event(stamp: int, code: int, episode_id: str, spec: EpisodeSpec) -> None:
            msg = s.t[EVENT_TYPE](header=s.header(stamp), event=code, episode_id=episode_id,
                                  label=spec.label, success=spec.success)
            writer.write(conns[config.events_topic], stamp, s.ser(msg, EVENT_TYPE))

        starts: dict[int, int] = {}
        for i, (e, global_step) in enumerate(plan):
            t = T0_NS + i * dt
            if e is not None and e not in starts:
                starts[e] = i
                if markers:
                    event(t, 0, f'ep{e}', episodes[e])
            rgb = make_frame(global_step, image_width, image_height)
            if pattern is not None:
                rgb = rgb // 2 + pattern
            msgtype, raw = _image_message(s, rgb, t, encoding, compression)
            writer.write(conns[camera_topic], t, raw)
            arm = 0.1 * np.arange(6) + 0.01 * i
            opening = 1.0 - closure_before[i]
            gripper_pos = opening if config.gripper_position_means == 'opening' else 1 - opening
            joints = s.t['sensor_msgs/msg/JointState'](
                header=s.header(t), name=joint_names,
                position=np.concatenate([arm, [gripper_pos]])[: len(joint_names)],
                velocity=np.zeros(0), effort=np.zeros(0))
            writer.write(conns[config.joint_states_topic], t,
                         s.ser(joints, 'sensor_msgs/msg/JointState'))
            if ee_pose:
                geo = s.t
                pose = geo['geometry_msgs/msg/PoseStamped'](
                    header=s.header(t), pose=geo['geometry_msgs/msg/Pose'](
                        position=geo['geometry_msgs/msg/Point'](
                            x=pos[i, 0], y=pos[i, 1], z=pos[i, 2]),
                        orientation=_down_quaternion(s, float(yaw[i]))))
                writer.write(conns[config.ee_pose_topic], t,
                             s.ser(pose, 'geometry_msgs/msg/PoseStamped'))
            if state_dim:
                values = np.full(state_dim, float(i), np.float32)
                values[0] = global_step
                msg = s.t['std_msgs/msg/Float32MultiArray'](
                    layout=s.t['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0),
                    data=values)
                writer.write(conns[config.state_topic], t,
                             s.ser(msg, 'std_msgs/msg/Float32MultiArray'))
            if commands:
                tc = t + COMMAND_DELAY_NS
                linear, yaw_rate, closure = action_to_twist(actions[i], scale)
                v3 = s.t['geometry_msgs/msg/Vector3']
                twist = s.t['geometry_msgs/msg/TwistStamped'](
                    header=s.header(tc), twist=s.t['geometry_msgs/msg/Twist'](
                        linear=v3(x=linear[0], y=linear[1], z=linear[2]),
                        angular=v3(x=0.0, y=0.0, z=yaw_rate)))
                writer.write(conns[config.twist_topic], tc,
                             s.ser(twist, 'geometry_msgs/msg/TwistStamped'))
                grip = s.t['std_msgs/msg/Float64MultiArray'](
                    layout=s.t['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0),
                    data=np.array([closure]))
                writer.write(conns[config.gripper_topic], tc,
                             s.ser(grip, 'std_msgs/msg/Float64MultiArray'))
            last_of_episode = e is not None and (i + 1 == total or plan[i + 1][0] != e)
            if last_of_episode and markers and episodes[e].ending != 'open':
                code = 1 if episodes[e].ending == 'stop' else 2
                event(t + 2 * COMMAND_DELAY_NS, code, f'ep{e}', episodes[e])

    for e, spec in enumerate(episodes):
        i0 = starts[e]
        sl = slice(i0, i0 + spec.frames)
        arm = 0.1 * np.arange(6)[None] + 0.01 * np.arange(i0, i0 + spec.frames)[:, None]
        opening = 1.0 - closure_before[sl]
        gripper_pos = opening if config.gripper_position_means == 'opening' else 1 - opening
        proprio = np.concatenate([arm, gripper_pos[:, None]], axis=1)[:, : len(joint_names)]
        states = None
        if state_dim:
            states = np.repeat(np.arange(i0, i0 + spec.frames, dtype=np.float32)[:, None],
                               state_dim, axis=1)
            states[:, 0] = [plan[i][1] for i in range(sl.start, sl.stop)]
        result.episodes.append(SyntheticEpisode(
            episode_id=f'ep{e}', first_step=plan[i0][1], actions=actions[sl].copy(),
            proprio=proprio.astype(np.float32), states=states, ending=spec.ending))
    return result


def _down_quaternion(s: _Serialiser, yaw: float) -> object:
    '''Quaternion of a gripper pointing down with the given yaw: Rz(yaw) @ Rx(pi).'''
    half = yaw / 2
    # Rz(yaw) = (cos h, 0, 0, sin h); Rx(pi) = (0, 1, 0, 0); product (w, x, y, z):
    return s.t['geometry_msgs/msg/Quaternion'](
        x=np.cos(half), y=np.sin(half), z=0.0, w=0.0)
