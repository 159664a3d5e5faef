'''In-process evaluation: greedy rollouts towards goal images in the simulated scene.

The scene comes from am_learning.envs.make_scene, the same function am_sim uses, so the
policy sees the same rendering it would see through ROS. Tasks: the benchmark's evaluation
tasks (OGBench's five per scene, success is OGBench's) and reach tasks (the goal image shows
the gripper at a random pose; success within 3 cm). How a rollout ends (`stop`): `success`
ends it the moment the scene reports success (an oracle stop: success = touched); `policy`
ends it by the policy's own rule, the policy node's (`StopRule`: Q held high = reached, Q
held low = give up; GCBC has no Q and runs to the time limit); `time` runs every rollout to
`max_steps`. Success is the scene's verdict when the rollout ends, "touched" whether it was
ever reached. In tasks that move cubes, each rollout also says how far it got with the cubes
the task moves (`CubeStages`): the gripper near one, one lifted, and (success) placed.
Any object with the Scene methods used here (reset/load_*_task, step, render, proprio,
state, goal_state, task_solved, goal_distance, ee_position, ee_yaw, cube_positions,
cube_yaws, cube_targets) can stand in for a scene, e.g. am_learning.testing.PointWorld.
'''

from dataclasses import asdict, dataclass, field
import math
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from am_learning.conventions import GRIPPER_INDEX
from am_learning.policy import GoalReachingPolicy, resize_image


class SceneLike(Protocol):
    def step(self, action: np.ndarray) -> None: ...
    def render(self) -> np.ndarray: ...
    def proprio(self) -> np.ndarray: ...
    def state(self) -> np.ndarray: ...
    def goal_state(self) -> np.ndarray | None: ...
    def task_solved(self) -> bool: ...
    def goal_distance(self) -> float: ...
    def goal_error_in_view(self) -> tuple[float, float]: ...
    def ee_position(self) -> np.ndarray: ...
    def ee_yaw(self) -> float: ...
    def cube_positions(self) -> np.ndarray: ...
    def cube_yaws(self) -> np.ndarray: ...
    def cube_targets(self) -> np.ndarray: ...


STOPS = ('success', 'policy', 'time')
Stop = Literal['success', 'policy', 'time']


@dataclass(frozen=True)
class StopRule:
    '''The policy's own end of a goal: the policy node's rule, with its defaults
    (am_bringup/config/policy.yaml: reach_threshold, reach_steps, q_floor, q_floor_steps).'''

    reach_threshold: float = 0.9
    '''Q at or above this for `reach_steps` consecutive steps: the policy says reached.'''
    reach_steps: int = 3
    q_floor: float = 0.02
    '''Q below this for `q_floor_steps` consecutive steps: the policy gives up.'''
    q_floor_steps: int = 40

    def verdict(self, qs: list[float]) -> str:
        '''`reached`, `q_floor`, or '' (go on) after the Q values of the steps so far.'''
        if len(qs) >= self.reach_steps and all(
                q >= self.reach_threshold for q in qs[-self.reach_steps:]):
            return 'reached'
        if len(qs) >= self.q_floor_steps and all(
                q < self.q_floor for q in qs[-self.q_floor_steps:]):
            return 'q_floor'
        return ''  # nan (GCBC) compares false both ways: only the time limit ends it


CUBE_PLACED_M = 0.04
'''OGBench's tolerance: a cube within this of its target is placed.'''
CUBE_NEAR_M = 0.03
'''The gripper (pinch site) within this of a cube's centre: close enough to grasp it.'''
CUBE_LIFTED_M = 0.03
'''A cube this far above where it started has been lifted (cubes are 4 cm wide).'''


class CubeStages:
    '''How far a rollout got with the cubes its task moves (those not yet at their targets
    when it began): the gripper near one, one lifted; placing them is the task's success.
    And where the gripper was when the policy first closed it (a grasp attempt): beside or
    above the nearest of those cubes.'''

    def __init__(self, scene: SceneLike) -> None:
        self.targets = scene.cube_targets()
        start = self._positions(scene)
        self.moving = np.linalg.norm(start - self.targets, axis=1) > CUBE_PLACED_M
        self.start_height = start[:, 2]
        self.near = self.lifted = False
        self.grasp_attempts = 0
        self.first_grasp_offset = np.full(3, np.nan)  # gripper - nearest cube, metres
        self.first_grasp_yaw = float('nan')  # gripper yaw off the cube's faces, radians
        self._closed = True  # closing from the first step on is not a grasp attempt

    @property
    def count(self) -> int:
        return int(self.moving.sum())

    def command(self, scene: SceneLike, action: np.ndarray) -> None:
        '''Before the scene steps `action`: count a grasp attempt when its gripper target turns
        from open to closed (am_learning.conventions: > 0 closes).'''
        closing = bool(action[GRIPPER_INDEX] > 0)
        if self.count and closing and not self._closed:
            self.grasp_attempts += 1
            if self.grasp_attempts == 1:
                offsets = scene.ee_position() - self._positions(scene)
                nearest = np.argmin(np.where(self.moving, np.linalg.norm(offsets, axis=1),
                                             np.inf))
                self.first_grasp_offset = offsets[nearest]
                turn = scene.ee_yaw() - scene.cube_yaws()[nearest]
                quarter = np.pi / 2  # a cube looks the same turned by 90 degrees
                self.first_grasp_yaw = float(abs((turn + quarter / 2) % quarter - quarter / 2))
        self._closed = closing

    def _positions(self, scene: SceneLike) -> np.ndarray:
        '''(N, 3) the positions of the cubes that have targets.'''
        return scene.cube_positions()[:len(self.targets)]

    def observe(self, scene: SceneLike) -> None:
        if not self.count:
            return
        cubes = self._positions(scene)[self.moving]
        gaps = np.linalg.norm(cubes - scene.ee_position(), axis=1)
        self.near = self.near or bool((gaps <= CUBE_NEAR_M).any())
        rise = cubes[:, 2] - self.start_height[self.moving]
        self.lifted = self.lifted or bool((rise >= CUBE_LIFTED_M).any())

    def goal_distance(self, scene: SceneLike) -> float:
        '''The farthest moved cube's distance from its target, metres (nan: none to move).'''
        if not self.count:
            return float('nan')
        cubes = self._positions(scene)[self.moving]
        return float(np.linalg.norm(cubes - self.targets[self.moving], axis=1).max())


@dataclass
class RolloutResult:
    '''One rollout towards one goal.'''

    task: str
    success: bool
    steps: int
    final_q: float
    mean_q: float
    goal_distance: float
    '''Reach tasks: metres from the gripper to the goal when the rollout ended (nan else).'''
    touched: bool = False
    '''The scene reported success at some step (whether or not it held to the end).'''
    min_goal_distance: float = float('nan')
    '''Reach tasks: the closest the gripper came to the goal, metres.'''
    start_goal_distance: float = float('nan')
    '''Reach tasks: metres to the goal before the first action (what doing nothing gives).'''
    end_reason: str = ''
    '''success (oracle stop), reached / q_floor (the policy's stop rule) or time_limit.'''
    error_along_view: float = float('nan')
    '''Reach tasks: the end error along the camera's line of sight through the goal, metres
    (positive: beyond the goal); the depth a single camera shows least.'''
    error_across_view: float = float('nan')
    '''Reach tasks: the end error across that line of sight, metres.'''
    cubes_to_move: int = 0
    '''Cube tasks: cubes away from their targets when the rollout began (`CubeStages`).'''
    cube_near: bool = False
    '''The gripper came within `CUBE_NEAR_M` of a cube to move.'''
    cube_lifted: bool = False
    '''A cube to move rose `CUBE_LIFTED_M` above where it started.'''
    cube_goal_distance: float = float('nan')
    '''At the end, the farthest of those cubes from its target, metres.'''
    grasp_attempts: int = 0
    '''Times the policy's gripper target turned from open to closed.'''
    grasp_offset_xy: float = float('nan')
    '''At the first attempt: the gripper's horizontal distance from the nearest cube to move,
    metres.'''
    grasp_offset_z: float = float('nan')
    '''At the first attempt: the gripper's height above that cube's centre, metres.'''
    grasp_yaw_error_deg: float = float('nan')
    '''At the first attempt: how far the gripper's yaw was turned from that cube's faces,
    degrees (0 .. 45).'''
    frames: list[np.ndarray] = field(default_factory=list, repr=False)
    goal_image: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop('frames')
        d.pop('goal_image')
        return d


def rollout(policy: GoalReachingPolicy, scene: SceneLike, goal_image: np.ndarray, *,
            task: str, max_steps: int, keep_frames: bool = False,
            stop_on_success: bool = True, stop: Stop | None = None,
            stop_rule: StopRule | None = None) -> RolloutResult:
    '''Act greedily from the scene's current state towards its loaded goal.

    stop: how the rollout ends (module docstring); None keeps the older switch
    `stop_on_success` (True = `success`, False = `time`).
    '''
    if stop is None:
        stop = 'success' if stop_on_success else 'time'
    if stop not in STOPS:
        raise ValueError(f'stop must be one of {STOPS}, got {stop!r}')
    rule = stop_rule or StopRule()
    if policy.uses_images:
        policy.set_goal(goal_image)
    else:
        goal_state = scene.goal_state()
        if goal_state is None:
            raise ValueError(f'{task}: a state policy needs the goal state of the task')
        policy.set_goal(goal_state)
    frames: list[np.ndarray] = []
    qs: list[float] = []
    success = touched = False
    start_distance = float(scene.goal_distance())
    distances = [start_distance]
    cubes = CubeStages(scene)
    steps = 0
    end_reason = 'time_limit'
    while steps < max_steps:
        image = scene.render() if (policy.uses_images or keep_frames) else None
        obs = image if policy.uses_images else scene.state()
        step = policy.act(obs, scene.proprio())
        qs.append(step.q_value)
        if stop == 'policy':
            verdict = rule.verdict(qs)
            if verdict:  # the policy ends the goal instead of sending this step's command
                end_reason = verdict
                break
        if keep_frames:
            frames.append(image)
        cubes.command(scene, step.action)
        scene.step(step.action)
        steps += 1
        success = bool(scene.task_solved())
        touched = touched or success
        distances.append(float(scene.goal_distance()))
        cubes.observe(scene)
        if success and stop == 'success':
            end_reason = 'success'
            break
    if keep_frames:
        frames.append(scene.render())
    finite = [d for d in distances if math.isfinite(d)]
    along, across = scene.goal_error_in_view()
    return RolloutResult(task=task, success=success, steps=steps,
                         final_q=qs[-1] if qs else float('nan'),
                         mean_q=float(np.mean(qs)) if qs else float('nan'),
                         goal_distance=distances[-1], touched=touched,
                         min_goal_distance=min(finite) if finite else float('nan'),
                         start_goal_distance=start_distance, end_reason=end_reason,
                         error_along_view=along, error_across_view=across,
                         cubes_to_move=cubes.count, cube_near=cubes.near,
                         cube_lifted=cubes.lifted, cube_goal_distance=cubes.goal_distance(scene),
                         grasp_attempts=cubes.grasp_attempts,
                         grasp_offset_xy=float(np.linalg.norm(cubes.first_grasp_offset[:2])),
                         grasp_offset_z=float(cubes.first_grasp_offset[2]),
                         grasp_yaw_error_deg=math.degrees(cubes.first_grasp_yaw),
                         frames=frames, goal_image=goal_image if keep_frames else None)


def evaluate(policy: GoalReachingPolicy, scene: Any, *, eval_tasks: list[int],
             reach_tasks: int, episodes_per_task: int = 1, max_steps: int = 200,
             seed: int = 0, filmstrips: int = 4, filmstrip_path: str | Path | None = None,
             progress: bool = False, stop: Stop = 'success',
             stop_rule: StopRule | None = None) -> dict[str, Any]:
    '''Success per task (percent) over rollouts on eval tasks and reach tasks.

    stop, stop_rule: how each rollout ends (see `rollout`); the report says which.
    '''
    jobs: list[tuple[str, int | None, int]] = []
    for k in eval_tasks:
        jobs += [(f'task{k}', k, seed + 1000 * k + e) for e in range(episodes_per_task)]
    jobs += [('reach', None, seed + 100_000 + e) for e in range(reach_tasks)]
    results: list[RolloutResult] = []
    iterator = jobs
    if progress:
        from tqdm import tqdm
        iterator = tqdm(jobs, desc='eval', unit='rollout', dynamic_ncols=True)
    for name, task_id, job_seed in iterator:
        if task_id is not None:
            goal = scene.load_eval_task(task_id, seed=job_seed)
        else:
            goal = scene.load_reach_task(seed=job_seed)
        results.append(rollout(policy, scene, goal, task=name, max_steps=max_steps,
                               keep_frames=len(results) < filmstrips, stop=stop,
                               stop_rule=stop_rule))
    per_task: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.task for r in results):
        rs = [r for r in results if r.task == name]
        per_task[name] = {
            'success_pct': 100.0 * float(np.mean([r.success for r in rs])),
            'touched_pct': 100.0 * float(np.mean([r.touched for r in rs])),
            'rollouts': len(rs),
            'mean_steps': float(np.mean([r.steps for r in rs])),
            'mean_final_q': float(np.nanmean([r.final_q for r in rs]))
            if any(np.isfinite(r.final_q) for r in rs) else None,
            'end_reasons': {k: sum(r.end_reason == k for r in rs)
                            for k in sorted({r.end_reason for r in rs})},
        }
        for key, attr in (('final', 'goal_distance'), ('min', 'min_goal_distance'),
                          ('start', 'start_goal_distance'),
                          ('across_view', 'error_across_view')):
            values = [getattr(r, attr) for r in rs if math.isfinite(getattr(r, attr))]
            if values:
                per_task[name][f'{key}_distance_m'] = distance_stats(values)
        if any(r.cubes_to_move for r in rs):
            per_task[name]['cube_stages_pct'] = cube_stages_pct(rs)
            per_task[name]['final_cube_distance_m'] = distance_stats(
                [r.cube_goal_distance for r in rs if r.cubes_to_move])
        along = [r.error_along_view for r in rs if math.isfinite(r.error_along_view)]
        if along:  # signed: a mean far from 0 is a bias in depth
            per_task[name]['along_view_m'] = {'mean': float(np.mean(along)),
                                              'mean_abs': float(np.mean(np.abs(along)))}
    eval_rs = [r for r in results if r.task != 'reach']
    reach_rs = [r for r in results if r.task == 'reach']
    report: dict[str, Any] = {
        'success_pct': {
            'eval_tasks': 100.0 * float(np.mean([r.success for r in eval_rs]))
            if eval_rs else None,
            'reach': 100.0 * float(np.mean([r.success for r in reach_rs])) if reach_rs else None,
        },
        'touched_pct': {
            'eval_tasks': 100.0 * float(np.mean([r.touched for r in eval_rs]))
            if eval_rs else None,
            'reach': 100.0 * float(np.mean([r.touched for r in reach_rs])) if reach_rs else None,
        },
        'cube_stages_pct': cube_stages_pct(eval_rs),
        'per_task': per_task,
        'rollouts': len(results),
        'max_steps': max_steps,
        'stop': stop,
        'stop_rule': asdict(stop_rule or StopRule()) if stop == 'policy' else None,
        'rollout_details': [r.summary() for r in results],
    }
    if filmstrip_path is not None and any(r.frames for r in results):
        report['filmstrip'] = str(write_filmstrip([r for r in results if r.frames],
                                                  filmstrip_path))
    return report


def cube_stages_pct(results: list[RolloutResult]) -> dict[str, Any] | None:
    '''Of the rollouts with cubes to move: percent in which the gripper got near one, one was
    lifted, all were placed (success), and the policy closed the gripper at all; where the
    gripper was at that first grasp attempt (horizontal distance from the nearest cube to
    move: mean, median, p90; height above its centre and yaw off its faces: medians). None
    when no rollout had a cube to move.'''
    rs = [r for r in results if r.cubes_to_move]
    if not rs:
        return None
    stages: dict[str, Any] = {
        'near': 100.0 * float(np.mean([r.cube_near for r in rs])),
        'lifted': 100.0 * float(np.mean([r.cube_lifted for r in rs])),
        'placed': 100.0 * float(np.mean([r.success for r in rs])),
        'rollouts': len(rs),
        'attempted_grasp': 100.0 * float(np.mean([r.grasp_attempts > 0 for r in rs])),
    }
    tried = [r for r in rs if r.grasp_attempts]
    if tried:  # where the gripper was when it first closed, metres
        stages['first_grasp_offset_xy_m'] = distance_stats([r.grasp_offset_xy for r in tried])
        stages['first_grasp_offset_z_m'] = float(np.median([r.grasp_offset_z for r in tried]))
        stages['first_grasp_yaw_error_deg'] = float(
            np.median([r.grasp_yaw_error_deg for r in tried]))
    return stages


def distance_stats(values: list[float]) -> dict[str, float]:
    '''Mean, median and 90th percentile of distances (metres).'''
    v = np.asarray(values, dtype=np.float64)
    return {'mean': float(v.mean()), 'median': float(np.median(v)),
            'p90': float(np.percentile(v, 90))}


def write_filmstrip(results: list[RolloutResult], path: str | Path, *, columns: int = 8,
                    cell: int = 96) -> Path:
    '''PNG: one row per rollout: its goal image, a gap, then `columns` frames over time.'''
    import cv2

    rows = []
    for r in results:
        picks = np.linspace(0, len(r.frames) - 1, num=min(columns, len(r.frames))).round()
        tiles = [resize_image(r.frames[int(i)], cell) for i in picks]
        tiles += [np.full((cell, cell, 3), 255, np.uint8)] * (columns - len(tiles))
        goal = resize_image(r.goal_image, cell) if r.goal_image is not None else \
            np.zeros((cell, cell, 3), np.uint8)
        # A green or red bar under the goal marks success or failure.
        goal = goal.copy()
        goal[-6:] = (40, 200, 60) if r.success else (220, 40, 40)
        gap = np.full((cell, 8, 3), 255, np.uint8)
        rows.append(np.concatenate([goal, gap, *tiles], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    strip = np.concatenate(rows[:-1], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path}')
    return path
