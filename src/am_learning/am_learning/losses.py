'''Loss functions of the agents: pure functions of (networks, batch, config, generator).

Each returns (loss, metrics) with namespaced metric keys ('critic/q_mean', ...); metrics are
detached 0-d tensors, so an update never waits for the device (train.py averages them per
log interval), and nothing here reads a value back to the host: the whole update can be
captured in a CUDA graph (train.CudaGraphStep). Q-values
are probabilities in [0, 1] (sigmoid of the network's logit); the regression loss on them is
`TrainConfig.loss`: cross-entropy (default) or squared error (the slides' equation (1)).
'''

import torch
from torch.nn import functional as F

from am_learning.cem import cem_maximize
from am_learning.config import TrainConfig
from am_learning.networks import PolicyNetwork, QNetwork
from am_learning.relabel import TensorBatch

Metrics = dict[str, torch.Tensor]


def q_regression(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    '''Elementwise loss between sigmoid(logits) and targets in [0, 1].'''
    logits = logits.float()
    if kind == 'bce':
        return F.binary_cross_entropy_with_logits(logits, target, reduction='none')
    return (torch.sigmoid(logits) - target) ** 2


@torch.no_grad()
def target_max(target_net: QNetwork, feature: torch.Tensor, next_action: torch.Tensor,
               cfg: TrainConfig, generator: torch.Generator,
               data: torch.Tensor | None = None,
               inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    '''max_a Q_target(s', a, g) (B,), by CEM or over uniform samples, with the dataset
    action (and, with cfg.target_actor, the actor's action) as candidates too; with the action
    that gave it (B, A) and where that is not the dataset action (B,) bool.
    `data`: the dataset action's float logit (B,), computed here unless given; `inputs`:
    (s', g, proprio'), which an actor with a trunk of its own reads.'''
    batch, dim = next_action.shape
    if data is None:
        data = target_net.logits(feature, next_action.unsqueeze(1))[:, 0].float()
    if cfg.target_max == 'cem':
        def score(actions: torch.Tensor) -> torch.Tensor:
            return target_net.logits(feature, actions)

        found_action, found = cem_maximize(score, batch, dim, cfg.target_cem, generator,
                                           feature.device)
        found = found.float()
    else:
        uniform = torch.rand(batch, cfg.target_samples, dim, device=feature.device,
                             generator=generator) * 2 - 1
        found, pick = target_net.logits(feature, uniform).float().max(dim=1)
        found_action = uniform.gather(1, pick[:, None, None].expand(-1, 1, dim))[:, 0]
    if cfg.target_actor:
        proposal = target_net.propose(feature, *(inputs or ())).float()
        scored = target_net.logits(feature, proposal.unsqueeze(1))[:, 0].float()
        better = scored > found
        found = torch.where(better, scored, found)
        found_action = torch.where(better[:, None], proposal, found_action)
    # The search may miss the dataset's own next action: include it, as QT-Opt's CEM seeds do.
    beats_data = found > data
    return (torch.sigmoid(torch.maximum(found, data)),
            torch.where(beats_data[:, None], found_action, next_action), beats_data)


def sample_negative_actions(q_net: QNetwork, feature: torch.Tensor, num: int,
                            cfg: TrainConfig, generator: torch.Generator,
                            data_action: torch.Tensor | None = None) -> torch.Tensor:
    '''(B, num, A) actions drawn among candidates with p ~ exp(Q / temperature).

    Candidates are uniform over the action box, except a `relabel.local_negatives` share
    that lies next to `data_action` (B, A) (see local_candidates). The proposal favours
    actions the network currently rates highly: those are the overestimated unseen actions
    the conservative term must push down.
    '''
    batch = feature.shape[0]
    rc = cfg.relabel
    candidates = torch.rand(batch, rc.num_negative_candidates, cfg.network.action_dim,
                            device=feature.device, generator=generator) * 2 - 1
    local = round(rc.local_negatives * rc.num_negative_candidates)
    if local > 0 and data_action is not None:
        candidates[:, :local] = local_candidates(data_action, local, rc.local_negative_margin,
                                                 generator)
    with torch.no_grad():
        q = torch.sigmoid(q_net.logits(feature.detach(), candidates).float())  # (B, K)
        # Gumbel-max: argmax of log p + Gumbel noise is a draw from p = softmax(q / T).
        uniform = torch.rand(batch, num, candidates.shape[1], device=feature.device,
                             generator=generator)
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=1e-12)))
        pick = (q.unsqueeze(1) / rc.negative_temperature + gumbel).argmax(dim=-1)  # (B, M)
    return torch.gather(candidates, 1, pick.unsqueeze(-1).expand(-1, -1, candidates.shape[-1]))


def local_candidates(data_action: torch.Tensor, num: int, margin: float,
                     generator: torch.Generator) -> torch.Tensor:
    '''(B, num, A): copies of `data_action` (B, A) in [-1, 1], each with one random entry
    redrawn uniformly from [-1, 1] outside (value - margin, value + margin).'''
    batch, dim = data_action.shape
    device = data_action.device
    value = data_action.detach().float().clamp(-1, 1).unsqueeze(1).expand(batch, num, dim)
    entry = torch.randint(0, dim, (batch, num, 1), device=device, generator=generator)
    old = value.gather(2, entry)
    gap_low = (old - margin).clamp(min=-1.0)
    gap_high = (old + margin).clamp(max=1.0)
    # Uniform over the box's length outside the gap, then shifted past the gap.
    draw = -1.0 + torch.rand(old.shape, device=device, generator=generator) \
        * (2.0 - (gap_high - gap_low))
    draw = torch.where(draw >= gap_low, draw + (gap_high - gap_low), draw)
    return value.scatter(2, entry, draw.to(value.dtype))


@torch.no_grad()
def td_targets(target_net: QNetwork, batch: TensorBatch, cfg: TrainConfig,
               generator: torch.Generator) -> torch.Tensor:
    '''(B,) TD targets in [0, 1] of a relabeled batch (see q_learning_loss).'''
    return td_targets_and_max(target_net, batch, cfg, generator)[0]


@torch.no_grad()
def td_targets_and_max(target_net: QNetwork, batch: TensorBatch, cfg: TrainConfig,
                       generator: torch.Generator,
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    '''TD targets (B,), the action the max chose at s' (B, A), and (B,) 1.0 where that
    action is not the dataset's and the target bootstraps from it.'''
    next_feature = target_net.encode(batch.next_obs, batch.goal, batch.next_proprio)
    data = target_net.logits(next_feature, batch.next_action.unsqueeze(1))[:, 0].float()
    v_max, max_action, beats_data = target_max(
        target_net, next_feature, batch.next_action, cfg, generator, data,
        (batch.next_obs, batch.goal, batch.next_proprio))
    # The chained goal's reward at s_i is Q_target(s_i, a_i, g), a_i the dataset action.
    q_data = torch.sigmoid(data)
    y = batch.reward + cfg.gamma * (batch.bootstrap * v_max + batch.chain * q_data)
    if cfg.relabel.lower_bound:
        y = torch.maximum(y, path_lower_bound(target_net, batch, cfg.gamma))
    return y.clamp_(0.0, 1.0), max_action, batch.bootstrap * beats_data.float()


def path_lower_bound(target_net: QNetwork, batch: TensorBatch, gamma: float) -> torch.Tensor:
    '''(B,) discounted return of the dataset's path to the goal (RelabelConfig.lower_bound).

    Hindsight goal k = i - t steps ahead: gamma^(k-1). Chained random goal: gamma^k
    Q_target(s_i, a_i, g); for k = 1 that is the chain target itself, so only examples
    further back need Q at s_i: those batch.cut_rows names, or every example when it is
    None (fixed shapes for a CUDA graph; the mask then keeps the ones it applies to).
    Random-goal negatives get 0.
    '''
    bound = batch.hindsight * gamma ** (batch.steps - 1)
    if batch.cut_obs is None:
        return bound
    rows = batch.cut_rows
    goal = batch.goal if rows is None else batch.goal[rows]
    feature = target_net.encode(batch.cut_obs, goal, batch.cut_proprio)
    q_cut = torch.sigmoid(target_net.logits(feature, batch.cut_action.unsqueeze(1))[:, 0])
    if rows is None:
        far = (batch.chained > 0) & (batch.steps > 1)
        return torch.where(far, gamma ** batch.steps * q_cut.float(), bound)
    return bound.index_put((rows,), gamma ** batch.steps[rows] * q_cut.float())


def q_learning_loss(q_net: QNetwork, target_net: QNetwork, batch: TensorBatch,
                    cfg: TrainConfig, generator: torch.Generator, *,
                    negatives: bool) -> tuple[torch.Tensor, Metrics]:
    '''Goal-conditioned TD loss; with `negatives`, plus the conservative term of (1).

    Target per example (see relabel.py for the masks):
        y = reward + gamma * (bootstrap * max_a Q'(s', a, g) + chain * Q'(s', a', g))
    where Q' is the target network and a' the dataset action at s' (= s_i for chain
    examples, the final transition of a cut with a random goal), and y = 0 for random-goal
    negatives (all masks zero). A network with an actor head adds its loss (actor_loss).
    '''
    feature = q_net.encode(batch.obs, batch.goal, batch.proprio)  # (B, F)
    logit = q_net.logits(feature, batch.action.unsqueeze(1))[:, 0]  # (B,)
    y, max_action, off_data = td_targets_and_max(target_net, batch, cfg, generator)
    q = torch.sigmoid(logit.detach().float())
    # Random-goal negatives (her_neg) are given targets, not estimates: never down-weighted.
    weight = torch.where(batch.goal_negative > 0, 1.0, expectile_weight(q, y, cfg.td_expectile))
    td = (weight * q_regression(logit, y, cfg.loss)).mean()
    metrics: Metrics = {
        'critic/td_loss': td.detach(),
        'critic/q_mean': q.mean(),
        'critic/target_mean': y.mean(),
        'critic/positive_fraction': batch.reward.mean(),
        'critic/chain_fraction': batch.chain.mean(),
    }
    loss = td
    if negatives:
        loss = loss + negative_action_loss(q_net, feature, cfg, generator, metrics, 'critic',
                                           batch.action)
        if cfg.relabel.max_action_negative:
            # The target's maximiser, where it is not the data's action, pushed to 0 at
            # (s, g): s' is one step on, and this is the action the max exploits there.
            q_max = q_net.logits(feature, max_action.unsqueeze(1))[:, 0]
            zero = torch.zeros_like(q_max, dtype=torch.float32)
            push = (off_data * q_regression(q_max, zero, cfg.loss)).mean()
            metrics['critic/max_negative_fraction'] = off_data.mean()
            loss = loss + cfg.relabel.negative_weight * push
    metrics['critic/loss'] = loss.detach()
    if q_net.actor is not None:
        loss = loss + actor_loss(q_net, feature, batch, cfg.actor_bc_weight, metrics)
    return loss, metrics


def actor_loss(q_net: QNetwork, feature: torch.Tensor, batch: TensorBatch, bc_weight: float,
               metrics: Metrics) -> torch.Tensor:
    '''DDPG+BC for the actor head, over the hindsight-goal examples (goals the data reached):

        -Q(s, pi, g) / mean Q + bc_weight * 0.5 * |pi - a|^2,   pi = actor(feature)

    (pi = actor(own trunk(s, g)) for an actor with a trunk of its own.) Only the actor learns
    from it: Q's feature is detached and Q's head is called with detached weights, so the
    gradient reaches the actor through the action alone.'''
    feature = feature.detach()
    pi = q_net.propose(feature, batch.obs, batch.goal, batch.proprio)
    frozen = {name: w.detach() for name, w in q_net.head.named_parameters()}
    logit = torch.func.functional_call(q_net.head, frozen, (feature, pi.unsqueeze(1)))[:, 0]
    q = torch.sigmoid(logit.float())
    weight = batch.hindsight
    count = weight.sum().clamp(min=1.0)
    q_mean = (weight * q).sum() / count
    bc = (weight * 0.5 * ((pi.float() - batch.action) ** 2).sum(-1)).sum() / count
    metrics['actor/q'] = q_mean.detach()
    metrics['actor/bc_loss'] = bc.detach()
    return -q_mean / q_mean.detach().clamp(min=1e-3) + bc_weight * bc


def expectile_weight(q: torch.Tensor, target: torch.Tensor, expectile: float) -> torch.Tensor:
    '''(B,) 2 * expectile where target >= q, else 2 * (1 - expectile): all ones at 0.5.

    Both losses have gradient (q - y) in the logit for cross-entropy (and q - y times the
    sigmoid's slope for squared error), so the weighted fixed point is the expectile of the
    targets seen for one input, as IQL's asymmetric squared loss.'''
    return torch.where(target >= q, 2.0 * expectile, 2.0 * (1.0 - expectile))


def negative_action_loss(q_net: QNetwork, feature: torch.Tensor, cfg: TrainConfig,
                         generator: torch.Generator, metrics: Metrics, prefix: str,
                         data_action: torch.Tensor) -> torch.Tensor:
    '''The conservative term of (1), weighted: sampled unseen actions regressed to Q = 0.'''
    rc = cfg.relabel
    if rc.num_negatives == 0 or rc.negative_weight == 0:
        return torch.zeros((), device=feature.device)
    neg_actions = sample_negative_actions(q_net, feature, rc.num_negatives, cfg, generator,
                                          data_action)
    neg_logit = q_net.logits(feature, neg_actions)  # (B, M)
    neg = q_regression(neg_logit, torch.zeros_like(neg_logit, dtype=torch.float32),
                       cfg.loss).mean()
    metrics[f'{prefix}/negative_loss'] = neg.detach()
    metrics[f'{prefix}/q_negative_mean'] = torch.sigmoid(neg_logit.detach().float()).mean()
    return rc.negative_weight * neg


def gcbc_loss(policy: PolicyNetwork, batch: TensorBatch) -> tuple[torch.Tensor, Metrics]:
    '''Goal-conditioned behaviour cloning: regress the dataset action, goal = a later state.'''
    pred = policy(batch.obs, batch.goal, batch.proprio).float()
    loss = F.mse_loss(pred, batch.action)
    return loss, {'actor/bc_loss': loss.detach(),
                  'actor/action_abs_error': (pred.detach() - batch.action).abs().mean()}


def task_loss(q_net: QNetwork, target_net: QNetwork, batch: TensorBatch, task_goal: torch.Tensor,
              cfg: TrainConfig, generator: torch.Generator, *,
              negatives: bool) -> tuple[torch.Tensor, Metrics]:
    '''Task Q-learning with a task reward: Q_task(s, a) = Q(s, a, g_task), g_task fixed.

    batch.reward is the task reward of the transition (1 = the task is done on arrival, a
    terminal transition); the goal slot holds the fixed task goal, so a pre-trained
    goal-conditioned network is a valid initialisation of the task Q-function. With
    `negatives`, the conservative term of (1) as in goal reaching: without it the task Q
    of unseen actions climbs to ~0.9 on a 50-episode dataset and the greedy policy fails
    (bench/results/finetune.md).
    '''
    goal = task_goal.expand(batch.obs.shape[0], *task_goal.shape[1:])
    feature = q_net.encode(batch.obs, goal, batch.proprio)
    logit = q_net.logits(feature, batch.action.unsqueeze(1))[:, 0]
    with torch.no_grad():
        next_feature = target_net.encode(batch.next_obs, goal, batch.next_proprio)
        v_max = target_max(target_net, next_feature, batch.next_action, cfg, generator,
                           inputs=(batch.next_obs, goal, batch.next_proprio))[0]
        y = (batch.reward + cfg.gamma * (1.0 - batch.reward) * v_max).clamp_(0.0, 1.0)
    td = q_regression(logit, y, cfg.loss).mean()
    metrics = {'task/td_loss': td.detach(),
               'task/q_mean': torch.sigmoid(logit.detach().float()).mean(),
               'task/target_mean': y.mean(),
               'task/reward_fraction': batch.reward.mean()}
    loss = td
    if negatives:
        loss = loss + negative_action_loss(q_net, feature, cfg, generator, metrics, 'task',
                                           batch.action)
    return loss, metrics
