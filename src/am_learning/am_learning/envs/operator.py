'''OGBench's scripted play operator, driven only by what a scripted operator may observe.

OGBench's `play` datasets are made by a short loop (data_gen_scripts in the OGBench
repository, not shipped in the wheel): the environment draws a random target for one cube,
`CubePlanOracle` plans a pick-and-place to it through interpolated key frames with
temporally smoothed Gaussian noise (0.1 x the action scale), and when the plan ends a new
target is drawn (in the 3x3 puzzle: a random button, pressed by `ButtonPlanOracle` with the
gripper closed). Here the same oracle classes run unchanged, but the operator draws the
targets itself from the OGBench state vector (the vector `/am_sim/state` carries), so the
identical operator drives the in-process scene, the offline generator and the ROS
`scripted_teleop` node, which sees the robot only through topics. The `scene` scene
(drawer, window, buttons, locks) has no operator here.

OGBench's oracle draws from NumPy's global RNG; `_global_rng_from` seeds that RNG from the
caller's explicit `np.random.Generator` around each plan and restores it afterwards, so a
seeded operator is reproducible and the global state is left untouched.
'''

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from am_learning.conventions import ActionScale

# OGBench's state-vector layout (ManipSpaceEnv / CubeEnv.compute_observation).
XYZ_CENTER = np.array([0.425, 0.0, 0.0])
XYZ_SCALER = 10.0
GRIPPER_SCALER = 3.0
PROPRIO_DIM = 19
CUBE_DIM = 9
# OGBench's sampling boxes (ManipSpaceEnv.__init__), metres.
ARM_SAMPLING_BOUNDS = np.array([[0.25, -0.35, 0.20], [0.6, 0.35, 0.35]])
TARGET_SAMPLING_BOUNDS = np.array([[0.3, -0.3], [0.55, 0.3]])
OGBENCH_ACTION_RANGE = np.array([0.05, 0.05, 0.05, 0.3, 1.0])
CUBE_COUNTS = {'cube-single': 1, 'cube-double': 2}
# The 3x3 button puzzle (PuzzleEnv): button i = row * 3 + col sits on a 0.1 m grid around
# (0.425, 0); its top is at PUZZLE_TOP_Z at rest and moves with the button's slide joint.
PUZZLE_SIZE = 3
PUZZLE_BUTTON_STATES = 2
PUZZLE_BUTTON_DIM = PUZZLE_BUTTON_STATES + 2  # one-hot state, joint position x 120, velocity
PUZZLE_BUTTON_SCALER = 120.0
PUZZLE_TOP_Z = 0.1254
OPERATED_SCENES = (*CUBE_COUNTS, 'puzzle-3x3')


def decode_state(state: np.ndarray, num_cubes: int) -> dict[str, np.ndarray]:
    '''OGBench cube-scene state vector -> the named quantities the oracle reads.

    Inverse of CubeEnv.compute_observation for the fields that matter: effector position
    and yaw, gripper opening (OGBench's name; 0 open, 1 closed), and per cube its position
    and yaw.
    '''
    s = np.asarray(state, dtype=np.float64)
    expected = PROPRIO_DIM + CUBE_DIM * num_cubes
    if s.shape != (expected,):
        raise ValueError(f'state vector of {num_cubes} cube(s) has shape ({expected},), '
                         f'got {s.shape}')
    info = {
        'proprio/joint_pos': s[0:6].copy(),
        'proprio/effector_pos': s[12:15] / XYZ_SCALER + XYZ_CENTER,
        'proprio/effector_yaw': np.array([np.arctan2(s[16], s[15])]),
        'proprio/gripper_opening': np.array([s[17] / GRIPPER_SCALER]),
    }
    for i in range(num_cubes):
        c = s[PROPRIO_DIM + CUBE_DIM * i: PROPRIO_DIM + CUBE_DIM * (i + 1)]
        info[f'privileged/block_{i}_pos'] = c[0:3] / XYZ_SCALER + XYZ_CENTER
        info[f'privileged/block_{i}_yaw'] = np.array([np.arctan2(c[8], c[7])])
    return info


def decode_puzzle_state(state: np.ndarray) -> dict[str, np.ndarray]:
    '''OGBench 3x3 puzzle state vector -> proprioception and each button's top position.'''
    s = np.asarray(state, dtype=np.float64)
    n = PUZZLE_SIZE * PUZZLE_SIZE
    expected = PROPRIO_DIM + PUZZLE_BUTTON_DIM * n
    if s.shape != (expected,):
        raise ValueError(f'3x3 puzzle state vector has shape ({expected},), got {s.shape}')
    info = decode_state(s[:PROPRIO_DIM], 0)
    for i in range(n):
        b = s[PROPRIO_DIM + PUZZLE_BUTTON_DIM * i: PROPRIO_DIM + PUZZLE_BUTTON_DIM * (i + 1)]
        row, col = divmod(i, PUZZLE_SIZE)
        info[f'privileged/button_{i}_state'] = np.array([int(np.argmax(b[:2]))])
        info[f'privileged/button_{i}_top_pos'] = np.array([
            0.425 + 0.1 * (row - 1), 0.1 * (col - 1),
            PUZZLE_TOP_Z + b[PUZZLE_BUTTON_STATES] / PUZZLE_BUTTON_SCALER])
    return info


def ogbench_to_action(og_action: np.ndarray, gripper_opening: float) -> np.ndarray:
    '''OGBench action (relative gripper) -> our convention (absolute gripper target).

    OGBench's gripper entry moves the gripper opening (0 open .. 1 closed) by that much;
    ours names the target closure: -1 fully open .. +1 fully closed.
    '''
    a = np.clip(np.asarray(og_action, dtype=np.float64), -1.0, 1.0)
    target = np.clip(gripper_opening + a[4], 0.0, 1.0)
    return np.array([a[0], a[1], a[2], a[3], 2.0 * target - 1.0], dtype=np.float32)


def action_to_ogbench(action: np.ndarray, gripper_opening: float) -> np.ndarray:
    '''Our convention action -> OGBench action (inverse of `ogbench_to_action`).'''
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    target = (a[4] + 1.0) / 2.0
    return np.array([a[0], a[1], a[2], a[3], target - gripper_opening], dtype=np.float64)


@contextmanager
def _global_rng_from(rng: np.random.Generator) -> Iterator[None]:
    '''Run third-party code that draws from np.random's global RNG, seeded from `rng`.'''
    saved = np.random.get_state()
    np.random.seed(int(rng.integers(2**32)))
    try:
        yield
    finally:
        np.random.set_state(saved)


@dataclass(frozen=True)
class OperatorConfig:
    '''Play-data recipe of OGBench (data_gen_scripts/generate_manipspace.py, `play`).'''

    noise: float = 0.1
    '''Plan noise as a fraction of the action scale (OGBench: 0.1).'''
    noise_smoothing: float = 0.5
    '''Gaussian smoothing (sigma, in control steps) of the plan noise (OGBench: 0.5).'''
    segment_dt: float = 0.4
    '''Seconds per key-frame segment of a pick-and-place plan (OGBench: 0.4).'''


class PlayOperator:
    '''A scripted operator that plays: picks a cube and places it somewhere (cube scenes), or
    presses a random button (3x3 puzzle, gripper kept closed as in OGBench), and repeats.

    Observes only the OGBench state vector (what `/am_sim/state` carries) and keeps its own
    clock by counting its control steps; returns actions in our convention.
    '''

    def __init__(self, scene: str, scale: ActionScale | None = None,
                 config: OperatorConfig | None = None) -> None:
        if scene not in OPERATED_SCENES:
            raise ValueError(f'the scripted play operator drives {sorted(OPERATED_SCENES)}, '
                             f'not {scene!r}')
        from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
        from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle

        self.scene = scene
        self.num_cubes = CUBE_COUNTS.get(scene, 0)
        self.scale = scale or ActionScale()
        self.config = config or OperatorConfig()
        # The oracle reads these few attributes of the environment; nothing else.
        shim = SimpleNamespace(unwrapped=SimpleNamespace(
            _control_timestep=self.scale.period_s,
            _arm_sampling_bounds=ARM_SAMPLING_BOUNDS,
            normalize_action=lambda a: np.clip(a / OGBENCH_ACTION_RANGE, -1.0, 1.0),
        ))
        kwargs = {'env': shim, 'segment_dt': self.config.segment_dt,
                  'noise': self.config.noise, 'noise_smoothing': self.config.noise_smoothing}
        self._oracle = (CubePlanOracle(**kwargs) if self.num_cubes
                        else ButtonPlanOracle(gripper_always_closed=True, **kwargs))
        self._steps = 0
        self._planned = False
        self._p_stack = 0.0
        self.target_block = -1
        self.target_pos = np.zeros(3)

    def reset(self, rng: np.random.Generator) -> None:
        '''Start a new episode: forget the plan, draw this episode's stacking probability.'''
        self._steps = 0
        self._planned = False
        # OGBench: no stacking with one cube, p_stack ~ U(0, 0.25) per episode with two.
        self._p_stack = 0.0 if self.num_cubes == 1 else float(rng.uniform(0.0, 0.25))

    def _new_target(self, info: dict, rng: np.random.Generator) -> None:
        '''CubeEnv / PuzzleEnv.set_new_target, from the observed state.'''
        if not self.num_cubes:
            self.target_block = int(rng.integers(PUZZLE_SIZE * PUZZLE_SIZE))  # a button
            self.target_pos = info[f'privileged/button_{self.target_block}_top_pos']
            return
        xyz = np.array([info[f'privileged/block_{i}_pos'] for i in range(self.num_cubes)])
        top = [
            i for i in range(self.num_cubes)
            if not any(xyz[j][2] > xyz[i][2] and np.linalg.norm(xyz[i][:2] - xyz[j][:2]) < 0.02
                       for j in range(self.num_cubes) if j != i)
        ]
        block = int(rng.choice(top))
        if len(top) >= 2 and rng.uniform() < self._p_stack:
            other = int(rng.choice(sorted(set(top) - {block})))
            pos = xyz[other] + np.array([0.0, 0.0, 0.04])
        else:
            pos = np.array([*rng.uniform(*TARGET_SAMPLING_BOUNDS), 0.02])
        self.target_block = block
        self.target_pos = pos
        self._target_yaw = float(rng.uniform(0.0, 2.0 * np.pi))

    def act(self, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        '''One control step: the state vector now -> the (5,) action to send.'''
        if self.num_cubes:
            info = decode_state(state, self.num_cubes)
        else:
            info = decode_puzzle_state(state)
        info['time'] = np.array([self._steps * self.scale.period_s])
        if not self._planned or self._oracle.done:
            self._new_target(info, rng)
            if self.num_cubes:
                info['privileged/target_block'] = self.target_block
                info['privileged/target_block_pos'] = self.target_pos
                info['privileged/target_block_yaw'] = np.array([self._target_yaw])
            else:
                info['privileged/target_button_top_pos'] = self.target_pos
            with _global_rng_from(rng):
                self._oracle.reset(None, info)
            self._planned = True
        og = self._oracle.select_action(None, info)
        self._steps += 1
        return ogbench_to_action(og, float(info['proprio/gripper_opening'][0]))
