'''Small, real learning problems for tests and demos: a 2-D point world rendered as images.

The point world has the parts of the Scene interface (am_learning.envs) that rollouts use,
so training, checkpoints, the policy and the evaluation loop can be exercised in seconds
without MuJoCo. Its dynamics: a dot at p in [0.05, 0.95]^2 moves by `step_m` * action[:2]
per step; the other three action dimensions do nothing. Proprioception is (x, y, 0, ..., 0).
'''

from pathlib import Path

import numpy as np

from am_learning.config import CEMConfig, NetworkConfig, RelabelConfig, TrainConfig
from am_learning.data.dataset import EpisodeDataset

LOW, HIGH = 0.05, 0.95


def render_point(position: np.ndarray, size: int) -> np.ndarray:
    '''(size, size, 3) uint8: a soft orange dot at `position` (x right, y down) on grey.'''
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    sigma = 0.06
    dx = (coords[None, :] - position[0]) ** 2
    dy = (coords[:, None] - position[1]) ** 2
    blob = np.exp(-(dx + dy) / (2 * sigma**2))  # (H, W)
    background = np.array([40, 40, 48], dtype=np.float32)
    dot = np.array([240, 120, 30], dtype=np.float32)
    image = background + blob[..., None] * (dot - background)
    return image.round().astype(np.uint8)


class PointWorld:
    '''A Scene-like 2-D reaching world (reset, step, render, proprio, task_solved, ...).'''

    num_eval_tasks = 0

    def __init__(self, image_size: int = 32, *, step_m: float = 0.06,
                 success_radius: float = 0.08, seed: int | None = None) -> None:
        self.name = 'point-world'
        self.image_size = image_size
        self.step_m = step_m
        self.success_radius = success_radius
        self.rng = np.random.default_rng(seed)
        self.position = np.full(2, 0.5)
        self.goal: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.position = self.rng.uniform(LOW, HIGH, size=2)
        self.goal = None

    def load_reach_task(self, seed: int | None = None) -> np.ndarray:
        '''Reset, then pick a goal 0.25-0.45 away; returns the goal image.'''
        self.reset(seed)
        while True:
            goal = self.rng.uniform(LOW, HIGH, size=2)
            if 0.25 <= np.linalg.norm(goal - self.position) <= 0.45:
                break
        self.goal = goal
        return render_point(goal, self.image_size)

    def goal_state(self) -> np.ndarray | None:
        return None if self.goal is None else self.goal.astype(np.float32)

    def step(self, action: np.ndarray) -> None:
        a = np.clip(np.asarray(action, dtype=np.float64)[:2], -1, 1)
        self.position = np.clip(self.position + self.step_m * a, LOW, HIGH)

    def render(self) -> np.ndarray:
        return render_point(self.position, self.image_size)

    def state(self) -> np.ndarray:
        return self.position.astype(np.float32)

    def proprio(self) -> np.ndarray:
        return np.concatenate([self.position, np.zeros(5)]).astype(np.float32)

    def goal_distance(self) -> float:
        return float('nan') if self.goal is None else float(
            np.linalg.norm(self.position - self.goal))

    def goal_error_in_view(self) -> tuple[float, float]:
        '''The camera looks straight down on the plane: nothing lies along its line of sight.'''
        return (float('nan'), float('nan')) if self.goal is None else (0.0, self.goal_distance())

    def task_solved(self) -> bool:
        return self.goal is not None and self.goal_distance() < self.success_radius

    def ee_position(self) -> np.ndarray:
        '''The point, in the plane z = 0.'''
        return np.append(self.position, 0.0)

    def ee_yaw(self) -> float:
        return 0.0

    def cube_positions(self) -> np.ndarray:
        '''No cubes in the point world.'''
        return np.zeros((0, 3))

    def cube_yaws(self) -> np.ndarray:
        return np.zeros(0)

    def cube_targets(self) -> np.ndarray:
        return np.zeros((0, 3))

    def close(self) -> None:
        '''Nothing to release (a Scene closes its renderer).'''

    def random_action(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1, 1, size=5).astype(np.float32)


def make_point_dataset(num_episodes: int = 20, episode_length: int = 40, *,
                       image_size: int | None = 32, seed: int = 0) -> EpisodeDataset:
    '''Play-like data in the point world: smoothed random actions, states (and images).'''
    rng = np.random.default_rng(seed)
    world = PointWorld(image_size or 32, seed=seed)
    positions, actions = [], []
    for _ in range(num_episodes):
        world.reset()
        a = rng.uniform(-1, 1, size=5)
        for _ in range(episode_length):
            a = np.clip(0.7 * a + 0.6 * rng.normal(size=5), -1, 1)
            positions.append(world.position.copy())
            actions.append(a.copy())
            world.step(a)
    states = np.asarray(positions, dtype=np.float32)
    proprio = np.concatenate([states, np.zeros((len(states), 5), np.float32)], axis=1)
    images = None
    if image_size:
        images = np.stack([render_point(p, image_size) for p in states])
    ends = np.arange(1, num_episodes + 1, dtype=np.int64) * episode_length
    return EpisodeDataset(actions=np.asarray(actions, dtype=np.float32), episode_ends=ends,
                          proprio=proprio, images=images, states=states,
                          manifest={'source': 'am_learning.testing.make_point_dataset',
                                    'seed': seed, 'episodes': [
                                        {'success': bool(i % 2)} for i in range(num_episodes)]})


def tiny_config(observation: str = 'image', image_size: int = 32, *, updates: int = 200,
                seed: int = 0, agent: str = 'am') -> TrainConfig:
    '''A small, fast configuration for the point world.

    One torch thread: on a shared 2-core machine, two OpenMP threads of tiny ops were measured
    15-30x slower than one under contention (spin-waiting for a descheduled peer).
    '''
    network = NetworkConfig(observation=observation, image_size=image_size,
                            conv_channels=(16, 32, 32), trunk_dim=64, hidden_dims=(64, 64),
                            proprio_dim=7 if observation == 'image' else 0,
                            state_dim=2 if observation == 'state' else 0)
    return TrainConfig(
        agent=agent, network=network,
        relabel=RelabelConfig(goal_offset='uniform', max_cut_length=10,
                              num_negative_candidates=16, num_negatives=4),
        act_cem=CEMConfig(samples=64, iterations=3, elites=6),
        batch_size=128, lr=2e-3, gamma=0.85, polyak=0.05, updates=updates,
        log_interval=max(1, updates // 4), checkpoint_interval=max(1, updates), seed=seed,
        device='cpu', diag_batch=32, num_threads=1)


def train_tiny_checkpoint(out_dir: Path, *, image_size: int = 32, updates: int = 200,
                          seed: int = 0, overrides: dict | None = None) -> Path:
    '''Train a real, tiny image-based AM model on point-world data; returns its checkpoint.

    The checkpoint folder is `out_dir` itself (model.safetensors + checkpoint.json), loadable
    with GoalReachingPolicy.from_checkpoint(out_dir). A few seconds on 2 cores.
    '''
    from am_learning.train import Trainer

    dataset = make_point_dataset(20, 40, image_size=image_size, seed=seed)
    config = tiny_config('image', image_size, updates=updates, seed=seed).with_overrides(
        overrides or {})
    trainer = Trainer(config, dataset)
    trainer.train()
    return trainer.save(Path(out_dir))
