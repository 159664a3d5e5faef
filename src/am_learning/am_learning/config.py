'''Configuration of the learning core: one frozen dataclass per concern, every field documented.

The whole configuration of a run is a `TrainConfig`; it is written to a run folder's
config.json and into every checkpoint, and read back with `TrainConfig.from_dict`, which
rejects unknown keys and wrong types so a typo in a YAML file is an error, not a silent
default.
'''

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
import json
from pathlib import Path
import types
import typing
from typing import Any, Literal

AGENTS = ('am', 'gcbc', 'her', 'her_neg')


@dataclass(frozen=True)
class NetworkConfig:
    '''Shape of the Q-network (or of the GCBC policy network, which shares the trunk).'''

    observation: Literal['image', 'state'] = 'image'
    '''`image`: conv trunk over the channel-stacked (image, goal image) plus proprioception;
    `state`: MLP over (state, goal state).'''
    image_size: int = 64
    '''Square input resolution of images and goal images; other sizes are resized.'''
    conv_channels: tuple[int, ...] = (32, 64, 64)
    '''Output channels of the stride-2 3x3 conv layers of the image trunk.'''
    trunk_dim: int = 256
    '''Width of the linear layer after flatten (the per-state feature the head reuses).'''
    hidden_dims: tuple[int, ...] = (256,)
    '''Hidden layer widths of the head MLP over (feature, action). The head runs for every
    scored action (CEM, TD max, negative candidates: ~40 per example), so depth belongs in
    the trunk, which runs once per state.'''
    state_trunk_layers: int = 2
    '''Layers of trunk_dim units in the state trunk (state networks only).'''
    layer_norm: bool = False
    '''LayerNorm before every hidden ReLU of the state trunk and of the heads (as OGBench's
    value networks); the image trunk's convs are left as they are.'''
    proprio_dim: int = 7
    '''Length of the proprioception vector (6 arm joints + gripper opening); 0 for none.'''
    state_dim: int = 0
    '''Length of the state vector (state networks only).'''
    state_ignore: tuple[int, ...] = ()
    '''Indices of state-vector entries the state networks never see (zeroed in the state
    and the goal), e.g. joint velocities, from which a smooth demonstrator's next action
    can be read off without looking at the goal (the copycat shortcut).'''
    action_dim: int = 5
    '''Length of the normalised action (see am_learning.conventions).'''
    actor_head: bool = False
    '''Q agents: also learn an actor pi(s, g), an MLP (hidden_dims) on the trunk's feature,
    by DDPG+BC (TrainConfig.actor_bc_weight; OGBench's GCIQL extracts its policy so), and
    start acting's CEM at its action (CEMConfig.proposal_std) instead of at zero or the
    previous action. The actor trains on the detached feature, so Q learns as without it.
    Measured on cube-single (tuning.md, session 22; the same Q-functions acted on both ways):
    3.5% against 6.5% for warm-started CEM from zero, the actor alone 3%: off.'''
    actor_trunk: bool = False
    '''With actor_head: the actor reads (s, g) through a trunk of its own (the same shape as
    Q's) instead of Q's detached feature, so that imitation shapes its feature; with a large
    TrainConfig.actor_bc_weight it is a GCBC network inside the Q-network. Costs a second
    trunk's forward and backward per update. Measured on cube-single (tuning.md, session 23;
    the same Q-functions, 600 rollouts each): the actor imitates as GCBC does (BC loss 0.14
    against 0.19-0.21 on Q's feature), and CEM around it places 7.2% (alpha 100) and 6.3%
    (alpha 1) against 4.8% without it (paired z = 1.9 and 1.3); at 100k updates (alpha 100)
    9.0% against 3.5% (paired z = 2.5, 200 rollouts a side). Session 24, three more training
    seeds at 100k: 7.7% against 4.1% over 900 rollouts (z = 3.49); pooled over five seeds
    7.9% against 4.0% (z = 4.2). Off: measured on state vectors only, and an image actor
    trains at 0.65x the updates/s (bench/results/epyc_bf16/throughput.md).'''


@dataclass(frozen=True)
class RelabelConfig:
    '''How training examples are cut out of trajectories (the slides' Algorithm 1).'''

    hindsight_goal_prob: float = 0.5
    '''Probability that an example's goal is the cut's final state s_i (reward 1 on arrival);
    otherwise it is a random dataset state (goal chaining). Algorithm 1 stores every cut
    with both goals, i.e. 0.5.'''
    goal_offset: Literal['uniform', 'geometric'] = 'geometric'
    '''Where the cut falls relative to the transition. `uniform` is Algorithm 1: the cut i is
    uniform over the trajectory and the transition t uniform over its prefix, so most goals
    lie hundreds of steps ahead in long play episodes and almost no example sees a reward.
    `geometric`: t is uniform over the trajectory's transitions and i - t ~ Geometric(1 -
    offset_discount), clipped at the trajectory's end (OGBench's trajectory goals); measured
    on cube-single play data this is what lets Q separate goals beyond ~50 steps.'''
    offset_discount: float | None = None
    '''Geometric goal offsets only: the mean offset is 1 / (1 - offset_discount) steps.
    None (the default) follows the run's gamma, as OGBench samples trajectory goals with the
    value discount: the offsets then fall where Q ~ gamma^steps still tells goals apart.
    Measured on visual reach (gamma 0.95, 10 min): offsets of mean 100 steps gave 0.7% of
    examples a reward and Q(offset 1) = 0.82; following gamma (mean 20) gave 2.5% and 0.91,
    and the policy touched the goal in 72% of 25 goals instead of 52% (tuning.md).'''
    max_cut_length: int = 0
    '''If > 0, the cut is at most `max_cut_length` steps after the transition (both goal
    offset modes); 0 leaves the offset unbounded.'''
    lower_bound: bool = True
    '''Raise each TD target to the discounted return of the dataset's own path when that is
    larger: gamma^(k-1) for a hindsight goal k steps ahead (the data shows it is reachable
    in k steps), gamma^k Q_target(s_i, a_i, g) for a chained random goal. In a deterministic
    scene this is a lower bound on Q*, so it only speeds up value propagation over long
    horizons (an n-step return that never undershoots the one-step target).'''
    goal_chaining: bool = True
    '''Random-goal examples bootstrap the final transition of the cut from the target Q of
    (s_i, a_i, g). False treats random goals like any other goal (plain TD, no chaining).'''
    episode_sampling: Literal['uniform', 'length'] = 'length'
    '''Pick trajectories uniformly or in proportion to their length (every frame equally).'''
    num_negative_candidates: int = 16
    '''Uniform action candidates from which negative actions are drawn.'''
    num_negatives: int = 4
    '''Negative actions per example, drawn among the candidates with probability
    proportional to exp(Q / negative_temperature).'''
    negative_temperature: float = 1.0
    '''Temperature of the exp(Q) proposal over candidates (in units of Q in [0, 1]).'''
    negative_weight: float = 1.0
    '''Weight of the negative-action term (target 0) relative to the TD term.'''
    local_negatives: float = 0.0
    '''Fraction of the negative candidates drawn next to the dataset action: that action with
    one random entry redrawn uniformly at least `local_negative_margin` away from its value.
    Uniform candidates differ from the data in every entry at once, so Q can stay flat along
    one entry whose effect is small per step (a gripper's yaw); these teach Q, where the
    data is, that each entry matters. 0 (the paper's uniform candidates) by default.'''
    local_negative_margin: float = 0.5
    '''Least distance of a local candidate's redrawn entry from the dataset action's.'''
    max_action_negative: bool = False
    '''Also regress to 0, at (s, g), the action the TD target's max chose at s' where that is
    not the dataset's next action (CQL's push-down of the maximiser): the out-of-data action
    whose overestimate the max would carry into Q, which uniform candidates seldom hit.
    Weighted by negative_weight; agents with negatives only. With `target_max` = `cem` it
    keeps random goals apart (their Q 0.05 against 0.69 for the plain CEM max at 4k updates;
    0.04-0.05 against the sampled max's 0.25-0.28 at 50k) but placed no more cubes on
    cube-single (tuning.md, session 21): off.'''
    random_goal_negative_prob: float = 0.3
    '''her_neg only: fraction of examples whose goal is a random dataset state with target 0.'''


@dataclass(frozen=True)
class CEMConfig:
    '''Cross-entropy method over the action box [-1, 1]^A (QT-Opt style).'''

    samples: int = 64
    '''Actions sampled per iteration.'''
    iterations: int = 3
    '''Refinement iterations (the mean/std are refitted to the elites after each).'''
    elites: int = 6
    '''Best samples the Gaussian is refitted to.'''
    init_std: float = 0.5
    '''Initial standard deviation around the initial mean (zero, or the last action when
    warm-started).'''
    min_std: float = 0.05
    '''Floor on the refitted standard deviation, so the search never collapses.'''
    warm_start: bool = False
    '''Acting only: centre each control step's first Gaussian on the previous step's action
    for the same goal instead of on zero, so that action dimensions Q is indifferent to keep
    their value from step to step instead of being redrawn (a dithering gripper).'''
    proposal_std: float = 0.2
    '''Acting with an actor head (NetworkConfig.actor_head): the first Gaussian is centred on
    the actor's action with this standard deviation, and the actor's action itself is scored
    as a candidate; warm_start and init_std then do not apply.'''


@dataclass(frozen=True)
class TrainConfig:
    '''Everything a training run needs besides its dataset.'''

    agent: Literal['am', 'gcbc', 'her', 'her_neg'] = 'am'
    '''`am` (Actionable Models), or one of the paper's baselines: `gcbc` (goal-conditioned
    behaviour cloning), `her` (Q-learning with hindsight goals, no negatives), `her_neg`
    (HER plus random-goal negatives with target 0).'''
    network: NetworkConfig = field(default_factory=NetworkConfig)
    '''Network shape.'''
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    '''Relabeling probabilities and negative sampling.'''
    act_cem: CEMConfig = field(
        default_factory=lambda: CEMConfig(samples=256, iterations=4, warm_start=True))
    '''CEM used for acting (policy node, evaluation). 256 x 4 rather than QT-Opt's 64 x 3:
    on the GPU-trained cube-single checkpoints it lifted success from 6 to 11% (30k updates)
    and from 11 to 18.5% (129k), where 1024 x 4 added nothing more; on the default image
    network it costs 1.2 ms p99 per act on 2 CPU cores against 1.0. Warm-started: on a 48k
    cube-single checkpoint the policy closed the gripper in 2 separate attempts per rollout
    (median) instead of 6-8, success unchanged (bench/results/tuning.md, session 19).
    Checkpoints saved without the warm_start field act cold, as they were evaluated.'''
    target_cem: CEMConfig = field(
        default_factory=lambda: CEMConfig(samples=32, iterations=2, elites=4))
    '''CEM used for the max in the TD target when target_max == `cem`.'''
    target_max: Literal['cem', 'sampled'] = 'sampled'
    '''How max_a Q_target(s', a, g) is taken: `cem` as in the paper, or `sampled`: the max
    over `target_samples` uniform actions plus the dataset's next action (half the cost on a
    CPU). With the conservative negatives the sampled max is the dataset's next action in
    94-96% of examples, while the CEM max lifts Q of random goals to that of near goals
    unless relabel.max_action_negative holds it down (tuning.md, session 21).'''
    target_samples: int = 16
    '''Uniform actions for target_max == `sampled`.'''
    target_actor: bool = False
    '''With network.actor_head: the target network's actor action at s' is a candidate of
    the TD target's max too (TD3+BC's target, where the BC term keeps the actor near the
    data), a max that the sampled one, being mostly the data's next action, is not. Measured
    on cube-single (tuning.md, session 22): Q of random goals climbs to that of goals one step
    ahead within 4k updates (0.81 against 0.83), as with the plain CEM max: off.'''
    loss: Literal['bce', 'mse'] = 'bce'
    '''Q regression loss. `bce`: cross-entropy between sigmoid(Q) and the target in [0, 1]
    (the house choice, ARCHITECTURE.md: Q is a reaching probability, and cross-entropy keeps
    gradients alive when the sigmoid saturates); `mse`: squared error as in the slides' (1).'''
    td_expectile: float = 0.5
    '''Expectile of the goal-reaching TD regression: targets above the current Q weigh
    2 * td_expectile, targets below it 2 * (1 - td_expectile); 0.5 is the plain regression of
    (1). With the conservative negatives the sampled max in the target is mostly the dataset's
    next action, so the plain regression learns the play data's own chance of reaching g
    (SARSA); above 0.5 Q leans towards the best of the outcomes seen from similar (s, a), the
    in-sample max of IQL and of OGBench's GCIQL (expectile 0.9). Measured on cube-single
    (tuning.md, session 21): 0.7 and 0.9 lift Q of random goals to that of goals a few steps
    ahead (0.72 and 0.87 at 8k updates, against 0.35), so nothing tells goals apart: 0.5.'''
    actor_bc_weight: float = 1.0
    '''With network.actor_head: alpha of the actor's DDPG+BC loss,
    -Q(s, pi(s, g), g) / mean |Q| + alpha * 0.5 * |pi(s, g) - a|^2 over hindsight-goal
    examples (OGBench's GCIQL uses 1.0 on manipulation). Large alpha makes the actor GCBC.'''
    gamma: float = 0.99
    '''Discount: Q(s, a, g) ~ gamma^(steps to reach g). 0.99 keeps goals 100-200 steps
    ahead distinguishable (0.99^100 = 0.37); 0.95 left Q of cube-single goals 50 steps
    ahead at 0.08 and the policy at 0%.'''
    batch_size: int = 128
    '''Examples per update.'''
    lr: float = 3e-4
    '''Adam learning rate.'''
    weight_decay: float = 0.0
    '''Adam(W) weight decay.'''
    augment_shift_px: int = 0
    '''Image networks: move all images of each training example (observation, next
    observation, goal, cut) by one random offset of up to this many pixels, the edge
    repeated (the random-shift augmentation of DrQ and of OGBench's visual agents); 0
    disables. Acting and the diagnostics never shift.'''
    augment_prob: float = 1.0
    '''Fraction of the examples shifted when augment_shift_px > 0.'''
    grad_clip: float = 10.0
    '''Clip of the global gradient norm (0 disables).'''
    polyak: float = 0.005
    '''Target network update: theta_target <- (1 - polyak) theta_target + polyak theta.'''
    updates: int = 10000
    '''Total gradient updates of the run.'''
    log_interval: int = 500
    '''Updates between diagnostics rows in metrics.csv (and plot refreshes).'''
    checkpoint_interval: int = 2000
    '''Updates between checkpoints (the final one is always written).'''
    seed: int = 0
    '''Seed of every generator of the run (numpy sampling, torch init, CEM).'''
    device: str = 'auto'
    '''`auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:1`, ...'''
    channels_last: bool = True
    '''Train the image trunk in channels_last memory format (faster convs on CPU).'''
    autocast_bf16: bool = True
    '''Train image networks under bf16 autocast where the device computes bf16 natively (a
    CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX; train.native_bf16); elsewhere they
    train in fp32, as emulated bf16 was measured about 9x slower than fp32 on an AVX2-only CPU.
    State networks always train in fp32 (measured faster there); acting is always fp32.'''
    num_threads: int = 0
    '''torch intra-op threads; 0 keeps torch's default.'''
    cuda_graphs: bool = True
    '''On a CUDA device, capture one whole update (gathering the batch, loss, backward, the
    optimizer and target steps) in a CUDA graph after a few eager updates, and replay it:
    one launch instead of hundreds of small kernels, which is what bounds state networks on
    a GPU. Goal-reaching training with a GPU-resident dataset only (not task-reward
    training); when the capture fails, training goes on eagerly with a warning.'''
    tf32: bool = True
    '''On a CUDA device, let fp32 matmuls and convolutions use TF32 tensor cores (10-bit
    mantissa inputs, fp32 accumulation); no effect on the CPU.'''
    diag_batch: int = 64
    '''Examples per diagnostics estimate.'''
    finetune_from: str = ''
    '''Path of an AM checkpoint to initialise the network from (pre-training, then
    fine-tuning on the task reward); empty trains from scratch.'''
    task_weight: float = 0.0
    '''Weight of the task-reward TD loss L_task; 0 trains goal reaching only. With
    task_weight > 0 the loss is task_weight * L_task + aux_weight * L_g.'''
    aux_weight: float = 1.0
    '''xi, the weight of the goal-reaching objective L_g next to L_task (the slides' auxiliary
    objective; 0 gives plain task Q-learning, e.g. fine-tuning).'''
    task_reward: Literal['episode_success', 'final_frame'] = 'episode_success'
    '''Task reward of the task dataset: 1 on the last frame of episodes marked successful
    in the manifest (`episode_success`), or of every episode (`final_frame`).'''
    task_positive_prob: float = 0.1
    '''Fraction of each task batch drawn among the rewarded transitions (sparse rewards are
    otherwise seen once per episode length).'''

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'TrainConfig':
        return _from_dict(cls, data, 'config')

    @classmethod
    def from_file(cls, path: str | Path) -> 'TrainConfig':
        '''Read a YAML or JSON file (keys as the field names, nested sections as mappings).'''
        import yaml

        text = Path(path).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f'{path}: expected a mapping of config fields')
        return cls.from_dict(data)

    def with_overrides(self, overrides: dict[str, Any]) -> 'TrainConfig':
        '''Apply dotted overrides, e.g. {'relabel.num_negatives': 8, 'lr': 1e-4}.'''
        data = self.to_dict()
        for key, value in overrides.items():
            node = data
            parts = key.split('.')
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ValueError(f'unknown config section {part!r} in {key!r}')
                node = node[part]
            if parts[-1] not in node:
                raise ValueError(f'unknown config field {key!r}')
            node[parts[-1]] = value
        return TrainConfig.from_dict(data)

    def validate(self) -> 'TrainConfig':
        '''Raise ValueError naming the first field outside its valid range.'''
        checks = [
            ('agent', self.agent in AGENTS),
            ('network.observation', self.network.observation in ('image', 'state')),
            ('network.image_size', self.network.image_size >= 16),
            ('network.state_dim', self.network.observation != 'state'
             or self.network.state_dim > 0),
            ('network.state_ignore', all(0 <= i < max(self.network.state_dim, 1)
                                         for i in self.network.state_ignore)),
            ('relabel.hindsight_goal_prob', 0.0 <= self.relabel.hindsight_goal_prob <= 1.0),
            ('relabel.random_goal_negative_prob',
             0.0 <= self.relabel.random_goal_negative_prob <= 1.0),
            ('relabel.num_negative_candidates', self.relabel.num_negative_candidates >= 1),
            ('relabel.num_negatives', self.relabel.num_negatives >= 0),
            ('relabel.negative_temperature', self.relabel.negative_temperature > 0),
            ('relabel.local_negatives', 0.0 <= self.relabel.local_negatives <= 1.0),
            ('relabel.local_negative_margin', 0.0 <= self.relabel.local_negative_margin < 1.0),
            ('relabel.max_cut_length', self.relabel.max_cut_length >= 0),
            ('relabel.offset_discount', self.relabel.offset_discount is None
             or 0.0 <= self.relabel.offset_discount < 1.0),
            ('target_max', self.target_max in ('cem', 'sampled')),
            ('loss', self.loss in ('bce', 'mse')),
            ('td_expectile', 0.0 < self.td_expectile < 1.0),
            ('network.actor_head', not (self.network.actor_head and self.agent == 'gcbc')),
            ('target_actor', not self.target_actor or self.network.actor_head),
            ('network.actor_trunk', not self.network.actor_trunk or self.network.actor_head),
            ('actor_bc_weight', self.actor_bc_weight >= 0),
            ('gamma', 0.0 < self.gamma <= 1.0),
            ('polyak', 0.0 < self.polyak <= 1.0),
            ('batch_size', self.batch_size >= 1),
            ('lr', self.lr > 0),
            ('augment_shift_px', 0 <= self.augment_shift_px < self.network.image_size // 2
             and (self.augment_shift_px == 0 or self.network.observation == 'image')),
            ('augment_prob', 0.0 <= self.augment_prob <= 1.0),
            ('updates', self.updates >= 0),
            ('log_interval', self.log_interval >= 1),
            ('task_weight', self.task_weight >= 0),
            ('aux_weight', self.aux_weight >= 0),
            ('task_positive_prob', 0.0 <= self.task_positive_prob <= 1.0),
        ]
        for cem_name in ('act_cem', 'target_cem'):
            cem = getattr(self, cem_name)
            checks.append((f'{cem_name}.elites', 1 <= cem.elites <= cem.samples))
            checks.append((f'{cem_name}.iterations', cem.iterations >= 1))
            checks.append((f'{cem_name}.proposal_std', cem.proposal_std > 0))
        for name, ok in checks:
            if not ok:
                raise ValueError(f'invalid config value for {name}: {_get(self, name)!r}')
        if (self.relabel.offset_discount is None and self.relabel.goal_offset == 'geometric'
                and self.gamma >= 1.0):
            raise ValueError('relabel.offset_discount follows gamma when unset, and geometric '
                             'goal offsets need a discount below 1: with gamma = 1, set '
                             'relabel.offset_discount (e.g. 0.99)')
        return self


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split('.'):
        obj = getattr(obj, part)
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f'{where}: expected a mapping, got {value!r}')
        return _from_dict(tp, value, where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f'{where}: {value!r} is not one of {typing.get_args(tp)}')
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f'{where}: expected a list, got {value!r}')
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        return tuple(_coerce(item, v, where) for v in value)
    if origin in (typing.Union, types.UnionType):  # X | None: None, or a valid X
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        (inner,) = args
        return _coerce(inner, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f'{where}: expected true/false, got {value!r}')
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'{where}: expected an integer, got {value!r}')
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f'{where}: expected a number, got {value!r}')
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f'{where}: expected a string, got {value!r}')
        return value
    return value


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f'{where}: unknown field(s) {unknown}; known: {sorted(known)}')
    kwargs = {k: _coerce(hints[k], v, f'{where}.{k}') for k, v in data.items()}
    return cls(**kwargs)


def config_differences(a: TrainConfig, b: TrainConfig, section: str = 'network') -> list[str]:
    '''Dotted names of the fields of `section` whose values differ between a and b.'''
    da, db = asdict(getattr(a, section)), asdict(getattr(b, section))
    return [f'{section}.{k}' for k in sorted(da) if da[k] != db.get(k)]


__all__ = ['AGENTS', 'CEMConfig', 'NetworkConfig', 'RelabelConfig', 'TrainConfig',
           'config_differences', 'replace']
