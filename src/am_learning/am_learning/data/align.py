'''From a bag's time series to dataset frames at the control rate (pure numpy).

Episodes: the bag's START..STOP marker pairs (DISCARDed ones and unfinished ones dropped),
or the whole bag when it has no markers.

Frames: ticks t_k = t_0 + k / control_rate_hz, from the first instant every needed stream
has a sample (and the episode has started) to the last camera frame (or state) before the
episode's end. At each tick:
- observation: the newest image, joint positions and state at or before t_k;
- action: the arm command in force during [t_k, t_k + dt): the mean of the twists stamped in
  that window; when there are none, the last twist while it is younger than the stale
  timeout (MoveIt Servo keeps executing it), else zero motion. Gripper: the last gripper
  command before t_k + dt (a position target stays in force), else the gripper joint's
  state at t_k + dt. Episodes without twist commands (none in the episode, e.g. moved by
  hand): the end-effector motion from t_k to t_k + dt (/ee_pose), and the gripper joint's
  state at t_k + dt (the gripper commands when there is no gripper joint).
'''

from dataclasses import dataclass, field
import logging

import numpy as np

from am_learning.conventions import displacement_to_action, twist_to_action
from am_learning.data.bags import (
    EVENT_DISCARD,
    EVENT_START,
    EVENT_STOP,
    BagStreams,
    Series,
)
from am_learning.data.config import DatasetConfig

log = logging.getLogger(__name__)


class UnusableEpisodeError(ValueError):
    '''An episode that cannot become dataset frames; the message says why.'''


@dataclass(frozen=True)
class EpisodeWindow:
    '''Where an episode lies in its bag, and what the operator said about it.'''

    start_ns: int
    stop_ns: int
    episode_id: str
    label: str = ''
    success: bool | None = None
    bounded: bool = True
    '''False: the whole bag (no markers); its frames are not cut by start_ns / stop_ns, which
    are then bag receive times and may be on another clock than header stamps.'''


@dataclass
class EpisodeArrays:
    '''One episode's frames, ready to be appended to a cache.'''

    actions: np.ndarray
    '''(K, 5) float32 in [-1, 1].'''
    proprio: np.ndarray
    '''(K, P) float32.'''
    images: np.ndarray | None
    '''(K, S, S, 3) uint8 RGB.'''
    states: np.ndarray | None
    '''(K, D) float32.'''
    info: dict = field(default_factory=dict)
    '''JSON-serialisable facts about the episode (id, label, stamps, action source, ...).'''

    @property
    def num_frames(self) -> int:
        return len(self.actions)


def episode_windows(streams: BagStreams) -> list[EpisodeWindow]:
    '''Episodes of a bag: its marker pairs, or the whole bag when it has no markers.'''
    name = streams.path.stem if streams.path.is_file() else streams.path.name
    if not streams.events:
        custom = streams.custom_data
        success = custom.get('am.success')
        return [EpisodeWindow(
            start_ns=streams.start_ns,
            stop_ns=streams.end_ns,
            episode_id=custom.get('am.episode_id', name),
            label=custom.get('am.label', ''),
            success=None if success is None else success.lower() in ('true', '1', 'yes'),
            bounded=False,
        )]
    windows: list[EpisodeWindow] = []
    open_event = None
    for event in streams.events:
        if event.event == EVENT_START:
            if open_event is not None:
                log.warning('%s: episode %r started again before its STOP: dropped',
                            streams.path, open_event.episode_id)
            open_event = event
        elif event.event in (EVENT_STOP, EVENT_DISCARD):
            if open_event is None or (event.episode_id and
                                      event.episode_id != open_event.episode_id):
                log.warning('%s: %s for episode %r that was not started: ignored',
                            streams.path, 'STOP' if event.event == EVENT_STOP else 'DISCARD',
                            event.episode_id)
                continue
            if event.event == EVENT_STOP:
                windows.append(EpisodeWindow(
                    start_ns=open_event.stamp_ns, stop_ns=event.stamp_ns,
                    episode_id=open_event.episode_id or event.episode_id,
                    label=open_event.label or event.label, success=event.success,
                ))
            else:
                log.info('%s: episode %r was discarded by the operator',
                         streams.path, open_event.episode_id)
            open_event = None
    if open_event is not None:
        log.warning('%s: episode %r has no STOP marker (the bag ends first): dropped',
                    streams.path, open_event.episode_id)
    return windows


def _newest_at_or_before(series: Series, ticks: np.ndarray) -> np.ndarray:
    '''(K,) index of each tick's newest sample at or before it (-1 where none).'''
    return np.searchsorted(series.stamps, ticks, side='right') - 1


def _first_stamp(series: Series | None) -> int | None:
    return None if series is None or len(series) == 0 else int(series.stamps[0])


def _closure_from_joint(streams: BagStreams, config: DatasetConfig,
                        at: np.ndarray) -> np.ndarray:
    '''Gripper closure in [0, 1] from the gripper joint's position (0 = open if unknown).'''
    series = streams.joints.get(config.gripper_joint) if config.gripper_joint else None
    if series is None or len(series) == 0:
        return np.zeros(len(at))
    idx = np.maximum(_newest_at_or_before(series, at), 0)
    position = np.clip(series.values[idx], 0.0, 1.0)
    return 1.0 - position if config.gripper_position_means == 'opening' else position


def _gripper_closure(streams: BagStreams, config: DatasetConfig, ticks: np.ndarray,
                     commanded: bool) -> np.ndarray:
    '''(K,) closure at the end of each control period: the commanded one in commanded
    episodes (the joint's where no command was given yet), the joint's otherwise.'''
    end = ticks + config.period_ns
    fallback = _closure_from_joint(streams, config, end)
    grip = streams.gripper
    if grip is None or len(grip) == 0 or (not commanded and config.gripper_joint in
                                          streams.joints):
        return fallback
    idx = np.searchsorted(grip.stamps, end, side='left') - 1
    commanded = np.clip(grip.values[np.maximum(idx, 0)], 0.0, 1.0)
    return np.where(idx >= 0, commanded, fallback)


def _command_actions(streams: BagStreams, config: DatasetConfig, ticks: np.ndarray,
                     closure: np.ndarray) -> tuple[np.ndarray, dict]:
    '''Actions from twist commands (see the module docstring for the rule).'''
    twist = streams.twist
    dt = config.period_ns
    lo = np.searchsorted(twist.stamps, ticks, side='left')
    hi = np.searchsorted(twist.stamps, ticks + dt, side='left')
    count = hi - lo
    sums = np.concatenate([np.zeros((1, 4)), np.cumsum(twist.values, axis=0)])
    in_window = (sums[hi] - sums[lo]) / np.maximum(count, 1)[:, None]
    prev = lo - 1
    stale_ns = config.stale_command_timeout_s * 1e9
    held = (count == 0) & (prev >= 0) & (ticks - twist.stamps[np.maximum(prev, 0)] < stale_ns)
    command = np.where((count > 0)[:, None], in_window, 0.0)
    command = np.where(held[:, None], twist.values[np.maximum(prev, 0)], command)
    actions = twist_to_action(command[:, :3], command[:, 3], closure, config.action_scale)
    stats = {
        'commanded_frames': int(np.sum(count > 0)),
        'held_command_frames': int(np.sum(held)),
        'idle_frames': int(np.sum((count == 0) & ~held)),
    }
    return actions, stats


def _motion_actions(streams: BagStreams, config: DatasetConfig, ticks: np.ndarray,
                    closure: np.ndarray) -> np.ndarray:
    '''Actions from the end-effector motion over each control period.'''
    pose = streams.ee_pose
    now = pose.values[_newest_at_or_before(pose, ticks)]
    after = pose.values[_newest_at_or_before(pose, ticks + config.period_ns)]
    delta = after - now
    return displacement_to_action(delta[:, :3], delta[:, 3], closure, config.action_scale)


def _commands_in_window(twist: Series | None, window: EpisodeWindow) -> bool:
    '''Whether arm commands drove this episode (a bag may mix commanded episodes with ones
    moved by hand, whose actions then come from the end-effector motion).'''
    if twist is None or len(twist) == 0:
        return False
    if not window.bounded:
        return True
    lo = np.searchsorted(twist.stamps, window.start_ns, side='left')
    hi = np.searchsorted(twist.stamps, window.stop_ns, side='right')
    return bool(hi > lo)


def align_episode(streams: BagStreams, window: EpisodeWindow,
                  config: DatasetConfig) -> EpisodeArrays:
    '''One episode's frames at the control rate; UnusableEpisodeError when it has none usable.'''
    dt = config.period_ns
    images = streams.images if config.use_images else None
    if config.use_images and (images is None or len(images) == 0):
        found = [t for t, ty in streams.topics.items() if ty.startswith('sensor_msgs/msg/')
                 and ty.endswith(('/Image', '/CompressedImage'))]
        raise UnusableEpisodeError(
            f'no camera frames on {config.camera_topic}'
            + (f' or {config.compressed_camera_topic}' if config.compressed_camera_topic else '')
            + (f' (image topics in the bag: {", ".join(found)})' if found else '')
        )
    state = streams.state if streams.state is not None and len(streams.state) else None
    if config.require_state and state is None:
        raise UnusableEpisodeError(f'no state on {config.state_topic}')
    if not config.use_images and state is None:
        raise UnusableEpisodeError(f'no state on {config.state_topic} and images are off')
    missing = [n for n in config.joint_names if n not in streams.joints]
    if missing:
        raise UnusableEpisodeError(
            f'joint(s) {", ".join(missing)} never published on {config.joint_states_topic}'
        )
    has_twist = _commands_in_window(streams.twist, window)
    has_pose = streams.ee_pose is not None and len(streams.ee_pose) > 0
    if not has_twist and not has_pose:
        raise UnusableEpisodeError(
            f'no arm commands on {config.twist_topic} and no end-effector pose on '
            f'{config.ee_pose_topic}: actions cannot be derived'
        )
    primary = images if images is not None else state
    needed = [primary, state] + [streams.joints[n] for n in config.joint_names]
    if not has_twist:
        needed.append(streams.ee_pose)
    start, stop = (window.start_ns, window.stop_ns) if window.bounded else (None, None)
    firsts = [_first_stamp(s) for s in needed if s is not None]
    t_first = max(firsts if start is None else [start, *firsts])
    in_window = primary.stamps if stop is None else primary.stamps[primary.stamps <= stop]
    t_last = int(in_window[-1]) if len(in_window) else t_first - 1
    if stop is not None:
        t_last = min(stop, t_last)
    ticks = np.arange(t_first, t_last + 1, dt, dtype=np.int64)
    if len(ticks) < config.min_episode_frames:
        raise UnusableEpisodeError(
            f'{len(ticks)} frame(s) at {config.control_rate_hz:g} Hz, fewer than '
            f'min_episode_frames={config.min_episode_frames}'
        )

    closure = _gripper_closure(streams, config, ticks, commanded=has_twist)
    stats: dict = {}
    if has_twist:
        actions, stats = _command_actions(streams, config, ticks, closure)
        source = 'commands'
    else:
        actions = _motion_actions(streams, config, ticks, closure)
        source = 'ee_motion'

    proprio = np.zeros((len(ticks), len(config.joint_names)), np.float32)
    for j, name in enumerate(config.joint_names):
        series = streams.joints[name]
        proprio[:, j] = series.values[_newest_at_or_before(series, ticks)]

    frames = None
    info: dict = {}
    if images is not None:
        idx = _newest_at_or_before(images, ticks)
        frames = images.values[idx]
        age = ticks - images.stamps[idx]
        info['max_image_age_ms'] = round(float(age.max()) / 1e6, 3)
        info['stale_image_frames'] = int(np.sum(age > 2 * dt))
        info['image_topic'] = streams.image_topic
    states = None
    if state is not None:
        states = state.values[_newest_at_or_before(state, ticks)].astype(np.float32)

    info.update({
        'episode_id': window.episode_id,
        'label': window.label,
        'success': window.success,
        'start_ns': int(window.start_ns),
        'stop_ns': int(window.stop_ns),
        'first_tick_ns': int(ticks[0]),
        'frames': len(ticks),
        'action_source': source,
        **({'state_layout': streams.state_layout} if states is not None else {}),
        **stats,
    })
    return EpisodeArrays(actions=actions.astype(np.float32), proprio=proprio, images=frames,
                         states=states, info=info)
