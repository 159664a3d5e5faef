'''The cross-entropy method over a box of actions, batched over states (QT-Opt's optimiser).'''

from collections.abc import Callable

import torch

from am_learning.config import CEMConfig


def cem_maximize(
    score: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    action_dim: int,
    cfg: CEMConfig,
    generator: torch.Generator,
    device: torch.device | str = 'cpu',
    low: float = -1.0,
    high: float = 1.0,
    init_mean: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    '''Maximise score over actions in [low, high]^A independently for each of B states.

    score: actions (B, K, A) -> scores (B, K). Each iteration samples `cfg.samples` actions
    from a per-state Gaussian (clipped to the box), and refits the Gaussian to the
    `cfg.elites` best. The first Gaussian is centred on `init_mean` (B, A) if given, else on
    zero. Returns the best action seen and its score: (B, A), (B,).
    '''
    if init_mean is None:
        mean = torch.zeros(batch_size, 1, action_dim, device=device)
    else:
        if init_mean.shape != (batch_size, action_dim):
            raise ValueError(f'init_mean must have shape ({batch_size}, {action_dim}), '
                             f'got {tuple(init_mean.shape)}')
        mean = init_mean.to(device=device, dtype=torch.float32).clamp(low, high)[:, None]
    std = torch.full_like(mean, cfg.init_std)
    best_action = torch.zeros(batch_size, action_dim, device=device)
    best_score = torch.full((batch_size,), -torch.inf, device=device)
    rows = torch.arange(batch_size, device=device)
    for _ in range(cfg.iterations):
        noise = torch.randn(batch_size, cfg.samples, action_dim, device=device,
                            generator=generator)
        actions = (mean + std * noise).clamp_(low, high)  # (B, K, A)
        scores = score(actions).float()  # (B, K)
        top_scores, top = scores.topk(cfg.elites, dim=1)  # (B, E)
        elites = actions[rows[:, None], top]  # (B, E, A)
        better = top_scores[:, 0] > best_score
        best_score = torch.where(better, top_scores[:, 0], best_score)
        best_action = torch.where(better[:, None], elites[:, 0], best_action)
        mean = elites.mean(dim=1, keepdim=True)
        std = elites.std(dim=1, keepdim=True, unbiased=False).clamp_(min=cfg.min_std)
    return best_action, best_score
