'''The simulated robot without ROS: commands in, one control step, observations out.

`sim_robot` (the node) and `am_sim.generate` (the offline generator) both drive this core,
so a live episode and a generated one come from the same code. It behaves like a UR5e
behind MoveIt Servo: a Cartesian twist is held for one control period, a command older
than `command_timeout_s` means hold still, the gripper keeps its last commanded closure.

Clock: with `real_time_factor == 1` stamps are the caller's wall clock; otherwise the core
keeps a simulation clock advanced by one control period per step (published as /clock by
the node), and command ages are measured on it.
'''

from dataclasses import dataclass, fields
import math

import numpy as np

from am_learning.conventions import twist_to_action
from am_learning.envs import SCENES, Scene, make_scene

CONTROL_RATE_HZ = 20.0
'''OGBench's control rate (0.05 s steps); the scene's dynamics are defined at it.'''
PERIOD_NS = int(round(1e9 / CONTROL_RATE_HZ))


@dataclass(frozen=True)
class SimConfig:
    '''Parameters of `sim_robot` (same names as the ROS parameters).'''

    scene: str = 'cube-single'
    '''Scene: cube-single, cube-double, scene or puzzle-3x3 (fixed at start-up).'''
    image_size: int = 64
    '''Camera image width and height, pixels (fixed at start-up).'''
    camera_rate_hz: float = 20.0
    '''Camera frame rate; must divide the 20 Hz control rate (20, 10, 5, 4, 2, 1).'''
    real_time_factor: float = 1.0
    '''Simulated seconds per wall second; 0 = as fast as possible. Not 1: /clock is
    published and every stamp is simulation time (run the other nodes with use_sim_time).'''
    command_timeout_s: float = 0.1
    '''A twist older than this means hold still (MoveIt Servo's incoming_command_timeout).'''
    seed: int = -1
    '''Seed of the first reset; -1 draws one.'''
    frame_id: str = 'world'
    '''Frame of the end-effector pose.'''
    draw_arm: bool = False
    '''Draw the faint (10% opacity), triangle-heavy UR5e links: slower rendering.'''

    def problems(self) -> list[str]:
        '''Everything wrong with this configuration, as sentences (empty when valid).'''
        out = []
        if self.scene not in SCENES:
            out.append(f'scene must be one of {sorted(SCENES)}, got {self.scene!r}')
        if not 8 <= self.image_size <= 1024:
            out.append(f'image_size must be in [8, 1024], got {self.image_size}')
        if not 0 < self.camera_rate_hz <= CONTROL_RATE_HZ:
            out.append(f'camera_rate_hz must be in (0, {CONTROL_RATE_HZ:g}], '
                       f'got {self.camera_rate_hz}')
        elif abs(CONTROL_RATE_HZ / self.camera_rate_hz
                 - round(CONTROL_RATE_HZ / self.camera_rate_hz)) > 1e-6:
            out.append(f'camera_rate_hz must divide {CONTROL_RATE_HZ:g}, '
                       f'got {self.camera_rate_hz}')
        if not (self.real_time_factor >= 0 and math.isfinite(self.real_time_factor)):
            out.append(f'real_time_factor must be >= 0 (0: as fast as possible), '
                       f'got {self.real_time_factor}')
        if not (self.command_timeout_s > 0 and math.isfinite(self.command_timeout_s)):
            out.append(f'command_timeout_s must be > 0, got {self.command_timeout_s}')
        if self.seed < -1:
            out.append(f'seed must be >= 0, or -1 for a random one, got {self.seed}')
        return out

    @property
    def uses_sim_time(self) -> bool:
        '''True when stamps are simulation time (and /clock is published).'''
        return self.real_time_factor != 1.0

    @property
    def steps_per_image(self) -> int:
        return int(round(CONTROL_RATE_HZ / self.camera_rate_hz))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class Observation:
    '''What the robot reports after a control step.'''

    stamp_ns: int
    step: int
    '''Control steps since the last reset or task load.'''
    image: np.ndarray | None
    '''(H, W, 3) uint8 RGB, or None on steps without a camera frame.'''
    joint_positions: np.ndarray
    '''(6,) UR5e joints, radians.'''
    joint_velocities: np.ndarray
    gripper: float
    '''Gripper joint position = OGBench's gripper opening: 0 open .. 1 closed.'''
    ee_position: np.ndarray
    ee_quaternion: np.ndarray
    '''(x, y, z, w).'''
    state: np.ndarray
    '''OGBench state vector (float32).'''
    commanded: bool
    '''The step followed a fresh twist (False: held still).'''


class CommandError(ValueError):
    '''A command that cannot be applied (wrong size, not finite); the robot ignores it.'''


class SimCore:
    '''One scene, its command inputs and its clock.'''

    def __init__(self, config: SimConfig, start_ns: int = 0, *, camera: bool = True) -> None:
        '''camera=False: no rendering at all (state-only data generation).'''
        problems = config.problems()
        if problems:
            raise ValueError('; '.join(problems))
        self.config = config
        self.camera = camera
        seed = None if config.seed < 0 else config.seed
        self.scene: Scene = make_scene(config.scene, config.image_size, render=camera,
                                       seed=seed, draw_arm=config.draw_arm)
        self.sim_time_ns = int(start_ns)
        self._twist_action = np.zeros(4)
        self._twist_ns: int | None = None
        self._closure = self.scene.gripper_opening()
        self.steps_total = 0
        self._twist_seq = 0
        self._applied_seq = 0
        self._repeat_streak = 0
        self.counters = {'twists_received': 0, 'steps_new_command': 0,
                         'steps_repeated_command': 0, 'steps_late_command': 0,
                         'steps_held': 0}
        '''How each step went: a new twist, the previous one again (still fresh), or held
        still (no fresh twist). Repeats that a new twist then ended mean the operator was
        late (steps_late_command); the repeats after an operator's last command are not.
        A lossless operator gives one new twist per step and no late steps.'''

    def now_ns(self, wall_ns: int) -> int:
        '''The time this robot lives in: simulation time, or the given wall time.'''
        return self.sim_time_ns if self.config.uses_sim_time else int(wall_ns)

    def reconfigure(self, config: SimConfig) -> None:
        '''Apply parameters that may change at run time (not scene, image_size, draw_arm).'''
        fixed = ('scene', 'image_size', 'draw_arm')
        changed = [n for n in fixed if getattr(config, n) != getattr(self.config, n)]
        if changed:
            raise ValueError(f'{", ".join(changed)} cannot change while running')
        problems = config.problems()
        if problems:
            raise ValueError('; '.join(problems))
        self.config = config

    # --- commands ------------------------------------------------------------------------

    def command_twist(self, linear: np.ndarray, yaw_rate: float, wall_ns: int) -> None:
        '''A Cartesian velocity command (m/s, rad/s), held for one control period.'''
        linear = np.asarray(linear, dtype=np.float64)
        if linear.shape != (3,) or not np.all(np.isfinite(linear)) or not math.isfinite(yaw_rate):
            raise CommandError(f'twist must be finite, got linear={linear!r} yaw={yaw_rate!r}')
        action = twist_to_action(linear, yaw_rate, 0.0, self.scene.action_scale)
        self._twist_action = action[:4].astype(np.float64)
        self._twist_ns = self.now_ns(wall_ns)
        self._twist_seq += 1
        self.counters['twists_received'] += 1

    def command_gripper(self, data: list[float] | np.ndarray) -> None:
        '''Forward position controller convention: [closure], 0 open .. 1 closed.'''
        values = np.asarray(data, dtype=np.float64).ravel()
        if values.size < 1 or not math.isfinite(values[0]):
            raise CommandError(f'gripper command must hold one finite closure, got {data!r}')
        self._closure = float(np.clip(values[0], 0.0, 1.0))

    def command_age_s(self, wall_ns: int) -> float:
        '''Seconds since the last twist (inf when none since the last reset).'''
        if self._twist_ns is None:
            return math.inf
        return (self.now_ns(wall_ns) - self._twist_ns) / 1e9

    # --- stepping ------------------------------------------------------------------------

    def step(self, wall_ns: int, image: bool | None = None) -> Observation:
        '''One control step: the fresh twist, or hold still; then observe.

        image: None = a camera frame on camera steps; False = none (the node renders it
        after publishing the cheap topics, see `camera_due`).
        '''
        grip = 2.0 * self._closure - 1.0
        fresh = self.command_age_s(wall_ns) <= self.config.command_timeout_s
        if fresh:
            self.scene.step(np.append(self._twist_action, grip))
            new = self._twist_seq != self._applied_seq
            self._applied_seq = self._twist_seq
            if new:
                self.counters['steps_new_command'] += 1
                self.counters['steps_late_command'] += self._repeat_streak
                self._repeat_streak = 0
            else:
                self.counters['steps_repeated_command'] += 1
                self._repeat_streak += 1
        else:
            self.scene.hold(gripper=grip)
            self.counters['steps_held'] += 1
            self._repeat_streak = 0
        self.sim_time_ns += PERIOD_NS
        self.steps_total += 1
        return self.observe(wall_ns, commanded=fresh, image=image)

    def observe(self, wall_ns: int, commanded: bool = False,
                image: bool | None = None) -> Observation:
        '''The robot's report now (with a camera frame on camera steps, or when asked).'''
        s = self.scene
        if image is None:
            image = self.camera_due()
        image = image and self.camera
        return Observation(
            stamp_ns=self.now_ns(wall_ns),
            step=s.steps,
            image=s.render() if image else None,
            joint_positions=s.joint_positions(),
            joint_velocities=s.joint_velocities(),
            gripper=s.gripper_opening(),
            ee_position=s.ee_position(),
            ee_quaternion=s.ee_quaternion(),
            state=s.state(),
            commanded=commanded,
        )

    def camera_due(self) -> bool:
        '''This step is a camera step (camera_rate_hz divides the control rate).'''
        return self.camera and self.scene.steps % self.config.steps_per_image == 0

    def _forget_commands(self) -> None:
        self._repeat_streak = 0
        self._twist_ns = None
        self._twist_action = np.zeros(4)
        self._closure = self.scene.gripper_opening()

    def reset(self, seed: int | None = None) -> np.ndarray | None:
        '''Play reset (arm and objects at random); returns the camera image (None: no camera).'''
        self.scene.reset(seed)
        self._forget_commands()
        return self.scene.render() if self.camera else None

    def load_eval_task(self, task_id: int, seed: int | None = None) -> np.ndarray:
        '''The benchmark's evaluation task (1-based); returns its goal image.'''
        goal = self.scene.load_eval_task(task_id, seed)
        self._forget_commands()
        return goal

    def load_reach_task(self, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        '''A random gripper goal pose; returns its goal image and goal position.'''
        goal = self.scene.load_reach_task(seed)
        self._forget_commands()
        return goal, self.scene.goal_position
