'''OGBench's scripted play operator, driven only by what a scripted operator may observe.

OGBench's `play` datasets are made by a short loop (data_gen_scripts in the OGBench
repository, not shipped in the wheel): the environment draws a random target for one cube,
`CubePlanOracle` plans a pick-and-place to it through interpolated key frames with
temporally smoothed Gaussian noise (0.1 x the action scale), and when the plan ends a new
target is drawn (in the 3x3 puzzle: a random button, pressed by `ButtonPlanOracle` with the
gripper closed; in `scene`: a random subtask, as SceneEnv.set_new_target draws it: move the
cube (30% of the time into the open drawer), toggle a button, or open/close the drawer or
the window, each of the last two 4x less likely while its button locks it, run by
`CubePlanOracle`, `ButtonPlanOracle`, `DrawerPlanOracle` or `WindowPlanOracle`). Here the same
oracle classes run unchanged, but the operator draws the targets itself from the OGBench
state vector (the vector `/am_sim/state` carries; `decode_state`, `decode_puzzle_state` and
`decode_scene_state` invert the environments' compute_observation), so the identical
operator drives the in-process scene, the offline generator and the ROS `scripted_teleop`
node, which sees the robot only through topics. Unlike OGBench's `scene` data, episodes in
which the cube leaves the camera's view are kept (OGBench discards and redraws them).

`ReachOperator` is a second, simpler operator (not OGBench's): it moves the open gripper to
random points of the box reach goals are drawn from, lingers there, and moves on. Play data
centres on the cube; mixed with reach episodes the data covers the whole workspace.

OGBench's oracle draws from NumPy's global RNG; `_global_rng_from` seeds that RNG from the
caller's explicit `np.random.Generator` around each plan and restores it afterwards, so a
seeded operator is reproducible and the global state is left untouched.
'''

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from am_learning.conventions import GRIPPER_INDEX, ActionScale

# OGBench's state-vector layout (ManipSpaceEnv / CubeEnv.compute_observation).
XYZ_CENTER = np.array([0.425, 0.0, 0.0])
XYZ_SCALER = 10.0
GRIPPER_SCALER = 3.0
PROPRIO_DIM = 19
CUBE_DIM = 9
EFFECTOR_POS_DIMS = slice(12, 15)
'''proprio/effector_pos, (metres - XYZ_CENTER) * XYZ_SCALER.'''
JOINT_VELOCITY_DIMS = tuple(range(6, 12))
'''proprio/joint_vel in every OGBench manipulation state vector. A smooth demonstrator's
next action can be read off these without looking at the goal, and a network given them
learns that shortcut (bench/results/goal_sensitivity.md, cube-single play data: AM's greedy
actions followed the data's motion, cosine 0.80, and not the goal, 0.01; without them 0.27
towards the goal): state-based training leaves them out (NetworkConfig.state_ignore).'''
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
# The `scene` scene (SceneEnv): one cube, two buttons (while its state is 0, button 0 locks
# the drawer and button 1 the window), a drawer sliding along -y, a window along +x.
SCENE_DIM = PROPRIO_DIM + CUBE_DIM + 2 * PUZZLE_BUTTON_DIM + 4
SCENE_BUTTON_SCALER = 120.0
SCENE_DRAWER_SCALER = 18.0
SCENE_WINDOW_SCALER = 15.0
SCENE_ARM_SAMPLING_BOUNDS = np.array([[0.25, -0.2, 0.20], [0.6, 0.2, 0.35]])
SCENE_TARGET_SAMPLING_BOUNDS = np.array([[0.3, -0.07], [0.45, 0.18]])
SCENE_DRAWER_CENTER = np.array([0.33, -0.24, 0.066])
'''Where SceneEnv puts the cube into the open drawer (+-5 mm in x and y).'''
SCENE_P_PUT_IN_DRAWER = 0.3
SCENE_LOCKED_WEIGHT = 0.25
'''SceneEnv.set_new_target: weight of the drawer (window) subtask while locked; else 1.'''
SCENE_SUCCESS_TOLERANCE = 0.04
'''SceneEnv._compute_successes: the cube, the drawer and the window within 4 cm.'''
# Fixed points of SceneEnv's model (descriptions/{buttons,drawer,window}.xml), world frame.
# A button's top (site btntop_i) is on the fixed button box: it does not move with a press.
SCENE_BUTTON_TOPS = np.array([
    [0.58, -0.05 - 0.0774 * np.cos(1.57), 0.048 + 0.0774 * np.sin(1.57)],
    [0.58, 0.05 - 0.0732 * np.cos(1.57), 0.048 + 0.0732 * np.sin(1.57)],
])
SCENE_DRAWER_HANDLE_YAW = 3.14  # the drawer body's yaw
SCENE_DRAWER_AXIS = np.array([-np.sin(3.14), np.cos(3.14), 0.0])  # drawer_slide, world frame
SCENE_DRAWER_HANDLE_AT_ZERO = np.array([0.33, -0.42, 0.08]) - 0.18 * SCENE_DRAWER_AXIS
SCENE_WINDOW_HANDLE_YAW = 1.57  # the window handle site's yaw
SCENE_WINDOW_AXIS = np.array([1.0, 0.0, 0.0])  # window_slide
SCENE_WINDOW_HANDLE_AT_ZERO = np.array([0.286, 0.225, 0.237])
SCENE_TARGET_SITE_DZ = 1e-4
'''The drawer's and the window's target handle sites sit 0.1 mm above the handle.'''
SUBTASKS = ('cube', 'button', 'drawer', 'window')
OPERATED_SCENES = (*CUBE_COUNTS, 'puzzle-3x3', 'scene')
OPERATORS = ('play', 'reach')


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
        'proprio/effector_pos': s[EFFECTOR_POS_DIMS] / XYZ_SCALER + XYZ_CENTER,
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


def decode_scene_state(state: np.ndarray) -> dict[str, np.ndarray]:
    '''OGBench `scene` state vector -> the named quantities of SceneEnv's info.

    Inverse of SceneEnv.compute_observation for what the plan oracles and set_new_target
    read: proprioception (as `decode_state`), the cube's position, quaternion and yaw, each
    button's state, joint position and velocity (and its top, `button_i_top_pos`, a fixed
    point), the drawer's and the window's joint position and velocity and their handle's
    position and yaw, and `button_states` as SceneEnv reports it.
    '''
    s = np.asarray(state, dtype=np.float64)
    if s.shape != (SCENE_DIM,):
        raise ValueError(f'scene state vector has shape ({SCENE_DIM},), got {s.shape}')
    info = decode_state(s[:PROPRIO_DIM + CUBE_DIM], 1)
    info['privileged/block_0_quat'] = s[PROPRIO_DIM + 3: PROPRIO_DIM + 7].copy()
    states = []
    for i in range(2):
        start = PROPRIO_DIM + CUBE_DIM + PUZZLE_BUTTON_DIM * i
        b = s[start: start + PUZZLE_BUTTON_DIM]
        states.append(int(np.argmax(b[:2])))
        info[f'privileged/button_{i}_state'] = np.array([states[-1]])
        info[f'privileged/button_{i}_pos'] = np.array([b[2] / SCENE_BUTTON_SCALER])
        info[f'privileged/button_{i}_vel'] = np.array([b[3]])
        info[f'privileged/button_{i}_top_pos'] = SCENE_BUTTON_TOPS[i].copy()
    info['button_states'] = np.array(states)
    drawer, drawer_vel, window, window_vel = s[SCENE_DIM - 4:]
    drawer /= SCENE_DRAWER_SCALER
    window /= SCENE_WINDOW_SCALER
    info['privileged/drawer_pos'] = np.array([drawer])
    info['privileged/drawer_vel'] = np.array([drawer_vel])
    info['privileged/drawer_handle_pos'] = drawer_handle_pos(drawer)
    info['privileged/drawer_handle_yaw'] = np.array([SCENE_DRAWER_HANDLE_YAW])
    info['privileged/window_pos'] = np.array([window])
    info['privileged/window_vel'] = np.array([window_vel])
    info['privileged/window_handle_pos'] = window_handle_pos(window)
    info['privileged/window_handle_yaw'] = np.array([SCENE_WINDOW_HANDLE_YAW])
    return info


def drawer_handle_pos(drawer: float) -> np.ndarray:
    '''World position of the drawer's handle (site drawer_handle_center) at joint `drawer`.'''
    return SCENE_DRAWER_HANDLE_AT_ZERO + float(drawer) * SCENE_DRAWER_AXIS


def window_handle_pos(window: float) -> np.ndarray:
    '''World position of the window's handle (site window_handle_center) at joint `window`.'''
    return SCENE_WINDOW_HANDLE_AT_ZERO + float(window) * SCENE_WINDOW_AXIS


def _in_drawer(pos: np.ndarray, drawer_handle: np.ndarray) -> bool:
    '''SceneEnv._is_in_drawer: inside the box the drawer spans, placed from its handle.'''
    y = drawer_handle[1]
    low = np.array([0.21, y - 0.27, 0.0])
    high = np.array([0.45, y - 0.07, 0.15])
    return bool(np.all(low <= pos) and np.all(pos <= high))


def decode_scene(scene: str, state: np.ndarray) -> dict[str, np.ndarray]:
    '''The decoder of an operated scene's state vector, applied.'''
    if scene in CUBE_COUNTS:
        return decode_state(state, CUBE_COUNTS[scene])
    if scene == 'puzzle-3x3':
        return decode_puzzle_state(state)
    if scene == 'scene':
        return decode_scene_state(state)
    raise ValueError(f'no state decoder for scene {scene!r}; there is one for '
                     f'{sorted(OPERATED_SCENES)}')


def ogbench_to_action(og_action: np.ndarray, gripper_opening: float) -> np.ndarray:
    '''OGBench action (relative gripper) -> our convention (absolute gripper target).

    OGBench's gripper entry moves the gripper opening (0 open .. 1 closed) by that much;
    ours names the target closure: -1 fully open .. +1 fully closed.
    '''
    a = np.clip(np.asarray(og_action, dtype=np.float64), -1.0, 1.0)
    target = np.clip(gripper_opening + a[4], 0.0, 1.0)  # OGBench's gripper entry
    return np.array([a[0], a[1], a[2], a[3], 2.0 * target - 1.0], dtype=np.float32)


def action_to_ogbench(action: np.ndarray, gripper_opening: float) -> np.ndarray:
    '''Our convention action -> OGBench action (inverse of `ogbench_to_action`).'''
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    target = (a[GRIPPER_INDEX] + 1.0) / 2.0
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
    '''A scripted operator that plays: picks a cube and places it somewhere (cube scenes),
    presses a random button (3x3 puzzle, gripper kept closed as in OGBench), or does one of
    the `scene` subtasks (move the cube, toggle a button, open or close the drawer or the
    window), and repeats.

    Observes only the OGBench state vector (what `/am_sim/state` carries) and keeps its own
    clock by counting its control steps; returns actions in our convention. `subtask` names
    the subtask under way (one of SUBTASKS); `finished` lists, for this episode, each
    subtask whose plan ran to its end and whether its goal held then (OGBench's success
    test of that subtask).
    '''

    def __init__(self, scene: str, scale: ActionScale | None = None,
                 config: OperatorConfig | None = None) -> None:
        if scene not in OPERATED_SCENES:
            raise ValueError(f'the scripted play operator drives {sorted(OPERATED_SCENES)}, '
                             f'not {scene!r}')
        from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
        from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
        from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
        from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

        self.scene = scene
        self.num_cubes = CUBE_COUNTS.get(scene, 1 if scene == 'scene' else 0)
        self.scale = scale or ActionScale()
        self.config = config or OperatorConfig()
        # The oracles read these few attributes of the environment; nothing else.
        shim = SimpleNamespace(unwrapped=SimpleNamespace(
            _control_timestep=self.scale.period_s,
            _arm_sampling_bounds=(SCENE_ARM_SAMPLING_BOUNDS if scene == 'scene'
                                  else ARM_SAMPLING_BOUNDS),
            normalize_action=lambda a: np.clip(a / OGBENCH_ACTION_RANGE, -1.0, 1.0),
        ))
        kwargs = {'env': shim, 'segment_dt': self.config.segment_dt,
                  'noise': self.config.noise, 'noise_smoothing': self.config.noise_smoothing}
        if scene == 'scene':  # OGBench's scene presses buttons with the gripper's fingers
            self._oracles = {'cube': CubePlanOracle(**kwargs),
                             'button': ButtonPlanOracle(**kwargs),
                             'drawer': DrawerPlanOracle(**kwargs),
                             'window': WindowPlanOracle(**kwargs)}
        elif self.num_cubes:
            self._oracles = {'cube': CubePlanOracle(**kwargs)}
        else:
            self._oracles = {'button': ButtonPlanOracle(gripper_always_closed=True, **kwargs)}
        self.subtask = next(iter(self._oracles))
        self._steps = 0
        self._planned = False
        self._p_stack = 0.0
        self._target: dict = {}
        self.target_block = -1
        self.target_pos = np.zeros(3)
        self.finished: list[tuple[str, bool]] = []

    @property
    def _oracle(self):
        return self._oracles[self.subtask]

    def reset(self, rng: np.random.Generator) -> None:
        '''Start a new episode: forget the plan, draw this episode's stacking probability.'''
        self._steps = 0
        self._planned = False
        self.finished = []
        # OGBench: no stacking with one cube, p_stack ~ U(0, 0.25) per episode with two.
        self._p_stack = 0.0 if self.num_cubes == 1 else float(rng.uniform(0.0, 0.25))

    def _new_target(self, info: dict, rng: np.random.Generator) -> None:
        '''CubeEnv / PuzzleEnv / SceneEnv.set_new_target, from the observed state.

        Sets `subtask` and `_target`, the target keys of the info the subtask's oracle reads.
        '''
        if self.scene == 'scene':
            self._new_scene_target(info, rng)
            return
        if not self.num_cubes:
            self.target_block = int(rng.integers(PUZZLE_SIZE * PUZZLE_SIZE))  # a button
            self.target_pos = info[f'privileged/button_{self.target_block}_top_pos']
            self._target = {
                'privileged/target_button': self.target_block,
                'privileged/target_button_state': 1 - int(
                    info[f'privileged/button_{self.target_block}_state'][0]),
                'privileged/target_button_top_pos': self.target_pos}
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
        self._set_cube_target(block, pos, float(rng.uniform(0.0, 2.0 * np.pi)))

    def _set_cube_target(self, block: int, pos: np.ndarray, yaw: float) -> None:
        self.subtask = 'cube'
        self.target_block = block
        self.target_pos = pos
        self._target = {'privileged/target_block': block,
                        'privileged/target_block_pos': pos,
                        'privileged/target_block_yaw': np.array([yaw])}

    def _new_scene_target(self, info: dict, rng: np.random.Generator) -> None:
        '''SceneEnv.set_new_target (one cube, so no stacking), from the observed state.'''
        cube = info['privileged/block_0_pos']
        drawer = float(info['privileged/drawer_pos'][0])
        window = float(info['privileged/window_pos'][0])
        locks = info['button_states'] == 0  # button 0 locks the drawer, button 1 the window
        weights = np.array([
            0.0 if _in_drawer(cube, info['privileged/drawer_handle_pos']) else 1.0,
            1.0,
            SCENE_LOCKED_WEIGHT if locks[0] else 1.0,
            SCENE_LOCKED_WEIGHT if locks[1] else 1.0])
        subtask = SUBTASKS[int(rng.choice(len(SUBTASKS), p=weights / weights.sum()))]
        if subtask == 'cube':
            if drawer < -0.12 and rng.uniform() < SCENE_P_PUT_IN_DRAWER:  # into the drawer
                pos = SCENE_DRAWER_CENTER.copy()
                pos[:2] += rng.uniform(-0.005, 0.005, size=2)
            else:
                pos = np.array([*rng.uniform(*SCENE_TARGET_SAMPLING_BOUNDS), 0.02])
            self._set_cube_target(0, pos, float(rng.uniform(0.0, 2.0 * np.pi)))
            return
        self.subtask = subtask
        if subtask == 'button':
            button = int(rng.integers(2))
            self.target_block = button
            self.target_pos = SCENE_BUTTON_TOPS[button].copy()
            self._target = {'privileged/target_button': button,
                            'privileged/target_button_state': int(locks[button]),  # toggled
                            'privileged/target_button_top_pos': self.target_pos}
        elif subtask == 'drawer':  # closed (>= -8 cm) -> open it; open -> close it
            target = -0.16 if drawer >= -0.08 else 0.0
            self.target_pos = drawer_handle_pos(target) + [0.0, 0.0, SCENE_TARGET_SITE_DZ]
            self._target = {'privileged/target_drawer_pos': np.array([target]),
                            'privileged/target_drawer_handle_pos': self.target_pos}
        else:  # closed (<= 10 cm) -> open it; open -> close it
            target = 0.2 if window <= 0.1 else 0.0
            self.target_pos = window_handle_pos(target) + [0.0, 0.0, SCENE_TARGET_SITE_DZ]
            self._target = {'privileged/target_window_pos': np.array([target]),
                            'privileged/target_window_handle_pos': self.target_pos}

    def _target_reached(self, info: dict) -> bool:
        '''SceneEnv._compute_successes for the subtask under way (cube: the target cube).'''
        t = self._target
        if self.subtask == 'cube':
            block = info[f'privileged/block_{self.target_block}_pos']
            return bool(np.linalg.norm(block - t['privileged/target_block_pos'])
                        <= SCENE_SUCCESS_TOLERANCE)
        if self.subtask == 'button':
            state = info[f'privileged/button_{self.target_block}_state'][0]
            return bool(state == t['privileged/target_button_state'])
        name = self.subtask
        return bool(abs(info[f'privileged/{name}_pos'][0] - t[f'privileged/target_{name}_pos'][0])
                    <= SCENE_SUCCESS_TOLERANCE)

    def act(self, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        '''One control step: the state vector now -> the (5,) action to send.'''
        info = decode_scene(self.scene, state)
        info['time'] = np.array([self._steps * self.scale.period_s])
        if not self._planned or self._oracle.done:
            if self._planned:
                self.finished.append((self.subtask, self._target_reached(info)))
            self._new_target(info, rng)
            info.update(self._target)
            with _global_rng_from(rng):
                self._oracle.reset(None, info)
            self._planned = True
        og = self._oracle.select_action(None, info)
        self._steps += 1
        return ogbench_to_action(og, float(info['proprio/gripper_opening'][0]))


@dataclass(frozen=True)
class ReachOperatorConfig:
    '''Recipe of the reach operator (ours; OGBench has no reaching data).'''

    bounds: tuple[tuple[float, float, float], tuple[float, float, float]] = (
        (0.25, -0.35, 0.20), (0.6, 0.35, 0.35))
    '''Box the targets are drawn from, metres: OGBench's arm sampling box, which is where
    `Scene.load_reach_task` draws reach goals.'''
    gain: float = 0.5
    '''Proportional gain: each step covers this fraction of the remaining distance (up to
    the segment's speed cap).'''
    speed_range: tuple[float, float] = (0.3, 1.0)
    '''Speed cap of a segment, drawn uniformly, as a fraction of the full action scale.'''
    arrive_m: float = 0.02
    '''Within this distance of the target the operator counts it as reached and lingers.'''
    dwell_steps: tuple[int, int] = (5, 20)
    '''Steps spent lingering at a reached target (drawn in [lo, hi]).'''
    max_segment_steps: int = 60
    '''A target not reached after this many steps is given up for the next one.'''
    noise: float = 0.1
    '''Action noise (fraction of the action scale), temporally smoothed like play noise.'''
    noise_smoothing: float = 0.7
    '''AR(1) coefficient of the noise (0: white).'''


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2.0 * np.pi) - np.pi)


class ReachOperator:
    '''A scripted operator that reaches: open gripper, random targets in the workspace.

    Same interface as `PlayOperator` (reset(rng), act(state, rng) -> (5,) action in our
    convention) and, like it, observes only the OGBench state vector (its proprioceptive
    part: effector position and yaw). Each target is a point of `config.bounds` and a yaw in
    [-pi, pi); the operator moves there with a capped proportional controller plus smoothed
    noise, lingers `dwell_steps` once within `arrive_m`, then draws the next target.
    '''

    def __init__(self, scene: str, scale: ActionScale | None = None,
                 config: ReachOperatorConfig | None = None) -> None:
        if scene not in OPERATED_SCENES:
            raise ValueError(f'the scripted reach operator drives {sorted(OPERATED_SCENES)}, '
                             f'not {scene!r}')
        self.scene = scene
        self.scale = scale or ActionScale()
        self.config = config or ReachOperatorConfig()
        self.target_pos = np.zeros(3)
        self.target_yaw = 0.0
        self.reached_targets = 0
        self._speed = 1.0
        self._segment_steps = 0
        self._dwell_left = -1  # -1: travelling; >= 0: lingering
        self._noise = np.zeros(4)
        self._planned = False

    def reset(self, rng: np.random.Generator) -> None:
        '''Start a new episode: a new target on the first step.'''
        self._planned = False
        self._noise = np.zeros(4)
        self.reached_targets = 0

    def _new_target(self, rng: np.random.Generator) -> None:
        low, high = np.asarray(self.config.bounds, dtype=np.float64)
        self.target_pos = rng.uniform(low, high)
        self.target_yaw = float(rng.uniform(-np.pi, np.pi))
        self._speed = float(rng.uniform(*self.config.speed_range))
        self._segment_steps = 0
        self._dwell_left = -1
        self._planned = True

    def act(self, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        '''One control step: the state vector now -> the (5,) action to send.'''
        info = decode_state(np.asarray(state)[:PROPRIO_DIM], 0)
        pos = info['proprio/effector_pos']
        yaw = float(info['proprio/effector_yaw'][0])
        cfg = self.config
        if not self._planned or self._dwell_left == 0 \
                or self._segment_steps >= cfg.max_segment_steps:
            self._new_target(rng)
        self._segment_steps += 1
        error = self.target_pos - pos
        if self._dwell_left < 0 and np.linalg.norm(error) <= cfg.arrive_m:
            lo, hi = cfg.dwell_steps
            self._dwell_left = int(rng.integers(lo, hi + 1))
            self.reached_targets += 1
        if self._dwell_left > 0:
            self._dwell_left -= 1
        move = np.zeros(4)
        move[:3] = cfg.gain * error / self.scale.max_step_m
        move[3] = cfg.gain * _wrap(self.target_yaw - yaw) / self.scale.max_yaw_step_rad
        move = np.clip(move, -self._speed, self._speed)
        self._noise = cfg.noise_smoothing * self._noise + np.sqrt(
            1.0 - cfg.noise_smoothing ** 2) * rng.normal(0.0, cfg.noise, size=4)
        action = np.clip(move + self._noise, -1.0, 1.0)
        return np.array([*action, -1.0], dtype=np.float32)  # gripper open throughout


def make_operator(kind: str, scene: str, scale: ActionScale | None = None):
    '''The scripted operator `kind` (one of OPERATORS) for `scene`.'''
    if kind == 'play':
        return PlayOperator(scene, scale)
    if kind == 'reach':
        return ReachOperator(scene, scale)
    raise ValueError(f'operator must be one of {OPERATORS}, got {kind!r}')
