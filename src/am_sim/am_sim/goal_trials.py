'''`goal_trials`: give the policy node goals the way a user would, and score the outcome.

For each trial the simulator loads a task (a reach goal, or benchmark evaluation task k)
and returns its goal image; the image goes to the policy node's ~/reach_goal action and
the trial runs until the action ends (reached, gave up, timed out). The simulator's own
status says whether the goal is reached: for reach goals, the gripper within
`success_radius_m` of the goal position when the trial ends, with "touched at any time"
beside it. With `policy_action` empty nobody moves the arm: the do-nothing baseline under
the same trials. Results go to a JSON file; a few trials keep their camera frames (npz)
for filmstrips.

    goal_trials --ros-args -p trials:=10 -p out:=runs/demo/ros_eval.json
'''

from dataclasses import asdict, dataclass, field
import json
import math
from pathlib import Path
import threading
import time

from geometry_msgs.msg import PoseStamped
import numpy as np
import rclpy
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool

from am_learning.conventions import CAMERA_TOPIC, EE_POSE_TOPIC
from am_msgs.action import ReachGoal
from am_msgs.msg import SimStatus
from am_msgs.srv import LoadTask
from am_sim.params import declare_config


@dataclass(frozen=True)
class TrialsConfig:
    '''Parameters of `goal_trials` (same names as the ROS parameters).'''

    trials: int = 10
    '''Goals to give.'''
    kind: str = 'reach'
    '''reach (gripper goal poses) or eval (the benchmark's evaluation tasks, cycled).'''
    task_ids: tuple[int, ...] = (1, 2, 3, 4, 5)
    '''Evaluation tasks to cycle through when kind is eval.'''
    seed: int = 1000
    '''Trial i loads its task with seed + i (the same goals for every policy).'''
    policy_action: str = '/policy/reach_goal'
    '''The policy's ReachGoal action; empty = the do-nothing baseline.'''
    activate_service: str = '/policy/activate'
    '''Called once with true before the first goal (the policy starts inactive).'''
    load_task_service: str = '/sim_robot/load_task'
    status_topic: str = '/sim_robot/status'
    timeout_s: float = 10.0
    '''Seconds per trial (the ReachGoal timeout; the baseline waits as long).'''
    success_radius_m: float = 0.03
    '''Reach success: gripper within this distance of the goal position.'''
    filmstrip_trials: int = 2
    '''Trials whose camera frames are saved for filmstrips.'''
    out: str = 'goal_trials.json'
    '''Output JSON (frames go beside it as <stem>_trial<i>.npz).'''

    def problems(self) -> list[str]:
        out = []
        if self.trials < 1:
            out.append(f'trials must be >= 1, got {self.trials}')
        if self.kind not in ('reach', 'eval'):
            out.append(f'kind must be reach or eval, got {self.kind!r}')
        if self.timeout_s <= 0:
            out.append(f'timeout_s must be > 0, got {self.timeout_s}')
        if self.success_radius_m <= 0:
            out.append(f'success_radius_m must be > 0, got {self.success_radius_m}')
        return out


DESCRIPTIONS = {
    'trials': 'Goals to give.',
    'kind': 'reach (gripper goal poses) or eval (the evaluation tasks, cycled).',
    'task_ids': 'Evaluation tasks to cycle through when kind is eval.',
    'seed': 'Trial i loads its task with seed + i (the same goals for every policy).',
    'policy_action': "The policy's ReachGoal action; empty = the do-nothing baseline.",
    'activate_service': 'Called once with true before the first goal.',
    'load_task_service': "The simulator's load_task service.",
    'status_topic': "The simulator's status topic.",
    'timeout_s': 'Seconds per trial.',
    'success_radius_m': 'Reach success: gripper within this distance of the goal.',
    'filmstrip_trials': 'Trials whose camera frames are saved for filmstrips.',
    'out': 'Output JSON; frames go beside it as <stem>_trial<i>.npz.',
}


@dataclass
class TrialResult:
    '''The outcome of one goal.'''

    trial: int
    task: str
    success: bool
    touched: bool
    final_distance_m: float
    min_distance_m: float
    ee_path_m: float
    '''Length of the end effector's path during the trial (did the arm move at all?).'''
    reason: str
    steps: int
    final_q: float
    duration_s: float


@dataclass
class TrialTracker:
    '''What the robot did during one trial (pure bookkeeping, unit tested).

    Reach distances come from the 20 Hz end-effector pose and the goal position the
    simulator returned; evaluation tasks use the simulator's own success test.
    '''

    goal_position: np.ndarray | None = None
    solved: bool = False
    ee_positions: list[np.ndarray] = field(default_factory=list)

    def on_status(self, task_solved: bool) -> None:
        self.solved = task_solved

    def on_ee(self, position: np.ndarray) -> None:
        self.ee_positions.append(np.asarray(position, dtype=np.float64))

    def distances(self) -> np.ndarray:
        if self.goal_position is None or not self.ee_positions:
            return np.zeros(0)
        return np.linalg.norm(np.stack(self.ee_positions) - self.goal_position, axis=1)

    def path_length(self) -> float:
        if len(self.ee_positions) < 2:
            return 0.0
        steps = np.diff(np.stack(self.ee_positions), axis=0)
        return float(np.linalg.norm(steps, axis=1).sum())

    def summary(self, kind: str, radius: float) -> tuple[bool, bool, float, float]:
        '''(success, touched, final distance, min distance).'''
        distances = self.distances()
        final = float(distances[-1]) if len(distances) else math.nan
        closest = float(distances.min()) if len(distances) else math.nan
        if kind == 'reach':
            return final <= radius, closest <= radius, final, closest
        return self.solved, self.solved, final, closest


def summarize(results: list[TrialResult]) -> dict:
    '''Success and touch rates in percent, and the mean final distance.'''
    n = len(results)
    finals = [r.final_distance_m for r in results if not math.isnan(r.final_distance_m)]
    return {
        'trials': n,
        'success_pct': 100.0 * sum(r.success for r in results) / n if n else 0.0,
        'touched_pct': 100.0 * sum(r.touched for r in results) / n if n else 0.0,
        'mean_final_distance_m': float(np.mean(finals)) if finals else math.nan,
        'mean_ee_path_m': float(np.mean([r.ee_path_m for r in results])) if n else 0.0,
    }


REASONS = {getattr(ReachGoal.Result, name): name.lower() for name in (
    'REACHED', 'Q_BELOW_FLOOR', 'TIMEOUT', 'CANCELLED', 'STOPPED', 'INVALID_GOAL',
    'NOT_ACTIVE')}


class GoalTrials(Node):
    '''Runs the trials from a worker thread; callbacks only record what arrives.'''

    def __init__(self) -> None:
        super().__init__('goal_trials')
        self.config = declare_config(self, TrialsConfig, DESCRIPTIONS)
        problems = self.config.problems()
        if problems:
            raise ValueError('; '.join(problems))
        group = ReentrantCallbackGroup()
        self._lock = threading.Lock()
        self._tracker = TrialTracker()
        self._frames: list[np.ndarray] | None = None
        self._load = self.create_client(LoadTask, self.config.load_task_service,
                                        callback_group=group)
        self._activate = self.create_client(SetBool, self.config.activate_service,
                                            callback_group=group)
        self._action = (ActionClient(self, ReachGoal, self.config.policy_action,
                                     callback_group=group)
                        if self.config.policy_action else None)
        self.create_subscription(SimStatus, self.config.status_topic, self._on_status, 10,
                                 callback_group=group)
        self.create_subscription(PoseStamped, EE_POSE_TOPIC, self._on_ee, 10,
                                 callback_group=group)
        self.create_subscription(Image, CAMERA_TOPIC, self._on_image,
                                 qos_profile_sensor_data, callback_group=group)
        self.results: list[TrialResult] = []

    # --- callbacks: record only ------------------------------------------------------------
    def _on_status(self, msg: SimStatus) -> None:
        with self._lock:
            self._tracker.on_status(bool(msg.task_solved))

    def _on_ee(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        with self._lock:
            self._tracker.on_ee(np.array([p.x, p.y, p.z]))

    def _on_image(self, msg: Image) -> None:
        with self._lock:
            if self._frames is not None and msg.encoding == 'rgb8':
                frame = np.frombuffer(bytes(msg.data), np.uint8)
                self._frames.append(frame.reshape(msg.height, msg.step)[:, :msg.width * 3]
                                    .reshape(msg.height, msg.width, 3).copy())

    # --- the trials --------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.config
        if not self._load.wait_for_service(timeout_sec=30.0):
            raise RuntimeError(f'{cfg.load_task_service} is not available: is sim_robot up?')
        if self._action is not None:
            if not self._activate.wait_for_service(timeout_sec=60.0):
                raise RuntimeError(f'{cfg.activate_service} is not available: is the policy '
                                   'node up?')
            self._call(self._activate, SetBool.Request(data=True))
            if not self._action.wait_for_server(timeout_sec=30.0):
                raise RuntimeError(f'{cfg.policy_action} is not available')
        out = Path(cfg.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for i in range(cfg.trials):
            result = self._trial(i, out)
            self.results.append(result)
            self.get_logger().info(
                f'trial {i + 1}/{cfg.trials} {result.task}: '
                f'{"success" if result.success else "failure"} ({result.reason}, final '
                f'{result.final_distance_m * 100:.1f} cm, closest '
                f'{result.min_distance_m * 100:.1f} cm, path {result.ee_path_m:.2f} m)')
        report = {'config': asdict(cfg), 'summary': summarize(self.results),
                  'trials': [asdict(r) for r in self.results]}
        out.write_text(json.dumps(report, indent=2))
        return report

    def _trial(self, i: int, out: Path) -> TrialResult:
        cfg = self.config
        request = LoadTask.Request(use_seed=True, seed=cfg.seed + i)
        if cfg.kind == 'reach':
            request.kind, task = LoadTask.Request.KIND_REACH, 'reach'
        else:
            request.kind = LoadTask.Request.KIND_EVAL
            request.task_id = cfg.task_ids[i % len(cfg.task_ids)]
            task = f'task{request.task_id}'
        loaded = self._call(self._load, request)
        if not loaded.success:
            raise RuntimeError(f'load_task failed: {loaded.message}')
        time.sleep(0.3)  # let the status of the new task arrive
        with self._lock:
            goal_position = (np.array(loaded.goal_position, dtype=np.float64)
                             if cfg.kind == 'reach' else None)
            self._tracker = TrialTracker(goal_position=goal_position)
            self._frames = [] if i < cfg.filmstrip_trials else None
        start = time.monotonic()
        reason, steps, final_q = 'baseline', 0, math.nan
        if self._action is None:
            time.sleep(cfg.timeout_s)
        else:
            goal = ReachGoal.Goal(goal_image=loaded.goal_image, timeout_s=float(cfg.timeout_s))
            handle = self._wait(self._action.send_goal_async(goal), 10.0)
            if not handle.accepted:
                reason = 'rejected'
            else:
                result = self._wait(handle.get_result_async(), cfg.timeout_s + 15.0).result
                reason = REASONS.get(result.reason, str(result.reason))
                steps, final_q = int(result.steps), float(result.final_q)
        time.sleep(0.3)  # the status after the last command
        with self._lock:
            tracker, frames, self._frames = self._tracker, self._frames, None
        success, touched, final, closest = tracker.summary(cfg.kind, cfg.success_radius_m)
        if frames:
            goal = loaded.goal_image
            goal_rgb = np.frombuffer(bytes(goal.data), np.uint8).reshape(
                goal.height, goal.step)[:, :goal.width * 3].reshape(goal.height, goal.width, 3)
            np.savez_compressed(out.with_name(f'{out.stem}_trial{i}.npz'),
                                goal=goal_rgb, frames=np.stack(frames))
        return TrialResult(i, task, bool(success), bool(touched), float(final), float(closest),
                           tracker.path_length(), reason, steps, final_q,
                           time.monotonic() - start)

    def _call(self, client, request):
        return self._wait(client.call_async(request), 30.0)

    @staticmethod
    def _wait(future, timeout: float):
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            raise TimeoutError(f'no answer within {timeout:.0f} s')
        return future.result()


def main(args=None) -> None:
    rclpy.init(args=args)
    code = 0
    try:
        node = GoalTrials()
    except ValueError as error:
        rclpy.logging.get_logger('goal_trials').error(str(error))
        rclpy.try_shutdown()
        raise SystemExit(2) from None
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        report = node.run()
        summary = report['summary']
        node.get_logger().info(
            f'{summary["trials"]} trials: success {summary["success_pct"]:.0f}%, touched '
            f'{summary["touched_pct"]:.0f}% -> {node.config.out}')
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 130
    except (RuntimeError, TimeoutError) as error:
        node.get_logger().error(str(error))
        code = 1
    finally:
        # Let the spinning thread leave rcl before the node and context go: on busy cores a
        # 2 s shutdown returned with it still waiting, and the process aborted on exit
        # ("terminate called without an active exception", code -6) after its report.
        executor.shutdown(timeout_sec=10.0)
        spinner.join(timeout=10.0)
        node.destroy_node()
        rclpy.try_shutdown()
    raise SystemExit(code)


if __name__ == '__main__':
    main()
