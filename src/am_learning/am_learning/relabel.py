'''Relabeling: training examples cut out of trajectories, as the slides' Algorithm 1 says.

For each example (vectorised over a batch, numpy, an explicit Generator):
  1. sample a trajectory tau from the dataset and cut it at a random i in {1, ..., T};
  2. take a transition (s_t, a_t, s_{t+1}) of tau_{0:i}, t in {0, ..., i-1};
  3. give it a goal: with `hindsight_goal_prob` the cut's final state s_i (reward 1 on
     arrival, t + 1 == i), otherwise a random dataset state g_rand (goal chaining: the final
     transition's reward is bootstrapped from Q_target(s_i, a_i, g_rand)).
Every other transition bootstraps from max_a Q_target(s_{t+1}, a, g). Negative actions are
drawn later, where Q is at hand (losses.py). Examples are frame indices into the dataset:
images are gathered only for the frames a batch uses.

Steps 1-2 are Algorithm 1 with `goal_offset='uniform'`; the default `geometric` draws the
transition first and the cut a geometric number of steps after it (see RelabelConfig).
'''

from dataclasses import dataclass

import numpy as np
import torch

from am_learning.config import RelabelConfig
from am_learning.data.dataset import EpisodeDataset


@dataclass
class RelabelBatch:
    '''One batch of relabeled transitions, as dataset frame indices and target terms.'''

    obs: np.ndarray
    '''(B,) int64 frame of s_t.'''
    next_obs: np.ndarray
    '''(B,) int64 frame of s_{t+1} (= obs + 1, same episode).'''
    goal: np.ndarray
    '''(B,) int64 frame whose observation is the goal.'''
    cut: np.ndarray
    '''(B,) int64 frame of s_i, the final state of the cut tau_{0:i}.'''
    hindsight: np.ndarray
    '''(B,) bool: the goal is s_i (else a random dataset state).'''
    reward: np.ndarray
    '''(B,) float32: 1 where s_{t+1} is the goal (hindsight arrival), else 0.'''
    bootstrap: np.ndarray
    '''(B,) float32: 1 where the target adds gamma * max_a Q_target(s_{t+1}, a, g).'''
    chain: np.ndarray
    '''(B,) float32: 1 where the target is gamma * Q_target(s_i, a_i, g) (goal chaining).'''
    goal_negative: np.ndarray
    '''(B,) float32: 1 where the example is a random-goal negative with target 0 (her_neg).'''
    chained: np.ndarray
    '''(B,) bool: a random goal reached through the cut (goal chaining, any t < i); the
    lower bound of its target is gamma^(i - t) Q_target(s_i, a_i, g).'''

    def __len__(self) -> int:
        return len(self.obs)


class RelabelSampler:
    '''Draws relabeled batches from an EpisodeDataset.'''

    def __init__(self, dataset: EpisodeDataset, cfg: RelabelConfig,
                 rng: np.random.Generator, *, gamma: float | None = None) -> None:
        '''gamma: the run's discount, which geometric goal offsets follow unless
        cfg.offset_discount sets theirs.'''
        self.dataset = dataset
        self.cfg = cfg
        self.rng = rng
        self.offset_discount = cfg.offset_discount if cfg.offset_discount is not None else gamma
        if cfg.goal_offset == 'geometric' and not (
                self.offset_discount is not None and 0.0 <= self.offset_discount < 1.0):
            raise ValueError('geometric goal offsets need a discount in [0, 1): set '
                             "relabel.offset_discount, or pass the run's gamma below 1, got "
                             f'{self.offset_discount!r}')
        starts = dataset.episode_starts
        lengths = dataset.episode_ends - starts
        usable = lengths >= 2  # an episode of one frame has no transition
        if not np.any(usable):
            raise ValueError('the dataset has no episode with a transition (all length 1)')
        self.starts = starts[usable]
        self.lengths = lengths[usable]
        if cfg.episode_sampling == 'length':
            weights = (self.lengths - 1).astype(np.float64)
        else:
            weights = np.ones(len(self.lengths))
        self.episode_p = weights / weights.sum()

    def _transitions(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        '''Episode start, length and a uniform transition t in 0..L-2 for n examples.'''
        episode = self.rng.choice(len(self.lengths), size=n, p=self.episode_p)
        start, length = self.starts[episode], self.lengths[episode]
        t = np.floor(self.rng.random(n) * (length - 1)).astype(np.int64)
        return start, length, t

    def _cuts(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        '''Episode start, cut i and transition t < i (episode-local) for n examples.'''
        cap = self.cfg.max_cut_length
        if self.cfg.goal_offset == 'geometric':
            start, length, t = self._transitions(n)
            steps = self.rng.geometric(1.0 - self.offset_discount, size=n)
            if cap > 0:
                steps = np.minimum(steps, cap)
            return start, np.minimum(t + steps, length - 1), t
        episode = self.rng.choice(len(self.lengths), size=n, p=self.episode_p)
        start, length = self.starts[episode], self.lengths[episode]
        i = 1 + np.floor(self.rng.random(n) * (length - 1)).astype(np.int64)  # 1..L-1
        lo = np.maximum(0, i - cap) if cap > 0 else np.zeros_like(i)
        t = lo + np.floor(self.rng.random(n) * (i - lo)).astype(np.int64)  # lo..i-1
        return start, i, t

    def sample(self, n: int, *, hindsight_goal_prob: float | None = None,
               goal_chaining: bool | None = None,
               random_goal_negative_prob: float = 0.0) -> RelabelBatch:
        '''n relabeled examples. The keyword overrides let baselines reuse the sampler:
        `her` uses hindsight_goal_prob=1; `her_neg` adds random-goal negatives.'''
        p_hind = self.cfg.hindsight_goal_prob if hindsight_goal_prob is None \
            else hindsight_goal_prob
        chaining = self.cfg.goal_chaining if goal_chaining is None else goal_chaining
        start, i, t = self._cuts(n)
        obs = start + t
        cut = start + i
        hindsight = self.rng.random(n) < p_hind
        random_goal = self.rng.integers(0, self.dataset.num_frames, size=n)
        goal = np.where(hindsight, cut, random_goal)
        arrival = t + 1 == i
        reward = (hindsight & arrival).astype(np.float32)
        chain = (~hindsight & arrival & chaining).astype(np.float32)
        goal_negative = np.zeros(n, dtype=np.float32)
        if random_goal_negative_prob > 0:
            neg = self.rng.random(n) < random_goal_negative_prob
            goal = np.where(neg, self.rng.integers(0, self.dataset.num_frames, size=n), goal)
            goal_negative = neg.astype(np.float32)
            reward = np.where(neg, 0.0, reward).astype(np.float32)
            chain = np.where(neg, 0.0, chain).astype(np.float32)
            hindsight = hindsight & ~neg
        bootstrap = (1.0 - reward) * (1.0 - chain) * (1.0 - goal_negative)
        chained = ~hindsight & (goal_negative == 0) & chaining
        return RelabelBatch(obs=obs, next_obs=obs + 1, goal=goal, cut=cut,
                            hindsight=hindsight, reward=reward,
                            bootstrap=bootstrap.astype(np.float32), chain=chain,
                            goal_negative=goal_negative, chained=chained)

    def sample_offsets(self, n: int, offset: int) -> tuple[np.ndarray, np.ndarray] | None:
        '''(frames, goal frames) with the goal `offset` steps ahead in the same episode;
        None when no episode is long enough.'''
        ok = self.lengths > offset
        if not np.any(ok):
            return None
        weights = (self.lengths[ok] - offset).astype(np.float64)
        episode = self.rng.choice(np.flatnonzero(ok), size=n, p=weights / weights.sum())
        t = np.floor(self.rng.random(n) * (self.lengths[episode] - offset)).astype(np.int64)
        frames = self.starts[episode] + t
        return frames, frames + offset

    def sample_frames(self, n: int) -> np.ndarray:
        '''n frames that have a successor in their episode.'''
        start, _, t = self._transitions(n)
        return start + t


Frames = np.ndarray | torch.Tensor
'''Frame indices: a numpy array, or a tensor on the gatherer's device.'''
RESIDENT_BYTES = 4 << 30
'''Arrays up to this size are kept on the GPU (ObservationGatherer).'''


class ObservationGatherer:
    '''Dataset frames -> torch tensors on a device: images stay uint8 until the network.

    `resident`: the arrays a batch reads are copied to the device once, a batch then costs
    one copy of its frame indices and gathering runs on the device (which is what lets a
    CUDA graph capture it, train.CudaGraphStep). The default (None) makes them resident on
    a GPU when they fit in RESIDENT_BYTES (a state dataset always does); otherwise (the CPU,
    or memory-mapped images too large for the GPU) frames are fancy-indexed on the host and
    copied.
    '''

    def __init__(self, dataset: EpisodeDataset, observation: str, device: torch.device,
                 resident: bool | None = None) -> None:
        if observation == 'image' and dataset.images is None:
            raise ValueError('an image network needs a dataset with images')
        if observation == 'state' and dataset.states is None:
            raise ValueError('a state network needs a dataset with states')
        self.dataset = dataset
        self.observation = observation
        self.device = torch.device(device) if device is not None else torch.device('cpu')
        source = dataset.images if observation == 'image' else dataset.states
        self._host = {'obs': source, 'proprio': dataset.proprio, 'actions': dataset.actions}
        if resident is None:
            size = sum(a.nbytes for a in self._host.values())
            resident = self.device.type != 'cpu' and size <= RESIDENT_BYTES
        self.resident = resident
        self._device: dict[str, torch.Tensor] = {}
        if self.resident:
            self._device = {name: _device_copy(array, name, self.device)
                            for name, array in self._host.items()}

    def frames(self, frames: np.ndarray) -> Frames:
        '''Frame indices in the form obs/proprio/actions take: a device tensor when the
        arrays are resident (one copy for the whole index array), else the array itself.'''
        if self.resident:
            return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.int64)).to(
                self.device, non_blocking=True)
        return frames

    def obs(self, frames: Frames) -> torch.Tensor:
        return self._take('obs', frames)

    def proprio(self, frames: Frames) -> torch.Tensor:
        return self._take('proprio', frames)

    def actions(self, frames: Frames) -> torch.Tensor:
        return self._take('actions', frames)

    def _take(self, name: str, frames: Frames) -> torch.Tensor:
        if self.resident:
            index = frames if isinstance(frames, torch.Tensor) else self.frames(frames)
            return self._device[name][index]
        rows = self._host[name][frames]
        dtype = rows.dtype if name == 'obs' else np.float32
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=dtype)).to(self.device)


def _device_copy(array: np.ndarray, name: str, device: torch.device) -> torch.Tensor:
    '''A device copy of a dataset array (float32 but for observations, which keep their
    dtype); copied on the host first, as a cache's arrays may be read-only memory maps.'''
    host = np.array(array, dtype=array.dtype if name == 'obs' else np.float32)
    return torch.from_numpy(host).to(device)


@dataclass
class TensorBatch:
    '''A RelabelBatch with its observations gathered: what the pure loss functions take.'''

    obs: torch.Tensor
    proprio: torch.Tensor
    action: torch.Tensor
    next_obs: torch.Tensor
    next_proprio: torch.Tensor
    next_action: torch.Tensor
    goal: torch.Tensor
    reward: torch.Tensor
    bootstrap: torch.Tensor
    chain: torch.Tensor
    goal_negative: torch.Tensor
    hindsight: torch.Tensor
    '''(B,) float32: 1 where the goal is the cut s_i (lower bound gamma^(steps - 1)).'''
    chained: torch.Tensor
    '''(B,) float32: 1 where the goal is random and reached through s_i (goal chaining).'''
    steps: torch.Tensor
    '''(B,) float32: i - t, the steps from s_t to the cut s_i along the data.'''
    cut_obs: torch.Tensor | None = None
    cut_proprio: torch.Tensor | None = None
    cut_action: torch.Tensor | None = None
    '''Observation, proprioception and dataset action at s_i, for the examples `cut_rows`
    names (None in task batches, which have no cut).'''
    cut_rows: torch.Tensor | None = None
    '''(K,) int64 positions in the batch of the cut_* rows: the examples chained more than
    one step back, the only ones whose target needs Q at s_i (gather). None: every example
    has its row (gather_frames' fixed shapes, for CUDA graph capture).'''


MASK_FIELDS = ('reward', 'bootstrap', 'chain', 'goal_negative', 'hindsight', 'chained')
MASK_ROWS = MASK_FIELDS + ('steps',)
'''The rows of batch_arrays' masks: TensorBatch's float fields.'''


def gather(batch: RelabelBatch, gatherer: ObservationGatherer) -> TensorBatch:
    '''Fetch the frames a RelabelBatch names: one index array, one array of masks, and the
    cut rows of the examples that need them (saves a target-trunk pass over the others,
    which matters for the conv trunk).'''
    frames, masks = batch_arrays(batch)
    rows = np.flatnonzero(batch.chained & (batch.cut - batch.obs > 1))
    return gather_frames(gatherer.frames(frames),
                         torch.from_numpy(masks).to(gatherer.device, non_blocking=True),
                         gatherer, cut_rows=rows)


def batch_arrays(batch: RelabelBatch) -> tuple[np.ndarray, np.ndarray]:
    '''(4, B) int64 frames (obs, next obs, goal, cut) and (7, B) float32 masks
    (MASK_ROWS: MASK_FIELDS, then the steps i - t): everything gather_frames needs.'''
    frames = np.stack([batch.obs, batch.next_obs, batch.goal, batch.cut]).astype(np.int64)
    masks = np.stack([getattr(batch, f) for f in MASK_FIELDS] + [batch.cut - batch.obs])
    return frames, masks.astype(np.float32)


def gather_frames(frames: Frames, masks: torch.Tensor, gatherer: ObservationGatherer,
                  cut_rows: np.ndarray | None = None) -> TensorBatch:
    '''A TensorBatch from batch_arrays' arrays (frames as ObservationGatherer.frames gives
    them), with cut rows for the examples at `cut_rows` (None: all). With cut_rows None this
    is tensor indexing on the device alone: a CUDA graph can capture it.'''
    obs, next_obs, goal, cut = frames
    g = gatherer
    positions = None
    if cut_rows is not None:
        positions = torch.from_numpy(cut_rows).to(masks.device, non_blocking=True)
        cut = cut[positions] if isinstance(cut, torch.Tensor) else cut[cut_rows]
    return TensorBatch(
        obs=g.obs(obs), proprio=g.proprio(obs), action=g.actions(obs),
        next_obs=g.obs(next_obs), next_proprio=g.proprio(next_obs),
        next_action=g.actions(next_obs), goal=g.obs(goal),
        **dict(zip(MASK_ROWS, masks)),
        cut_obs=g.obs(cut), cut_proprio=g.proprio(cut), cut_action=g.actions(cut),
        cut_rows=positions)
