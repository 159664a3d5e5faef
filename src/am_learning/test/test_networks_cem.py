'''CEM finds known optima; optimised network paths equal their naive references.'''

import numpy as np
import pytest
import torch
from torch import nn

from am_learning.cem import cem_maximize
from am_learning.config import CEMConfig, NetworkConfig
from am_learning.networks import QNetwork, images_to_input


def test_cem_finds_the_optimum_of_a_known_function() -> None:
    '''Per-row quadratic optima, one of them outside the box (clipped to its face).'''
    optima = torch.tensor([[0.3, -0.5, 0.8, 0.0, -0.2],
                           [-0.9, 0.9, -0.1, 0.4, 0.6],
                           [1.7, 0.0, 0.0, -3.0, 0.5]])

    def score(actions: torch.Tensor) -> torch.Tensor:  # (B, K, A) -> (B, K)
        return -((actions - optima[:, None]) ** 2).sum(-1)

    gen = torch.Generator().manual_seed(0)
    cfg = CEMConfig(samples=128, iterations=6, elites=10, init_std=0.6, min_std=0.01)
    best, value = cem_maximize(score, 3, 5, cfg, gen)
    expected = optima.clamp(-1, 1)
    assert torch.allclose(best, expected, atol=0.08), best
    assert torch.allclose(value, score(best[:, None])[:, 0])
    assert best.abs().max() <= 1.0


def test_cem_beats_random_search_with_the_same_budget() -> None:
    target = torch.tensor([0.61, -0.42, 0.05, 0.77, -0.88])

    def score(actions: torch.Tensor) -> torch.Tensor:
        return -(actions - target).abs().sum(-1)

    gen = torch.Generator().manual_seed(1)
    _, cem_value = cem_maximize(score, 1, 5, CEMConfig(samples=64, iterations=3), gen)
    random = torch.rand(1, 192, 5, generator=gen) * 2 - 1
    assert cem_value.item() > score(random).max().item()


def test_cem_warm_start_keeps_dimensions_the_score_ignores() -> None:
    '''The score depends on the first four entries only: from a warm start the fifth stays near
    where it started, from zero it lands anywhere; the optimum is found either way.'''
    target = torch.tensor([0.4, -0.3, 0.2, -0.6])

    def score(actions: torch.Tensor) -> torch.Tensor:
        return -((actions[..., :4] - target) ** 2).sum(-1)

    rows = 256
    start = torch.zeros(rows, 5)
    start[:, 4] = 0.9
    cfg = CEMConfig(samples=64, iterations=3)
    warm, _ = cem_maximize(score, rows, 5, cfg, torch.Generator().manual_seed(2),
                           init_mean=start)
    cold, _ = cem_maximize(score, rows, 5, cfg, torch.Generator().manual_seed(2))
    for best in (warm, cold):
        assert (best[:, :4] - target).abs().mean() < 0.1
    assert warm[:, 4].mean() > 0.6 and (warm[:, 4] - 0.9).abs().median() < 0.3
    assert cold[:, 4].mean().abs() < 0.15
    with pytest.raises(ValueError, match='init_mean must have shape'):
        cem_maximize(score, rows, 5, cfg, torch.Generator(), init_mean=torch.zeros(rows, 4))


def image_batch(b: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 256, (b, size, size, 3), generator=g, dtype=torch.uint8)
    goal = torch.randint(0, 256, (b, size, size, 3), generator=g, dtype=torch.uint8)
    proprio = torch.randn(b, 7, generator=g)
    return obs, goal, proprio


def test_trunk_once_head_many_equals_full_forward_per_action() -> None:
    torch.manual_seed(0)
    net = QNetwork(NetworkConfig(image_size=32, conv_channels=(8, 16), trunk_dim=32,
                                 hidden_dims=(32, 16))).eval()
    obs, goal, proprio = image_batch(3)
    actions = torch.rand(3, 10, 5) * 2 - 1
    with torch.no_grad():
        fast = net.logits(net.encode(obs, goal, proprio), actions)  # (3, 10)
        naive = torch.stack([net(obs, goal, proprio, actions[:, k]) for k in range(10)], 1)
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)


def test_split_first_layer_equals_an_mlp_over_the_concatenation() -> None:
    '''W_f f + W_a a is the first layer of an MLP over [f; a].'''
    torch.manual_seed(1)
    net = QNetwork(NetworkConfig(observation='state', state_dim=4, proprio_dim=0,
                                 trunk_dim=16, hidden_dims=(24, 8)))
    head = net.head
    first = nn.Linear(16 + 5, 24)
    with torch.no_grad():
        first.weight.copy_(torch.cat([head.feature_in.weight, head.action_in.weight], 1))
        first.bias.copy_(head.feature_in.bias)
    reference = nn.Sequential(first, nn.ReLU(), *head.mlp)
    feature, actions = torch.randn(6, 16), torch.rand(6, 3, 5)
    cat = torch.cat([feature[:, None].expand(-1, 3, -1), actions], -1)
    with torch.no_grad():
        torch.testing.assert_close(head(feature, actions), reference(cat).squeeze(-1))


def test_channels_last_and_bf16_match_fp32() -> None:
    torch.manual_seed(2)
    net = QNetwork(NetworkConfig(image_size=32, conv_channels=(8, 16), trunk_dim=32))
    obs, goal, proprio = image_batch(4, seed=3)
    action = torch.rand(4, 5) * 2 - 1
    with torch.no_grad():
        ref = net(obs, goal, proprio, action)
        net.set_channels_last(True)
        cl = net(obs, goal, proprio, action)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            bf = net(obs, goal, proprio, action).float()
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)
    assert (bf - ref).abs().max() < 0.05


def test_image_input_is_stacked_on_channels() -> None:
    obs, goal, _ = image_batch(2, size=16)
    x = images_to_input(obs, goal)
    assert x.shape == (2, 6, 16, 16)
    np.testing.assert_allclose(x[:, 3:].permute(0, 2, 3, 1).numpy(),
                               goal.numpy() / 255.0 - 0.5, atol=1e-6)


@pytest.mark.parametrize('size', [32, 48, 64])
def test_trunk_accepts_the_configured_sizes(size: int) -> None:
    net = QNetwork(NetworkConfig(image_size=size, conv_channels=(8,), trunk_dim=8,
                                 hidden_dims=(8,)))
    obs, goal, proprio = image_batch(2, size=size)
    assert net(obs, goal, proprio, torch.zeros(2, 5)).shape == (2,)


def test_ignored_state_entries_never_reach_the_output() -> None:
    cfg = NetworkConfig(observation='state', state_dim=8, proprio_dim=0, state_ignore=(2, 5))
    net = QNetwork(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    obs, goal = torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen)
    action = torch.rand(4, 5, generator=gen) * 2 - 1
    changed_obs, changed_goal = obs.clone(), goal.clone()
    changed_obs[:, [2, 5]] += 3.0
    changed_goal[:, [2, 5]] -= 3.0
    seen_obs = obs.clone()
    seen_obs[:, 0] += 3.0
    with torch.no_grad():
        base = net(obs, goal, None, action)
        torch.testing.assert_close(net(changed_obs, changed_goal, None, action), base)
        assert not torch.allclose(net(seen_obs, goal, None, action), base)


def test_state_ignore_outside_the_state_vector_is_rejected() -> None:
    from am_learning.config import TrainConfig

    cfg = TrainConfig(network=NetworkConfig(observation='state', state_dim=8,
                                            state_ignore=(8,)))
    with pytest.raises(ValueError, match='network.state_ignore'):
        cfg.validate()
