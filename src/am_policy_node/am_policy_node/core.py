'''The policy node's logic without ROS: inputs, goals, safety state, runs, control steps.

Everything the node does between a message arriving and a command leaving is here, so it
is tested by calling methods with arrays and times. The node only converts messages and
binds outputs (commander, publishers) to what these methods return.

States: the core starts inactive and outputs nothing until activated. While active, a
*run* pursues the current goal: every control step takes the newest camera image and
proprioception, asks the policy for an action (CEM over Q), limits it for safety and
returns the command. A run ends as REACHED (Q at/above reach_threshold for reach_steps),
Q_BELOW_FLOOR (below q_floor for q_floor_steps), TIMEOUT, CANCELLED or STOPPED (emergency
stop, deactivation, or preempted by a newer goal); its end always produces a stop. A stale
input (camera, joint states, end-effector pose when required) yields zero commands on the
control timer until it is fresh again. The latched emergency stop holds zero commands
until it is released.
'''

from dataclasses import dataclass, field
import enum
import math
import threading
from typing import Protocol

import numpy as np

from am_learning.conventions import ActionScale, action_to_twist
from am_policy_node.config import PolicyNodeConfig
from am_policy_node.safety import ArmCommand, Freshness, limit_command


class Outcome(enum.IntEnum):
    '''How a goal ends; values equal am_msgs/action/ReachGoal's result constants.'''

    REACHED = 0
    Q_BELOW_FLOOR = 1
    TIMEOUT = 2
    CANCELLED = 3
    STOPPED = 4
    INVALID_GOAL = 5
    NOT_ACTIVE = 6


class StopReason(enum.IntEnum):
    '''Values equal am_msgs/msg/PolicyStatus's STOP_* constants.'''

    NONE = 0
    REACHED = 1
    Q_BELOW_FLOOR = 2
    TIMEOUT = 3
    CANCELLED = 4
    EMERGENCY = 5
    DEACTIVATED = 6
    STALE_INPUT = 7


class Policy(Protocol):
    '''What the core needs of am_learning.policy.GoalReachingPolicy.'''

    image_size: int
    proprio_dim: int

    def set_goal(self, goal: np.ndarray) -> None: ...

    def act(self, observation: np.ndarray, proprio: np.ndarray): ...


@dataclass
class Run:
    '''One goal being pursued; `done` is set when it ended (outcome then holds why).'''

    run_id: int
    source: str
    started_s: float
    timeout_s: float
    steps: int = 0
    images: int = 0
    '''Camera images received while the run was active.'''
    above: int = 0
    below: int = 0
    last_q: float = math.nan
    outcome: Outcome | None = None
    message: str = ''
    done: threading.Event = field(default_factory=threading.Event)

    def elapsed(self, now_s: float) -> float:
        return now_s - self.started_s


@dataclass(frozen=True)
class StepResult:
    '''What one control step asks the node to do.'''

    command: ArmCommand | None = None
    '''Send this command (None: send nothing this step).'''
    stop: bool = False
    '''Stop the arm now (commander.stop(): a zero twist / abort the trajectory).'''
    q_value: float | None = None
    '''Q of the chosen action, when a decision was taken.'''
    finished: Run | None = None
    '''The run that ended in this step.'''
    limited: bool = False
    '''The safety limits changed the policy's command.'''


NOTHING = StepResult()


class PolicyCore:
    '''State machine and control step of the policy node (thread-safe).'''

    def __init__(self, config: PolicyNodeConfig, policy: Policy,
                 scale: ActionScale | None = None) -> None:
        config.validate()
        self._lock = threading.RLock()
        self.policy = policy
        self.scale = scale or ActionScale(control_rate_hz=config.control_rate_hz)
        self.config = config
        self.image: np.ndarray | None = None
        self.image_seq = 0
        self.image_received_s: float | None = None
        self.proprio: np.ndarray | None = None
        self.ee_position: np.ndarray | None = None
        self._image_age = Freshness(config.max_image_age_s)
        self._proprio_age = Freshness(config.max_joint_state_age_s)
        self._ee_age = Freshness(config.max_ee_pose_age_s)
        self.goal: np.ndarray | None = None
        self.goal_source = ''
        self.goal_version = 0
        self.goal_pending = False
        self.active = False
        self.estop = False
        self.run: Run | None = None
        self.last_run: Run | None = None
        self._next_run_id = 1
        self._last_decision_s = -math.inf
        self._decided_seq = 0
        self.last_q = math.nan
        self.last_stop_reason = StopReason.NONE
        self.message = 'inactive: call ~/activate to let the policy move the arm'
        self.stale = ''

    # --- configuration ---------------------------------------------------------------------
    def update_config(self, config: PolicyNodeConfig) -> None:
        '''Adopt new (already validated) runtime parameters.'''
        with self._lock:
            self.config = config
            self._image_age.max_age_s = config.max_image_age_s
            self._proprio_age.max_age_s = config.max_joint_state_age_s
            self._ee_age.max_age_s = config.max_ee_pose_age_s

    # --- inputs ----------------------------------------------------------------------------
    def on_image(self, rgb: np.ndarray, now_s: float) -> None:
        with self._lock:
            self.image = rgb
            self.image_seq += 1
            if self.run is not None:
                self.run.images += 1
            self.image_received_s = now_s
            self._image_age.mark(now_s)

    def on_joint_state(self, names: list[str], positions: list[float], now_s: float) -> str:
        '''Take the configured joints' positions; returns '' or what is missing.'''
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.config.joint_names if n not in index]
        if missing or len(positions) < len(names):
            return f'joint_states lacks {missing or "positions"}'
        proprio = np.array([positions[index[n]] for n in self.config.joint_names], np.float32)
        if not np.all(np.isfinite(proprio)):
            return 'joint_states has non-finite positions'
        with self._lock:
            self.proprio = proprio
            self._proprio_age.mark(now_s)
        return ''

    def on_ee_pose(self, position: np.ndarray, now_s: float) -> None:
        position = np.asarray(position, dtype=np.float64)
        if position.shape == (3,) and np.all(np.isfinite(position)):
            with self._lock:
                self.ee_position = position
                self._ee_age.mark(now_s)

    def image_age(self, now_s: float) -> float:
        return self._image_age.age(now_s)

    # --- goals -----------------------------------------------------------------------------
    def set_goal(self, rgb: np.ndarray, source: str, now_s: float,
                 start: bool = True) -> tuple[bool, str, StepResult]:
        '''Make `rgb` the goal. With `start`, pursue it now (if active) or once activated.

        Returns (accepted, message, step result: a stop when a running goal was preempted).
        A goal the policy refuses leaves the previous goal in place.
        '''
        with self._lock:
            try:
                self.policy.set_goal(rgb)
            except ValueError as exc:
                if self.goal is not None:
                    self.policy.set_goal(self.goal)
                self.message = f'goal from {source} rejected: {exc}'
                return False, self.message, NOTHING
            self.goal = rgb
            self.goal_source = source
            self.goal_version += 1
            result = NOTHING
            if self.run is not None:
                result = self._finish(Outcome.STOPPED, StopReason.CANCELLED,
                                      f'preempted by a new goal from {source}')
            self.goal_pending = start
            if start and self.active and not self.estop:
                self._start_run(source, self.config.goal_timeout_s, now_s)
                self.goal_pending = False
            h, w = rgb.shape[:2]
            self.message = (f'goal set from {source} ({w}x{h})'
                            + ('' if self.run or not start else ', waiting for ~/activate'))
            return True, self.message, result

    def capture_goal(self, now_s: float) -> tuple[bool, str]:
        '''The newest camera image becomes the goal (pursued at the next activation).'''
        with self._lock:
            if self.image is None:
                return False, 'no camera image received yet'
            if not self._image_age.fresh(now_s):
                return False, f'newest camera image is {self._image_age.age(now_s):.2f} s old'
            ok, message, _ = self.set_goal(self.image.copy(), 'capture', now_s, start=False)
            return ok, message

    def start_action_run(self, rgb: np.ndarray | None, timeout_s: float,
                         now_s: float) -> tuple[Run | None, Outcome | None, str, StepResult]:
        '''Start a run for an action goal (rgb None: the current goal).

        Returns (run, None, msg, step) or (None, outcome, msg, NOTHING) when it cannot start.
        '''
        with self._lock:
            if not self.active:
                return None, Outcome.NOT_ACTIVE, 'node is not active: call ~/activate', NOTHING
            if self.estop:
                return None, Outcome.STOPPED, 'emergency stop is engaged', NOTHING
            result = NOTHING
            if rgb is None:
                if self.goal is None:
                    return None, Outcome.INVALID_GOAL, 'empty goal image and no current goal', \
                        NOTHING
            else:
                ok, message, result = self.set_goal(rgb, 'action', now_s, start=False)
                if not ok:
                    return None, Outcome.INVALID_GOAL, message, NOTHING
            if self.run is not None:
                result = self._finish(Outcome.STOPPED, StopReason.CANCELLED,
                                      'preempted by a new action goal')
            self.goal_pending = False
            timeout = timeout_s if timeout_s > 0 else self.config.goal_timeout_s
            run = self._start_run('action', timeout, now_s)
            return run, None, 'running', result

    def cancel(self, run_id: int) -> StepResult:
        with self._lock:
            if self.run is None or self.run.run_id != run_id:
                return NOTHING
            return self._finish(Outcome.CANCELLED, StopReason.CANCELLED, 'cancelled')

    def _start_run(self, source: str, timeout_s: float, now_s: float) -> Run:
        run = Run(run_id=self._next_run_id, source=source, started_s=now_s, timeout_s=timeout_s)
        self._next_run_id += 1
        self.run = run
        self._last_decision_s = -math.inf
        self._decided_seq = self.image_seq
        return run

    def _finish(self, outcome: Outcome, reason: StopReason, message: str) -> StepResult:
        run = self.run
        assert run is not None
        run.outcome = outcome
        run.message = message
        self.run = None
        self.last_run = run
        self.last_stop_reason = reason
        self.message = f'goal ended: {outcome.name} ({message}) after {run.steps} steps'
        run.done.set()
        return StepResult(stop=True, finished=run)

    # --- safety state ----------------------------------------------------------------------
    def set_active(self, active: bool, now_s: float) -> tuple[str, StepResult]:
        with self._lock:
            if active == self.active:
                return f'already {"active" if active else "inactive"}', NOTHING
            self.active = active
            if not active:
                result = StepResult(stop=True)
                if self.run is not None:
                    result = self._finish(Outcome.STOPPED, StopReason.DEACTIVATED, 'deactivated')
                self.message = 'deactivated: sending no commands'
                return self.message, result
            self.message = 'activated'
            if self.goal is not None and self.goal_pending and not self.estop:
                self._start_run(self.goal_source, self.config.goal_timeout_s, now_s)
                self.goal_pending = False
                self.message = f'activated: pursuing the goal from {self.goal_source}'
            return self.message, NOTHING

    def set_emergency_stop(self, engaged: bool) -> tuple[str, StepResult]:
        with self._lock:
            if not engaged:
                if not self.estop:
                    return 'emergency stop was not engaged', NOTHING
                self.estop = False
                self.message = 'emergency stop released; send a goal to move again'
                return self.message, NOTHING
            self.estop = True
            result = StepResult(stop=True)
            if self.run is not None:
                result = self._finish(Outcome.STOPPED, StopReason.EMERGENCY, 'emergency stop')
            self.last_stop_reason = StopReason.EMERGENCY
            self.message = 'EMERGENCY STOP engaged: zero commands until it is released'
            return self.message, result

    # --- control ---------------------------------------------------------------------------
    def _stale_input(self, now_s: float) -> str:
        if not self._image_age.fresh(now_s):
            return f'camera image stale ({self._image_age.age(now_s):.2f} s old)'
        if self.policy.proprio_dim > 0 and not self._proprio_age.fresh(now_s):
            return f'joint states stale ({self._proprio_age.age(now_s):.2f} s old)'
        if self.config.require_ee_pose and not self._ee_age.fresh(now_s):
            return f'end-effector pose stale ({self._ee_age.age(now_s):.2f} s old)'
        return ''

    def step(self, now_s: float, on_timer: bool) -> StepResult:
        '''One control step, from the control timer (on_timer) or from a new image.'''
        with self._lock:
            if not self.active:
                return NOTHING
            if self.estop:
                return StepResult(command=ArmCommand.zero()) if on_timer else NOTHING
            run = self.run
            if run is None:
                return NOTHING
            if run.elapsed(now_s) > run.timeout_s:
                return self._finish(Outcome.TIMEOUT, StopReason.TIMEOUT,
                                    f'no success within {run.timeout_s:.1f} s')
            stale = self._stale_input(now_s)
            if stale:
                if stale != self.stale:
                    self.message = f'holding still: {stale}'
                self.stale = stale
                return StepResult(command=ArmCommand.zero()) if on_timer else NOTHING
            self.stale = ''
            decide_on_timer = self.config.trigger == 'timer'
            if on_timer != decide_on_timer:
                return NOTHING
            if not decide_on_timer and (
                    self.image_seq == self._decided_seq
                    or now_s - self._last_decision_s < 0.25 * self.config.period_s):
                return NOTHING
            return self._decide(run, now_s)

    def _decide(self, run: Run, now_s: float) -> StepResult:
        proprio = self.proprio if self.policy.proprio_dim > 0 else np.zeros(0, np.float32)
        decision = self.policy.act(self.image, proprio)
        self._last_decision_s = now_s
        self._decided_seq = self.image_seq
        q = float(decision.q_value)
        self.last_q = q
        run.last_q = q
        run.steps += 1
        cfg = self.config
        run.above = run.above + 1 if q >= cfg.reach_threshold else 0
        run.below = run.below + 1 if q < cfg.q_floor else 0
        if run.above >= cfg.reach_steps:
            done = self._finish(Outcome.REACHED, StopReason.REACHED,
                                f'Q {q:.3f} >= {cfg.reach_threshold} for {run.above} steps')
            return StepResult(stop=True, q_value=q, finished=done.finished)
        if run.below >= cfg.q_floor_steps:
            done = self._finish(Outcome.Q_BELOW_FLOOR, StopReason.Q_BELOW_FLOOR,
                                f'Q {q:.3f} < {cfg.q_floor} for {run.below} steps')
            return StepResult(stop=True, q_value=q, finished=done.finished)
        linear, yaw_rate, closure = action_to_twist(decision.action, self.scale)
        position = self.ee_position if self._ee_age.fresh(now_s) else None
        command, limited = limit_command(ArmCommand(linear, yaw_rate, closure), position,
                                         cfg.period_s, cfg.limits)
        self.message = f'pursuing goal from {run.source}: step {run.steps}, Q {q:.3f}'
        return StepResult(command=command, q_value=q, limited=limited)
