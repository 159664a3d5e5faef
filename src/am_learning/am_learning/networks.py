'''Goal-conditioned Q-networks (and the GCBC policy network) for images and state vectors.

Every network is split into a trunk that runs once per (state, goal) and a head that is cheap
to evaluate for many actions: the CEM of acting, the max of the TD target and the negative
action candidates all score tens of actions per state, and only the head sees them.

Image trunk (QT-Opt style, with the goal image stacked on the channels, as in the paper):
    (B, 6, H, W) -> stride-2 3x3 convs -> flatten -> concat proprio -> Linear -> (B, F)
Head: the first layer is split as W [f; a] = W_f f + W_a a, so W_f f is computed once per
state and each action costs one small matmul; then an MLP to one logit. sigmoid(logit) is
Q(s, a, g) in [0, 1].
Actor (optional, NetworkConfig.actor_head): an MLP from the same feature to an action,
trained on the detached feature (losses.actor_loss), or from a trunk of its own
(NetworkConfig.actor_trunk); acting starts CEM at its action.
'''

import torch
from torch import nn

from am_learning.config import NetworkConfig


def images_to_input(image: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    '''uint8 (B, H, W, 3) image and goal -> float (B, 6, H, W) in [-0.5, 0.5].

    fp32 even under autocast: handing the first conv bf16 input was measured 25% slower.
    '''
    x = torch.cat([image, goal], dim=-1).permute(0, 3, 1, 2)
    return x.float().mul_(1.0 / 255.0).sub_(0.5)


class ImageTrunk(nn.Module):
    '''Conv trunk over the channel-stacked (image, goal image), then proprioception.'''

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 6
        size = cfg.image_size
        for out in cfg.conv_channels:
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            channels = out
            size = (size + 1) // 2
        self.convs = nn.Sequential(*layers)
        self.flat_dim = channels * size * size
        self.proj = nn.Linear(self.flat_dim + cfg.proprio_dim, cfg.trunk_dim)
        self.proprio_dim = cfg.proprio_dim
        self.channels_last = False

    def forward(self, obs: torch.Tensor, goal: torch.Tensor,
                proprio: torch.Tensor | None) -> torch.Tensor:
        x = images_to_input(obs, goal)  # (B, 6, H, W)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.convs(x).flatten(1)  # (B, C*h*w)
        if self.proprio_dim:
            h = torch.cat([h, proprio.to(h.dtype)], dim=-1)
        return torch.relu(self.proj(h))  # (B, F)


class StateTrunk(nn.Module):
    '''MLP over (state, goal state[, proprio]): `state_trunk_layers` layers of trunk_dim.'''

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.proprio_dim = cfg.proprio_dim
        keep = torch.ones(cfg.state_dim)
        keep[list(cfg.state_ignore)] = 0.0
        self.register_buffer('keep', keep, persistent=False)
        self.proj = nn.Linear(2 * cfg.state_dim + cfg.proprio_dim, cfg.trunk_dim)
        self.proj_norm = _norm(cfg, cfg.trunk_dim)
        layers: list[nn.Module] = []
        for _ in range(cfg.state_trunk_layers - 1):
            layers += [nn.Linear(cfg.trunk_dim, cfg.trunk_dim), _norm(cfg, cfg.trunk_dim),
                       nn.ReLU()]
        self.mlp = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, goal: torch.Tensor,
                proprio: torch.Tensor | None) -> torch.Tensor:
        parts = [obs * self.keep, goal * self.keep] + ([proprio] if self.proprio_dim else [])
        h = self.proj_norm(self.proj(torch.cat(parts, dim=-1)))
        return self.mlp(torch.relu(h))  # (B, F)


def _norm(cfg: NetworkConfig, width: int) -> nn.Module:
    '''LayerNorm when the config asks for it (NetworkConfig.layer_norm), else identity.'''
    return nn.LayerNorm(width) if cfg.layer_norm else nn.Identity()


class ActionHead(nn.Module):
    '''MLP over (feature, action) -> one logit, with the first layer split by input.'''

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        hidden = cfg.hidden_dims
        first = hidden[0]
        self.feature_in = nn.Linear(cfg.trunk_dim, first)
        self.action_in = nn.Linear(cfg.action_dim, first, bias=False)
        self.first_norm = _norm(cfg, first)
        layers: list[nn.Module] = []
        for a, b in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Linear(a, b), _norm(cfg, b), nn.ReLU(inplace=True)]
        layers += [nn.Linear(hidden[-1], 1)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, feature: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        '''feature (B, F), actions (B, K, A) -> logits (B, K).'''
        h = self.action_in(actions)  # (B, K, H): the only per-action work of the first layer
        h = self.first_norm(h + self.feature_in(feature).unsqueeze(1))
        return self.mlp(torch.relu_(h)).squeeze(-1)


def action_mlp(cfg: NetworkConfig) -> nn.Sequential:
    '''MLP from a (B, trunk_dim) feature to a (B, A) action in [-1, 1] (tanh).'''
    layers: list[nn.Module] = []
    width = cfg.trunk_dim
    for h in cfg.hidden_dims:
        layers += [nn.Linear(width, h), _norm(cfg, h), nn.ReLU()]
        width = h
    layers += [nn.Linear(width, cfg.action_dim), nn.Tanh()]
    return nn.Sequential(*layers)


def make_trunk(cfg: NetworkConfig) -> ImageTrunk | StateTrunk:
    '''The trunk for the config's observation kind.'''
    return ImageTrunk(cfg) if cfg.observation == 'image' else StateTrunk(cfg)


class QNetwork(nn.Module):
    '''Q(s, a, g) = sigmoid(head(trunk(s, g), a)), for images or state vectors; with
    `cfg.actor_head`, also an actor pi(s, g) (`propose`), on the same feature or, with
    `cfg.actor_trunk`, on a trunk of its own.'''

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk = make_trunk(cfg)
        self.head = ActionHead(cfg)
        # Built after Q's own modules, so that Q's initial weights do not depend on them.
        self.actor = action_mlp(cfg) if cfg.actor_head else None
        self.actor_trunk = make_trunk(cfg) if cfg.actor_head and cfg.actor_trunk else None

    def actor_parameters(self) -> list[nn.Parameter]:
        '''The actor's weights (its trunk's included): those Q's loss never touches.'''
        modules = [m for m in (self.actor, self.actor_trunk) if m is not None]
        return [p for m in modules for p in m.parameters()]

    def propose(self, feature: torch.Tensor, obs: torch.Tensor | None = None,
                goal: torch.Tensor | None = None,
                proprio: torch.Tensor | None = None) -> torch.Tensor:
        '''The actor's action (B, A): from Q's features (B, F), or, for an actor with a trunk
        of its own, from (obs, goal, proprio). The network must have an actor.'''
        if self.actor is None:
            raise RuntimeError('this Q-network has no actor head (network.actor_head)')
        if self.actor_trunk is not None:
            if obs is None or goal is None:
                raise ValueError('this actor reads its own trunk (network.actor_trunk): '
                                 'propose() needs obs and goal')
            feature = self.actor_trunk(obs, goal, proprio)
        return self.actor(feature)

    def encode(self, obs: torch.Tensor, goal: torch.Tensor,
               proprio: torch.Tensor | None = None) -> torch.Tensor:
        '''Per-(state, goal) feature (B, F): compute once, score many actions with `logits`.'''
        return self.trunk(obs, goal, proprio)

    def logits(self, feature: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        '''feature (B, F), actions (B, K, A) -> logits (B, K).'''
        return self.head(feature, actions)

    def forward(self, obs: torch.Tensor, goal: torch.Tensor, proprio: torch.Tensor | None,
                action: torch.Tensor) -> torch.Tensor:
        '''The plain full forward: (B, ...) inputs and (B, A) actions -> logits (B,).'''
        return self.logits(self.encode(obs, goal, proprio), action.unsqueeze(1)).squeeze(1)

    def set_channels_last(self, enabled: bool) -> None:
        for trunk in (self.trunk, self.actor_trunk):
            if isinstance(trunk, ImageTrunk):
                trunk.channels_last = enabled
        if isinstance(self.trunk, ImageTrunk):
            self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)


class PolicyNetwork(nn.Module):
    '''GCBC: the same trunk, and an MLP head that outputs the action (tanh) directly.'''

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk = make_trunk(cfg)
        self.mlp = action_mlp(cfg)

    def encode(self, obs: torch.Tensor, goal: torch.Tensor,
               proprio: torch.Tensor | None = None) -> torch.Tensor:
        return self.trunk(obs, goal, proprio)

    def forward(self, obs: torch.Tensor, goal: torch.Tensor,
                proprio: torch.Tensor | None) -> torch.Tensor:
        return self.mlp(self.encode(obs, goal, proprio))  # (B, A)

    def set_channels_last(self, enabled: bool) -> None:
        if isinstance(self.trunk, ImageTrunk):
            self.trunk.channels_last = enabled
            self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)


def build_network(cfg: NetworkConfig, agent: str) -> QNetwork | PolicyNetwork:
    '''The network an agent trains: a policy for `gcbc`, a Q-network otherwise.'''
    return PolicyNetwork(cfg) if agent == 'gcbc' else QNetwork(cfg)
