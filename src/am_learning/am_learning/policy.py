'''A goal-reaching policy from a checkpoint: pi(a | s, g) = argmax_a Q(s, a, g) by CEM.

This is what the policy node and am-eval run. Acting is fp32 and gradient-free; the trunk
runs once per observation and CEM scores its samples with the head only.
'''

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from am_learning.cem import cem_maximize
from am_learning.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from am_learning.config import CEMConfig, TrainConfig
from am_learning.networks import PolicyNetwork, QNetwork

__all__ = ['CheckpointError', 'GoalReachingPolicy', 'PolicyStep', 'greedy_q_action',
           'resize_image']


@dataclass(frozen=True)
class PolicyStep:
    '''One decision of the policy.'''

    action: np.ndarray
    '''(5,) float32 in [-1, 1]: see am_learning.conventions.'''
    q_value: float
    '''Q(s, a, g) in [0, 1] of the chosen action; nan for GCBC checkpoints (no Q-function).'''


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    '''(H, W, 3) uint8 RGB -> (size, size, 3) uint8, by area averaging when shrinking.'''
    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    shrinking = image.shape[0] >= size and image.shape[1] >= size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=interp)


def _check_image(name: str, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 \
            or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f'{name} must be an (H, W, 3) uint8 RGB image, got '
                         f'shape {image.shape} dtype {image.dtype}')
    return image


def greedy_q_action(network: QNetwork, feature: torch.Tensor,
                    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
                    cem: CEMConfig, generator: torch.Generator, *, use_actor: bool = True,
                    init_mean: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    '''argmax_a Q(s, a, g) for a batch by CEM: actions (B, A) and their logits (B,).

    `feature` is network.encode(*inputs), inputs = (obs, goal, proprio). With an actor head
    (and use_actor) CEM starts at the actor's action with `cem.proposal_std`, and the action
    itself competes with CEM's best; otherwise CEM starts at `init_mean` (None: zero).
    '''
    def score(actions: torch.Tensor) -> torch.Tensor:
        return network.logits(feature, actions)

    batch, device = feature.shape[0], feature.device
    action_dim = network.cfg.action_dim
    if not (use_actor and network.actor is not None):
        return cem_maximize(score, batch, action_dim, cem, generator, device,
                            init_mean=init_mean)
    proposal = network.propose(feature, *inputs)  # (B, A)
    action, logit = cem_maximize(score, batch, action_dim,
                                 replace(cem, init_std=cem.proposal_std), generator, device,
                                 init_mean=proposal)
    proposal_logit = score(proposal.unsqueeze(1))[:, 0]
    better = proposal_logit > logit
    return (torch.where(better[:, None], proposal, action),
            torch.where(better, proposal_logit, logit))


class GoalReachingPolicy:
    '''Greedy goal-conditioned policy over a trained Q-network (or a GCBC policy network).'''

    def __init__(self, checkpoint: Checkpoint, device: str = 'cpu', *,
                 cem_samples: int | None = None, cem_iterations: int | None = None,
                 cem_warm_start: bool | None = None, use_actor: bool = True,
                 seed: int = 0) -> None:
        self.config: TrainConfig = checkpoint.config
        self.device = torch.device(device)
        self.network = checkpoint.network.to(self.device).float().eval()
        if hasattr(self.network, 'set_channels_last'):
            self.network.set_channels_last(False)
        cem = self.config.act_cem
        if cem_samples is not None:
            cem = replace(cem, samples=int(cem_samples), elites=min(cem.elites, int(cem_samples)))
        if cem_iterations is not None:
            cem = replace(cem, iterations=int(cem_iterations))
        if cem_warm_start is not None:
            cem = replace(cem, warm_start=bool(cem_warm_start))
        if cem.samples < 1 or cem.iterations < 1:
            raise ValueError('cem_samples and cem_iterations must be >= 1')
        self.cem = cem
        self.use_actor = use_actor
        '''With an actor head: start CEM at its action (False: act as without the head).'''
        self.checkpoint_step = checkpoint.step
        self.code_version = checkpoint.code_version
        net = self.config.network
        self.uses_images: bool = net.observation == 'image'
        self.image_size: int = net.image_size
        self.proprio_dim: int = net.proprio_dim
        self.state_dim: int = net.state_dim
        self.action_dim: int = net.action_dim
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._goal: torch.Tensor | None = None
        self._previous_action: torch.Tensor | None = None
        '''(1, A): the last action chosen for the current goal, where CEM warm-starts.'''

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = 'cpu', *,
                        cem_samples: int | None = None, cem_iterations: int | None = None,
                        cem_warm_start: bool | None = None, use_actor: bool = True,
                        seed: int = 0) -> 'GoalReachingPolicy':
        '''Load a checkpoint folder; CheckpointError if it is missing, corrupt or mismatched.'''
        return cls(load_checkpoint(path, device=device), device, cem_samples=cem_samples,
                   cem_iterations=cem_iterations, cem_warm_start=cem_warm_start,
                   use_actor=use_actor, seed=seed)

    @property
    def has_goal(self) -> bool:
        return self._goal is not None

    @property
    def is_q_function(self) -> bool:
        return isinstance(self.network, QNetwork)

    @property
    def has_actor(self) -> bool:
        '''A Q-network with an actor head, acting with it: CEM starts at the actor's action.'''
        return self.use_actor and self.is_q_function and self.network.actor is not None

    def _obs_tensor(self, name: str, value: np.ndarray) -> torch.Tensor:
        if self.uses_images:
            image = resize_image(_check_image(name, value), self.image_size)
            return torch.from_numpy(image).to(self.device).unsqueeze(0)  # (1, H, W, 3)
        state = np.asarray(value)
        if state.shape != (self.state_dim,) or not np.issubdtype(state.dtype, np.number):
            raise ValueError(f'{name} must be a ({self.state_dim},) state vector, got shape '
                             f'{state.shape} dtype {state.dtype}')
        if not np.all(np.isfinite(state)):
            raise ValueError(f'{name} has non-finite values')
        return torch.from_numpy(state.astype(np.float32)).to(self.device).unsqueeze(0)

    def _proprio_tensor(self, proprio: np.ndarray | None) -> torch.Tensor | None:
        if self.proprio_dim == 0:
            return None
        p = np.asarray(proprio, dtype=np.float32) if proprio is not None else None
        if p is None or p.shape != (self.proprio_dim,):
            raise ValueError(f'proprio must have shape ({self.proprio_dim},), got '
                             f'{None if p is None else p.shape}')
        if not np.all(np.isfinite(p)):
            raise ValueError('proprio has non-finite values')
        return torch.from_numpy(p).to(self.device).unsqueeze(0)

    def set_goal(self, goal: np.ndarray) -> None:
        '''The goal: an (H, W, 3) uint8 RGB image (any size) or a (D,) state vector.'''
        self._goal = self._obs_tensor('goal', goal)
        self._previous_action = None

    def clear_goal(self) -> None:
        self._goal = None
        self._previous_action = None

    def _require_goal(self) -> torch.Tensor:
        if self._goal is None:
            raise RuntimeError('no goal set: call set_goal() first')
        return self._goal

    @torch.no_grad()
    def act(self, observation: np.ndarray, proprio: np.ndarray | None) -> PolicyStep:
        '''The greedy action for the current goal: CEM over Q (started at the actor's action
        where the network has an actor head); GCBC: the network's output.'''
        goal = self._require_goal()
        obs = self._obs_tensor('observation', observation)
        prop = self._proprio_tensor(proprio)
        if isinstance(self.network, PolicyNetwork):
            action = self.network(obs, goal, prop)[0]
            return PolicyStep(action=action.cpu().numpy().astype(np.float32),
                              q_value=float('nan'))
        feature = self.network.encode(obs, goal, prop)  # (1, F), once per observation
        action, logit = greedy_q_action(
            self.network, feature, (obs, goal, prop), self.cem, self.generator,
            use_actor=self.use_actor,
            init_mean=self._previous_action if self.cem.warm_start else None)
        self._previous_action = action
        return PolicyStep(action=action[0].cpu().numpy().astype(np.float32),
                          q_value=float(torch.sigmoid(logit[0])))

    @torch.no_grad()
    def q_value(self, observation: np.ndarray, proprio: np.ndarray | None,
                action: np.ndarray) -> float:
        '''Q(s, a, g) in [0, 1] for the current goal; nan for GCBC checkpoints.'''
        goal = self._require_goal()
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (self.action_dim,):
            raise ValueError(f'action must have shape ({self.action_dim},), got {a.shape}')
        if not isinstance(self.network, QNetwork):
            return float('nan')
        obs = self._obs_tensor('observation', observation)
        prop = self._proprio_tensor(proprio)
        act = torch.from_numpy(np.clip(a, -1, 1)).to(self.device).unsqueeze(0)
        return float(torch.sigmoid(self.network(obs, goal, prop, act))[0])
