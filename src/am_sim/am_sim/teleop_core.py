'''The scripted operator without ROS: state vector in, twist and gripper command out.

OGBench's play operator (`am_learning.envs.PlayOperator`), or the reach operator
(`am_learning.envs.ReachOperator`: the open gripper to random workspace points), turned
into the two commands a human teleoperator sends through MoveIt Servo: a Cartesian twist
held for one control period and a gripper closure. Episodes are counted here; the node
only moves messages and calls services.
'''

from dataclasses import dataclass, fields

import numpy as np

from am_learning.conventions import ActionScale, action_to_twist
from am_learning.envs import OPERATORS, make_operator


@dataclass(frozen=True)
class TeleopConfig:
    '''Parameters of `scripted_teleop` (same names as the ROS parameters).'''

    scene: str = 'cube-single'
    '''Scene the simulator runs: cube-single, cube-double, puzzle-3x3 or scene (the
    operator's plans depend on it).'''
    episodes: int = 1
    '''Episodes to record, then stop.'''
    steps: int = 100
    '''Control steps (commands) per episode.'''
    seed: int = -1
    '''Seed of the operator's choices and of each episode's reset; -1 draws one.'''
    label: str = 'play'
    '''Task label given to the recorder.'''
    operator: str = 'play'
    '''play (OGBench's pick-and-place play oracle) or reach (the open gripper to random
    points of the reach-goal box, lingering at each).'''
    record: bool = True
    '''Call the recorder's episode services (False: only drive the robot).'''
    reset_service: str = '/sim_robot/reset'
    start_service: str = '/recorder/start_episode'
    stop_service: str = '/recorder/stop_episode'
    service_timeout_s: float = 10.0
    '''How long to wait for a service to appear and answer.'''
    stall_timeout_s: float = 10.0
    '''Give up on an episode when no robot state arrived for this long (wall seconds).'''
    exit_when_done: bool = True
    '''Shut the node down after the last episode.'''

    def problems(self) -> list[str]:
        '''Everything wrong with this configuration, as sentences (empty when valid).'''
        out = []
        if self.episodes < 1:
            out.append(f'episodes must be >= 1, got {self.episodes}')
        if self.steps < 1:
            out.append(f'steps must be >= 1, got {self.steps}')
        if self.seed < -1:
            out.append(f'seed must be >= 0, or -1 for a random one, got {self.seed}')
        for name in ('service_timeout_s', 'stall_timeout_s'):
            if not getattr(self, name) > 0:
                out.append(f'{name} must be > 0, got {getattr(self, name)}')
        for name in ('reset_service', 'start_service', 'stop_service'):
            if not getattr(self, name):
                out.append(f'{name} must name a service')
        if self.operator not in OPERATORS:
            out.append(f'operator must be one of {list(OPERATORS)}, got {self.operator!r}')
        else:
            try:
                make_operator(self.operator, self.scene)
            except ValueError as exc:
                out.append(str(exc))
        return out

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class Command:
    '''One control step's commands.'''

    linear: np.ndarray
    '''(3,) m/s, world frame.'''
    yaw_rate: float
    '''rad/s about z.'''
    closure: float
    '''Gripper closure, 0 open .. 1 closed.'''
    action: np.ndarray
    '''The normalised (5,) action these commands encode.'''


class TeleopCore:
    '''Counts an episode's steps and answers each robot state with the operator's command.'''

    def __init__(self, config: TeleopConfig, scale: ActionScale | None = None) -> None:
        problems = config.problems()
        if problems:
            raise ValueError('; '.join(problems))
        self.config = config
        self.scale = scale or ActionScale()
        self.rng = np.random.default_rng(None if config.seed < 0 else config.seed)
        self._operator = make_operator(config.operator, config.scene, self.scale)
        self.step = 0
        self.active = False

    def begin_episode(self) -> None:
        '''A fresh plan and step count; commands flow from the next state on.'''
        self._operator.reset(self.rng)
        self.step = 0
        self.active = True

    @property
    def done(self) -> bool:
        '''The episode is over: all its commands sent and their result observed.'''
        return self.step >= self.config.steps and not self.active

    def reset_seed(self) -> int:
        '''Seed for the simulator's next reset, drawn from the operator's generator.'''
        return int(self.rng.integers(2**31))

    def on_state(self, state: np.ndarray) -> Command | None:
        '''The command answering this state; None outside an episode.

        The state after the last command ends the episode (it shows that command's result,
        so the recording holds it too).
        '''
        if not self.active:
            return None
        if self.step >= self.config.steps:
            self.active = False
            return None
        action = self._operator.act(np.asarray(state, dtype=np.float32), self.rng)
        linear, yaw_rate, closure = action_to_twist(action, self.scale)
        self.step += 1
        return Command(linear, yaw_rate, closure, action)
