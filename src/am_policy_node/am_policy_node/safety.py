'''Safety limits applied to every arm command, and the freshness watchdog. Pure numpy.

A command is a Cartesian velocity held for one control period plus a gripper closure
(am_learning.conventions.action_to_twist). Before it reaches a commander it is
1. clipped per axis so that the end effector, moving at it for one period, stays inside
   the workspace box (from outside the box only motion back towards it is allowed), then
2. scaled down (direction kept) to the linear speed cap, and the yaw rate clipped to its cap.
Both steps keep the command inside the set the other one allows (each set is convex and
contains zero), so their order does not undo either.
'''

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArmCommand:
    '''One control step's command: what every commander consumes.'''

    linear: np.ndarray
    '''(3,) end-effector linear velocity, m/s, in the command frame.'''
    yaw_rate: float
    '''End-effector yaw rate about the frame's z axis, rad/s.'''
    closure: float | None
    '''Gripper closure in [0, 1] (0 open), or None to leave the gripper alone.'''

    @classmethod
    def zero(cls) -> 'ArmCommand':
        '''Stand still; the gripper keeps its last target.'''
        return cls(linear=np.zeros(3), yaw_rate=0.0, closure=None)

    @property
    def is_zero(self) -> bool:
        return bool(np.all(self.linear == 0.0)) and self.yaw_rate == 0.0


@dataclass(frozen=True)
class SafetyLimits:
    '''Workspace box and speed caps; the node fills it from its parameters.'''

    workspace_min: tuple[float, float, float]
    '''Lower corner of the allowed end-effector box, metres, in the ee_pose frame.'''
    workspace_max: tuple[float, float, float]
    '''Upper corner of the box.'''
    max_linear_speed: float
    '''Cap on the norm of the linear velocity, m/s.'''
    max_yaw_rate: float
    '''Cap on |yaw rate|, rad/s.'''

    def validate(self) -> None:
        '''Raise ValueError saying which limit is unusable.'''
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,):
            raise ValueError('workspace_min and workspace_max need 3 values each (x, y, z)')
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError('workspace bounds must be finite')
        if np.any(lo >= hi):
            raise ValueError(f'workspace_min {lo.tolist()} must be below workspace_max '
                             f'{hi.tolist()} on every axis')
        if not (np.isfinite(self.max_linear_speed) and self.max_linear_speed > 0):
            raise ValueError(f'max_linear_speed must be > 0, got {self.max_linear_speed}')
        if not (np.isfinite(self.max_yaw_rate) and self.max_yaw_rate > 0):
            raise ValueError(f'max_yaw_rate must be > 0, got {self.max_yaw_rate}')


def clip_to_workspace(
    linear: np.ndarray, position: np.ndarray, period_s: float, limits: SafetyLimits
) -> np.ndarray:
    '''Per-axis clip of a velocity so position + linear * period stays in the box.

    From outside the box on an axis, motion further out on that axis is zeroed and
    motion back in is allowed (so the arm can always be brought back).
    '''
    linear = np.asarray(linear, dtype=np.float64)
    position = np.asarray(position, dtype=np.float64)
    lo = (np.asarray(limits.workspace_min, float) - position) / period_s
    hi = (np.asarray(limits.workspace_max, float) - position) / period_s
    return np.clip(linear, np.minimum(lo, 0.0), np.maximum(hi, 0.0))


def cap_speed(
    linear: np.ndarray, yaw_rate: float, limits: SafetyLimits
) -> tuple[np.ndarray, float]:
    '''Scale the linear velocity down to the speed cap (direction kept); clip the yaw rate.'''
    linear = np.asarray(linear, dtype=np.float64)
    speed = float(np.linalg.norm(linear))
    if speed > limits.max_linear_speed:
        linear = linear * (limits.max_linear_speed / speed)
    yaw = float(np.clip(yaw_rate, -limits.max_yaw_rate, limits.max_yaw_rate))
    return linear, yaw


def limit_command(
    command: ArmCommand, position: np.ndarray | None, period_s: float, limits: SafetyLimits
) -> tuple[ArmCommand, bool]:
    '''Apply the workspace box (when the position is known) and the caps.

    Returns the safe command and whether anything was changed.
    '''
    linear = np.asarray(command.linear, dtype=np.float64)
    if not np.all(np.isfinite(linear)) or not np.isfinite(command.yaw_rate):
        return ArmCommand(np.zeros(3), 0.0, command.closure), True
    safe = linear
    if position is not None:
        safe = clip_to_workspace(safe, position, period_s, limits)
    safe, yaw = cap_speed(safe, command.yaw_rate, limits)
    closure = command.closure
    if closure is not None:
        closure = float(np.clip(closure, 0.0, 1.0)) if np.isfinite(closure) else None
    changed = (not np.allclose(safe, linear, rtol=0, atol=1e-12)) or yaw != command.yaw_rate
    return ArmCommand(safe, yaw, closure), changed


@dataclass
class Freshness:
    '''Time of the newest sample of one input, on a monotonic clock in seconds.'''

    max_age_s: float
    last_s: float | None = None

    def mark(self, now_s: float) -> None:
        self.last_s = now_s

    def age(self, now_s: float) -> float:
        '''Seconds since the newest sample; inf before the first.'''
        return float('inf') if self.last_s is None else now_s - self.last_s

    def fresh(self, now_s: float) -> bool:
        return self.age(now_s) <= self.max_age_s
