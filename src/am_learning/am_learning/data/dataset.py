'''The in-memory form of a dataset of episodes, as the learner consumes it.'''

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EpisodeDataset:
    '''Frames of consecutive episodes, concatenated; arrays may be np.memmap views.

    Frame i holds the observation at control step t of its episode and the action taken
    from it. The last frame of an episode has the action that was commanded there (or a
    zero action when none was), and no transition leads out of it.
    '''

    actions: np.ndarray
    '''(N, 5) float32 in [-1, 1]: see am_learning.conventions.'''
    episode_ends: np.ndarray
    '''(E,) int64: exclusive end index of each episode, strictly increasing, last == N.'''
    proprio: np.ndarray
    '''(N, P) float32 proprioception (arm joints + gripper opening); P may be 0.'''
    images: np.ndarray | None = None
    '''(N, H, W, 3) uint8 RGB camera frames at training resolution, or None.'''
    states: np.ndarray | None = None
    '''(N, D) float32 low-dimensional state (benchmarks, state estimation), or None.'''
    manifest: dict = field(default_factory=dict)
    '''Sources, topics, rates, action scale, normalisation: JSON-serialisable.'''

    def __post_init__(self) -> None:
        n = len(self.actions)
        if self.images is None and self.states is None:
            raise ValueError('a dataset needs images or states (or both)')
        for name in ('proprio', 'images', 'states'):
            array = getattr(self, name)
            if array is not None and len(array) != n:
                raise ValueError(f'{name} has {len(array)} frames, actions have {n}')
        ends = np.asarray(self.episode_ends, dtype=np.int64)
        if len(ends) == 0 or ends[-1] != n or np.any(np.diff(ends) <= 0) or ends[0] <= 0:
            raise ValueError('episode_ends must be strictly increasing and end at len(actions)')
        self.episode_ends = ends

    @property
    def num_frames(self) -> int:
        return len(self.actions)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def episode_starts(self) -> np.ndarray:
        '''(E,) int64 index of each episode's first frame.'''
        return np.concatenate([[0], self.episode_ends[:-1]])

    def episode_index(self) -> np.ndarray:
        '''(N,) int64: which episode each frame belongs to.'''
        lengths = np.diff(np.concatenate([[0], self.episode_ends]))
        return np.repeat(np.arange(self.num_episodes), lengths)

    def episode_end_of_frame(self) -> np.ndarray:
        '''(N,) int64: exclusive end index of each frame's episode.'''
        return self.episode_ends[self.episode_index()]
