'''Learning really happens: targets, negatives, fitting, goal reaching, baselines, fine-tuning.'''

from dataclasses import replace
import json
from pathlib import Path
import shutil

import numpy as np
import pytest
import torch

from am_learning import losses
from am_learning.checkpoint import CheckpointError
from am_learning.config import NetworkConfig, TrainConfig
from am_learning.evaluate import evaluate
from am_learning.networks import QNetwork
from am_learning.policy import GoalReachingPolicy
from am_learning.relabel import (
    ObservationGatherer,
    RelabelSampler,
    batch_arrays,
    gather,
    gather_frames,
)
from am_learning.testing import PointWorld, make_point_dataset, tiny_config
from am_learning.train import Trainer, native_bf16


@pytest.fixture(scope='module')
def state_data():
    return make_point_dataset(40, 50, image_size=None, seed=0)


@pytest.fixture(scope='module')
def trained_am(state_data, tmp_path_factory) -> tuple[Trainer, Path]:
    trainer = Trainer(tiny_config('state', updates=600), state_data)
    trainer.train()
    return trainer, trainer.save(tmp_path_factory.mktemp('am') / 'ckpt')


def success_rate(policy: GoalReachingPolicy | None, rollouts: int = 30) -> float:
    '''Percent of reach tasks solved in 25 steps, greedy policy or uniform random actions.'''
    world = PointWorld(32)
    if policy is not None:
        report = evaluate(policy, world, eval_tasks=[], reach_tasks=rollouts, max_steps=25,
                          seed=5, filmstrips=0)
        return report['success_pct']['reach']
    rng = np.random.default_rng(0)
    solved = 0
    for e in range(rollouts):
        world.load_reach_task(seed=5 + 100_000 + e)
        for _ in range(25):
            world.step(rng.uniform(-1, 1, 5))
            if world.task_solved():
                solved += 1
                break
    return 100.0 * solved / rollouts


def test_greedy_cem_reaches_goals_far_better_than_random(trained_am) -> None:
    trainer, path = trained_am
    greedy = success_rate(GoalReachingPolicy.from_checkpoint(path))
    random = success_rate(None)
    assert random < 25
    assert greedy >= 60 and greedy >= random + 40, (greedy, random)
    # The diagnostics separate near goals from far and random ones.
    diag = trainer.diagnostics()
    assert diag['diag/q_offset_1'] > diag['diag/q_offset_20'] > diag['diag/q_random_goal']
    assert diag['diag/q_data_action'] > diag['diag/q_random_action']


def test_td_targets_follow_the_three_cases(trained_am, state_data) -> None:
    trainer, _ = trained_am
    cfg = trainer.config
    sampler = RelabelSampler(state_data, cfg.relabel, np.random.default_rng(9),
                             gamma=cfg.gamma)
    batch = gather(sampler.sample(512), ObservationGatherer(state_data, 'state',
                                                            torch.device('cpu')))
    y = losses.td_targets(trainer.target, batch, cfg, torch.Generator().manual_seed(0))
    net = trainer.target
    with torch.no_grad():
        q_next = torch.sigmoid(net(batch.next_obs, batch.goal, None, batch.next_action))
    arrival, chain, boot = (batch.reward > 0), (batch.chain > 0), (batch.bootstrap > 0)
    assert arrival.any() and chain.any() and boot.any()
    torch.testing.assert_close(y[arrival], torch.ones(int(arrival.sum())))
    torch.testing.assert_close(y[chain], cfg.gamma * q_next[chain])
    # The max over sampled actions includes the dataset action, so it is never below it.
    assert torch.all(y[boot] >= cfg.gamma * q_next[boot] - 1e-6)


def test_lower_bound_raises_targets_to_the_data_path(trained_am, state_data) -> None:
    '''Hindsight: y >= gamma^(k-1); chained: y >= gamma^k Q'(s_i, a_i, g); else plain TD.'''
    trainer, _ = trained_am
    cfg = trainer.config.with_overrides({'relabel.goal_offset': 'geometric',
                                         'relabel.offset_discount': 0.9,
                                         'relabel.max_cut_length': 0})
    plain = cfg.with_overrides({'relabel.lower_bound': False})
    sampler = RelabelSampler(state_data, cfg.relabel, np.random.default_rng(11),
                             gamma=cfg.gamma)
    examples = sampler.sample(1024)
    gatherer = ObservationGatherer(state_data, 'state', torch.device('cpu'))
    batch = gather(examples, gatherer)
    net = trainer.target
    y = losses.td_targets(net, batch, cfg, torch.Generator().manual_seed(0))
    y_plain = losses.td_targets(net, batch, plain, torch.Generator().manual_seed(0))
    hind, far = batch.hindsight > 0, (batch.chained > 0) & (batch.steps > 1)
    assert hind.any() and far.any()
    assert torch.all(y[hind] >= cfg.gamma ** (batch.steps[hind] - 1) - 1e-6)
    with torch.no_grad():
        q_cut = torch.sigmoid(net(batch.cut_obs, batch.goal[far], None, batch.cut_action))
    torch.testing.assert_close(batch.cut_rows, torch.nonzero(far)[:, 0])
    assert torch.all(y[far] >= cfg.gamma ** batch.steps[far] * q_cut - 1e-6)
    torch.testing.assert_close(y, torch.maximum(
        y_plain, losses.path_lower_bound(net, batch, cfg.gamma)))
    assert torch.all(y >= y_plain) and torch.any(y > y_plain + 0.05)
    # The fixed-shape batch a CUDA graph captures (a cut row for every example) agrees.
    frames, masks = batch_arrays(examples)
    dense = gather_frames(frames, torch.from_numpy(masks), gatherer)
    assert dense.cut_rows is None and len(dense.cut_obs) == len(batch.obs)
    torch.testing.assert_close(losses.path_lower_bound(net, dense, cfg.gamma),
                               losses.path_lower_bound(net, batch, cfg.gamma))


@pytest.mark.parametrize('kind', ['bce', 'mse'])
def test_td_expectile_leans_towards_the_better_outcomes(kind) -> None:
    '''One input whose TD targets are 1 and 0 equally often: the plain regression settles at
    their mean, expectile tau at tau (the tau-expectile of a fair coin).'''
    targets = torch.tensor([1.0, 0.0] * 64)
    for tau in (0.5, 0.9, 0.2):
        logit = torch.zeros(1, requires_grad=True)
        optim = torch.optim.Adam([logit], lr=0.05)
        for _ in range(800):
            q = torch.sigmoid(logit.detach()).expand_as(targets)
            weight = losses.expectile_weight(q, targets, tau)
            loss = (weight * losses.q_regression(logit.expand_as(targets), targets, kind)).mean()
            optim.zero_grad()
            loss.backward()
            optim.step()
        assert torch.sigmoid(logit).item() == pytest.approx(tau, abs=0.01)


def test_a_td_expectile_outside_0_1_or_a_non_boolean_max_action_negative_is_refused() -> None:
    for tau in (0.0, 1.0):  # all weight on one side of the targets
        with pytest.raises(ValueError, match='td_expectile'):
            tiny_config('state').with_overrides({'td_expectile': tau}).validate()
    with pytest.raises(ValueError, match='max_action_negative'):
        tiny_config('state').with_overrides({'relabel.max_action_negative': 'yes'})


def _step_net(actor: bool = False, own_trunk: bool = False) -> QNetwork:
    '''A state network whose logit is relu(20 a0): Q ~ 1 for a0 > 0, 0.5 below (the actor
    head, if asked for, keeps its random initialisation).'''
    net = QNetwork(NetworkConfig(observation='state', state_dim=2, proprio_dim=0,
                                 trunk_dim=4, hidden_dims=(4,), actor_head=actor,
                                 actor_trunk=own_trunk))
    with torch.no_grad():
        for p in [*net.trunk.parameters(), *net.head.parameters()]:
            p.zero_()
        net.head.action_in.weight[0, 0] = 20.0  # hidden unit 0 = relu(20 a0)
        net.head.mlp[0].weight[0, 0] = 1.0  # logit = that unit
    return net


@pytest.mark.parametrize('how', ['sampled', 'cem'])
def test_target_max_names_the_action_that_gave_it(how) -> None:
    net = _step_net()
    cfg = tiny_config('state').with_overrides({'target_max': how})
    feature = torch.zeros(64, 4)
    gen = torch.Generator().manual_seed(0)
    backwards = torch.full((64, 5), -0.5)  # Q 0.5: an action with a0 > 0 beats it
    value, action, off_data = losses.target_max(net, feature, backwards, cfg, gen)
    assert off_data.all() and (action[:, 0] > 0).all()
    torch.testing.assert_close(value, torch.sigmoid(net.logits(feature, action[:, None])[:, 0]))
    best = torch.ones(64, 5)  # a0 = 1: nothing in the box scores higher
    value, action, off_data = losses.target_max(net, feature, best, cfg, gen)
    assert not off_data.any()
    torch.testing.assert_close(action, best)
    assert value.min().item() == pytest.approx(torch.sigmoid(torch.tensor(20.0)).item())


@pytest.mark.parametrize('own_trunk', [False, True])
def test_target_actor_puts_the_actors_action_into_the_target_max(own_trunk) -> None:
    net = _step_net(actor=True, own_trunk=own_trunk)
    with torch.no_grad():  # the actor proposes a0 = tanh(2) = 0.96 everywhere: Q ~ 1
        for w in net.actor.parameters():
            w.zero_()
        net.actor[-2].bias[0] = 2.0
    feature = torch.zeros(64, 4)
    inputs = (torch.zeros(64, 2), torch.zeros(64, 2), None)  # s', g for the actor's trunk
    backwards = torch.full((64, 5), -0.5)  # the data's next action: Q 0.5
    gen = torch.Generator().manual_seed(0)
    one_sample = {'target_samples': 1, 'network.actor_head': True,
                  'network.actor_trunk': own_trunk}
    cfg = tiny_config('state').with_overrides(one_sample)
    value = losses.target_max(net, feature, backwards, cfg, gen)[0]
    assert value.min().item() == pytest.approx(0.5)  # one uniform sample often misses a0 > 0
    cfg = cfg.with_overrides({'target_actor': True})
    if own_trunk:
        with pytest.raises(ValueError, match='actor_trunk'):  # it cannot read Q's feature
            losses.target_max(net, feature, backwards, cfg, gen)
    value, action, off_data = losses.target_max(net, feature, backwards, cfg, gen,
                                                inputs=inputs)
    assert off_data.all() and (action[:, 0] > 0.9).all()
    assert value.min().item() >= torch.sigmoid(torch.tensor(20 * 0.96)).item() - 1e-6


def test_max_action_negative_lowers_q_where_the_target_max_leaves_the_data(state_data) -> None:
    '''With the paper's CEM max, Q of the maximiser for random goals comes down when the
    maximiser is pushed to 0; near goals stay above random ones.'''
    q_max = {}
    for push in (False, True):
        cfg = tiny_config('state', updates=300).with_overrides(
            {'target_max': 'cem', 'relabel.max_action_negative': push})
        trainer = Trainer(cfg, state_data)
        row = trainer.train()
        with torch.no_grad():
            batch = trainer.sample_batch(512)
            random_goal = batch.bootstrap * (1 - batch.hindsight) > 0
            feature = trainer.net.encode(batch.obs, batch.goal, batch.proprio)
            value = losses.target_max(trainer.net, feature, batch.action, cfg,
                                      torch.Generator().manual_seed(1))[0]
        q_max[push] = value[random_goal].mean().item()
        if push:
            diag = trainer.diagnostics()
            assert diag['diag/q_offset_1'] > diag['diag/q_random_goal']
            assert 0 < row['critic/max_negative_fraction'] <= 1
    assert q_max[True] < q_max[False] - 0.05, q_max


def test_the_actor_loss_climbs_q_or_clones_the_data_and_trains_the_actor_alone(
        state_data) -> None:
    batch = Trainer(tiny_config('state'), state_data).sample_batch(64)
    batch = replace(batch, hindsight=torch.ones(64), action=torch.full((64, 5), -0.5))
    feature = torch.zeros(64, 4).requires_grad_()
    # The actor starts at a constant action with a0 = tanh(start) (its other weights zero):
    # just inside Q's slope for climbing, below it (Q flat at 0.5) for cloning.
    for bc_weight, start, check in (
            (0.0, 0.05, lambda pi: (pi[:, 0] > 0.5).all()),  # Q ~ 1 for a0 > 0
            (10.0, -0.2, lambda pi: (pi + 0.5).abs().max() < 0.05)):  # the data's action
        net = _step_net(actor=True)
        with torch.no_grad():
            for w in net.actor.parameters():
                w.zero_()
            net.actor[-2].bias[0] = start
        optimizer = torch.optim.Adam(net.actor.parameters(), lr=0.05)
        for _ in range(400):
            optimizer.zero_grad()
            loss = losses.actor_loss(net, feature, batch, bc_weight, {})
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            assert check(net.propose(feature)), (bc_weight, net.propose(feature)[0])
        # The gradient reached neither Q's weights nor the feature (the trunk).
        assert all(p.grad is None for p in [*net.trunk.parameters(), *net.head.parameters()])
        assert feature.grad is None


@pytest.mark.parametrize('own_trunk', [False, True])
def test_an_actor_head_leaves_q_training_unchanged_and_proposes_goal_reaching_actions(
        state_data, tmp_path, own_trunk) -> None:
    nets, paths = {}, {}
    for actor in (False, True):
        cfg = tiny_config('state', updates=600).with_overrides(
            {'network.actor_head': actor, 'network.actor_trunk': actor and own_trunk})
        trainer = Trainer(cfg, state_data)
        row = trainer.train()
        nets[actor] = trainer.net
        paths[actor] = trainer.save(tmp_path / f'ckpt_{actor}')
    with_actor = nets[True].state_dict()
    for name, weight in nets[False].state_dict().items():  # Q bit for bit as without it
        torch.testing.assert_close(with_actor[name], weight, rtol=0, atol=0)
    assert (nets[True].actor_trunk is not None) == own_trunk
    assert row['actor/q'] > row['diag/q_data_action'], row  # above the data actions' Q
    # Told not to use it, the checkpoint acts exactly as the one trained without the head.
    ignored = GoalReachingPolicy.from_checkpoint(paths[True], use_actor=False)
    assert not ignored.has_actor
    rollouts = [evaluate(p, PointWorld(32), eval_tasks=[], reach_tasks=5, max_steps=10,
                         seed=3, filmstrips=0)['rollout_details']
                for p in (ignored, GoalReachingPolicy.from_checkpoint(paths[False]))]
    np.testing.assert_equal(rollouts[0], rollouts[1])  # NaN fields equal too
    policy = GoalReachingPolicy.from_checkpoint(paths[True])
    assert policy.has_actor
    if own_trunk:  # weights with an actor trunk, a config without one: named
        bad = Path(shutil.copytree(paths[True], tmp_path / 'no_trunk'))
        meta = json.loads((bad / 'checkpoint.json').read_text())
        meta['config']['network']['actor_trunk'] = False
        (bad / 'checkpoint.json').write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match='network.actor_trunk'):
            GoalReachingPolicy.from_checkpoint(bad)
    assert success_rate(policy) >= 60
    # The actor's own action, without CEM, reaches goals too.
    policy.cem = replace(policy.cem, samples=1, elites=1, iterations=1, proposal_std=1e-6)
    assert success_rate(policy) >= 50


def test_an_actor_head_is_refused_for_gcbc_and_a_negative_bc_weight_too() -> None:
    with pytest.raises(ValueError, match='actor_head'):
        tiny_config('state', agent='gcbc').with_overrides({'network.actor_head': True}).validate()
    with pytest.raises(ValueError, match='actor_bc_weight'):
        tiny_config('state').with_overrides({'actor_bc_weight': -1.0}).validate()
    with pytest.raises(ValueError, match='target_actor'):
        tiny_config('state').with_overrides({'target_actor': True}).validate()
    with pytest.raises(ValueError, match='actor_trunk'):
        tiny_config('state').with_overrides({'network.actor_trunk': True}).validate()
    with pytest.raises(ValueError, match='proposal_std'):
        tiny_config('state').with_overrides({'act_cem.proposal_std': 0.0}).validate()


def test_negative_actions_are_drawn_in_proportion_to_exp_q() -> None:
    '''A network whose Q is high for a[0] > 0: cold sampling picks those, hot is uniform.'''
    net = _step_net()
    feature = torch.zeros(256, 4)
    gen = torch.Generator().manual_seed(0)
    cold = replace(tiny_config('state'), relabel=replace(
        tiny_config('state').relabel, num_negative_candidates=16, negative_temperature=0.05))
    hot = replace(cold, relabel=replace(cold.relabel, negative_temperature=100.0))
    picks_cold = losses.sample_negative_actions(net, feature, 8, cold, gen)
    picks_hot = losses.sample_negative_actions(net, feature, 8, hot, gen)
    assert picks_cold.shape == (256, 8, 5)
    assert (picks_cold[..., 0] > 0).float().mean() > 0.97
    assert abs((picks_hot[..., 0] > 0).float().mean() - 0.5) < 0.05


def test_local_negatives_differ_from_the_data_action_in_one_entry_by_the_margin() -> None:
    gen = torch.Generator().manual_seed(0)
    data = torch.rand(512, 5, generator=gen) * 2 - 1
    data[0] = torch.tensor([1.0, -1.0, 0.0, 0.9, -0.95])  # gaps clipped by the box
    cands = losses.local_candidates(data, 6, 0.5, gen)
    assert cands.shape == (512, 6, 5) and cands.abs().max() <= 1.0
    changed = cands != data[:, None]
    assert torch.equal(changed.sum(-1), torch.ones(512, 6, dtype=torch.long))
    moved = (cands - data[:, None]).abs()[changed]
    assert moved.min() >= 0.5
    assert 0.9 < moved.max() <= 2.0
    # Every entry gets redrawn, on either side of the data's value.
    assert torch.equal(changed.any(1).any(0), torch.ones(5, dtype=torch.bool))
    above = (cands > data[:, None])[changed].float().mean()
    assert 0.3 < above < 0.7


def test_a_share_of_negative_candidates_lies_next_to_the_data_action() -> None:
    net = QNetwork(NetworkConfig(observation='state', state_dim=2, proprio_dim=0,
                                 trunk_dim=4, hidden_dims=(4,)))
    cfg = tiny_config('state').with_overrides({'relabel.num_negative_candidates': 16,
                                               'relabel.local_negatives': 1.0,
                                               'relabel.negative_temperature': 100.0})
    data = torch.rand(64, 5) * 2 - 1
    picks = losses.sample_negative_actions(net, torch.zeros(64, 4), 8, cfg,
                                           torch.Generator().manual_seed(1), data)
    assert torch.equal((picks != data[:, None]).sum(-1), torch.ones(64, 8, dtype=torch.long))
    uniform = losses.sample_negative_actions(
        net, torch.zeros(64, 4), 8, cfg.with_overrides({'relabel.local_negatives': 0.0}),
        torch.Generator().manual_seed(1), data)
    assert (uniform != data[:, None]).all()
    with pytest.raises(ValueError, match='relabel.local_negatives'):
        cfg.with_overrides({'relabel.local_negatives': 1.5}).validate()
    with pytest.raises(ValueError, match='relabel.local_negative_margin'):
        cfg.with_overrides({'relabel.local_negative_margin': 1.0}).validate()


def test_a_tiny_dataset_is_fitted() -> None:
    '''One-step goals: Q(s, a, s') of dataset transitions -> 1, of other actions -> 0.'''
    data = make_point_dataset(6, 20, image_size=None, seed=1)
    cfg = tiny_config('state', updates=500, seed=1).with_overrides(
        {'relabel.max_cut_length': 1, 'relabel.hindsight_goal_prob': 1.0,
         'relabel.num_negatives': 8})
    trainer = Trainer(cfg, data)
    trainer.train()
    frames = np.flatnonzero(np.diff(data.episode_index()) == 0)  # frames with a successor
    s = torch.from_numpy(data.states[frames])
    g = torch.from_numpy(data.states[frames + 1])
    a = torch.from_numpy(data.actions[frames])
    rng = np.random.default_rng(0)
    far = rng.uniform(-1, 1, a.shape).astype(np.float32)
    far[:, :2] = -np.sign(a[:, :2].numpy())  # the opposite direction: it cannot reach s'
    with torch.no_grad():
        q_pos = torch.sigmoid(trainer.net(s, g, None, a))
        q_neg = torch.sigmoid(trainer.net(s, g, None, torch.from_numpy(far)))
    assert q_pos.mean() > 0.8, q_pos.mean()
    assert q_neg.mean() < 0.2, q_neg.mean()


def test_her_without_negatives_overestimates_unreachable_goals(trained_am, state_data) -> None:
    '''The paper's finding: without negatives Q collapses upwards; AM keeps random goals low.'''
    am_diag = trained_am[0].diagnostics()
    her = Trainer(tiny_config('state', updates=400, agent='her'), state_data)
    her.train()
    her_diag = her.diagnostics()
    assert her_diag['diag/q_random_goal'] > am_diag['diag/q_random_goal'] + 0.15
    her_neg = Trainer(tiny_config('state', updates=400, agent='her_neg'), state_data)
    her_neg.train()
    neg_diag = her_neg.diagnostics()
    assert neg_diag['diag/q_random_goal'] < her_diag['diag/q_random_goal'] - 0.1


def test_gcbc_learns_the_dataset_actions(state_data) -> None:
    '''With the next state as goal, the moving dimensions (x, y) of the action are implied.'''
    trainer = Trainer(tiny_config('state', updates=400, agent='gcbc'), state_data)
    row = trainer.train()
    assert row['diag/bc_error_offset_1'] < row['diag/bc_error_offset_20']
    frames = np.flatnonzero(np.diff(state_data.episode_index()) == 0)
    s = torch.from_numpy(state_data.states[frames])
    g = torch.from_numpy(state_data.states[frames + 1])
    with torch.no_grad():
        pred = trainer.net(s, g, None).numpy()
    xy = state_data.actions[frames, :2]
    constant = float(np.mean((xy - xy.mean(0)) ** 2))  # the best goal-blind guess
    assert np.mean((pred[:, :2] - xy) ** 2) < 0.6 * constant


def test_gcbc_policy_acts_without_a_q_function(state_data, tmp_path) -> None:
    trainer = Trainer(tiny_config('state', updates=50, agent='gcbc'), state_data)
    trainer.train()
    policy = GoalReachingPolicy.from_checkpoint(trainer.save(tmp_path / 'ckpt'))
    policy.set_goal(np.array([0.5, 0.5], np.float32))
    step = policy.act(np.array([0.2, 0.7], np.float32), None)
    assert step.action.shape == (5,) and np.all(np.abs(step.action) <= 1)
    assert np.isnan(step.q_value)


def test_finetuning_and_auxiliary_objective_learn_the_task_reward(trained_am, state_data) -> None:
    '''Pre-trained AM -> task Q (reward: entering x > 0.8); and L_task + xi L_g from scratch.'''
    _, pretrained = trained_am
    in_region = (state_data.states[:, 0] > 0.8).astype(np.float32)
    base = tiny_config('state', updates=300).with_overrides(
        {'task_weight': 1.0, 'task_positive_prob': 0.2})
    finetune = Trainer(base.with_overrides({'aux_weight': 0.0,
                                            'finetune_from': str(pretrained)}),
                       state_data, rewards=in_region)
    aux = Trainer(base.with_overrides({'aux_weight': 0.1}), state_data, rewards=in_region)
    same_episode = np.flatnonzero(np.diff(state_data.episode_index()) == 0)
    entering = same_episode[(in_region[same_episode] == 0) & (in_region[same_episode + 1] == 1)]
    far = same_episode[state_data.states[same_episode, 0] < 0.3]
    for trainer in (finetune, aux):
        row = trainer.train()
        assert 'task/td_loss' in row

        def q(frames: np.ndarray, net: torch.nn.Module = trainer.net) -> float:
            s = torch.from_numpy(state_data.states[frames])
            a = torch.from_numpy(state_data.actions[frames])
            with torch.no_grad():
                return float(torch.sigmoid(net(s, torch.zeros_like(s), None, a)).mean())

        # The conservative term pushes sampled actions (many of which also enter the
        # region here) towards 0, so the task Q of entering is lower than 1 in absolute
        # terms; what matters is that it is far above states far from the region.
        assert q(entering) > 0.3 and q(entering) > q(far) + 0.25, (q(entering), q(far))
        assert row['task/negative_loss'] > 0
    assert 'critic/td_loss' in row  # the auxiliary goal-reaching term ran alongside


def test_finetuning_from_a_mismatched_checkpoint_is_refused(trained_am, state_data) -> None:
    _, pretrained = trained_am
    cfg = tiny_config('state').with_overrides({'network.trunk_dim': 32,
                                               'finetune_from': str(pretrained)})
    with pytest.raises(CheckpointError, match='network.trunk_dim'):
        Trainer(cfg, state_data)


def test_config_that_does_not_fit_the_dataset_is_refused(state_data) -> None:
    cfg = tiny_config('state').with_overrides({'network.state_dim': 3})
    with pytest.raises(ValueError, match='network.state_dim=3'):
        Trainer(cfg, state_data)
    with pytest.raises(ValueError, match='no images'):
        Trainer(tiny_config('image'), state_data)


def test_default_config_documents_every_field() -> None:
    import dataclasses

    from am_learning import config as config_module

    source = Path(config_module.__file__).read_text()
    for cls in (TrainConfig, NetworkConfig, config_module.RelabelConfig,
                config_module.CEMConfig):
        for f in dataclasses.fields(cls):
            marker = f'    {f.name}: '
            after = source.split(marker, 1)[1].split('\n', 2)
            assert after[1].strip().startswith("'''") or after[2].strip().startswith("'''"), \
                f'{cls.__name__}.{f.name} has no docstring'


@pytest.mark.skipif(not Path('/proc/cpuinfo').exists(), reason='reads Linux CPU flags')
def test_bf16_autocast_only_where_the_cpu_has_bf16(state_data) -> None:
    '''Emulated bf16 was measured about 9x slower than fp32 on an AVX2-only CPU: image
    networks train under autocast only on a CPU with AVX512-BF16 or AMX.'''
    flags = set(Path('/proc/cpuinfo').read_text().split())
    has_bf16 = bool({'avx512_bf16', 'amx_bf16'} & flags)
    assert native_bf16(torch.device('cpu')) == has_bf16
    image = Trainer(tiny_config('image', 32), make_point_dataset(2, 10, image_size=32))
    assert image.autocast == has_bf16
    assert not Trainer(tiny_config('state'), state_data).autocast
    off = tiny_config('image', 32).with_overrides({'autocast_bf16': False})
    assert not Trainer(off, make_point_dataset(2, 10, image_size=32)).autocast


@pytest.mark.slow
def test_image_am_reaches_goal_images(tmp_path) -> None:
    '''From pixels: goal images of the point world, greedy CEM over the image Q-network
    (measured: 2000 updates -> 87-93 % of reach tasks, random actions ~7 %).'''
    data = make_point_dataset(40, 50, image_size=32, seed=0)
    trainer = Trainer(tiny_config('image', 32, updates=2000), data)
    row = trainer.train()
    assert row['diag/q_offset_1'] > row['diag/q_offset_20'] > row['diag/q_random_goal']
    greedy = success_rate(GoalReachingPolicy.from_checkpoint(trainer.save(tmp_path / 'c')))
    assert greedy >= 50 and greedy >= success_rate(None) + 30, greedy


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device (lent GPU)')
def test_cuda_graph_training_fits_like_eager_training(tmp_path) -> None:
    '''The captured update learns what the eager one learns, and logs the same metrics,
    also in a resumed run.'''
    data = make_point_dataset(6, 20, image_size=None, seed=1)
    cfg = tiny_config('state', updates=500, seed=1).with_overrides(
        {'relabel.max_cut_length': 1, 'relabel.hindsight_goal_prob': 1.0,
         'relabel.num_negatives': 8, 'device': 'cuda'})
    frames = np.flatnonzero(np.diff(data.episode_index()) == 0)
    s, g, a = (torch.from_numpy(x).cuda() for x in (
        data.states[frames], data.states[frames + 1], data.actions[frames]))
    rows = {}
    for graphs in (True, False):
        run = tmp_path / str(graphs)
        trainer = Trainer(cfg.with_overrides({'cuda_graphs': graphs, 'updates': 450}), data,
                          run_dir=run)
        trainer.train()
        trainer = Trainer(cfg.with_overrides({'cuda_graphs': graphs}), data, run_dir=run)
        rows[graphs] = trainer.train()  # resumed: warms up again before capturing
        assert (trainer.graph_step is not None) == graphs
        with torch.no_grad():
            assert torch.sigmoid(trainer.net(s, g, None, a)).mean() > 0.8
    assert rows[True].keys() == rows[False].keys()
    assert abs(rows[True]['critic/q_mean'] - rows[False]['critic/q_mean']) < 0.1
