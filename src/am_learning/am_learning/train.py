'''Training: one Trainer per run folder (config.json, metrics.csv, plots.png, checkpoint/).

Reads top to bottom: build the network, its Polyak target and the relabeling sampler; each
update samples a relabeled batch, gathers its frames, and calls the agent's pure loss
function; its metrics stay on the device, summed, until every `log_interval` updates their
means and the diagnostics are appended to metrics.csv and the plots are redrawn; every
`checkpoint_interval` updates (and at the end) the weights and the resume state are
written. On a GPU the update is captured once in a CUDA graph and replayed (CudaGraphStep).
Running the same command again on the same folder resumes.
'''

from collections.abc import Iterator
import contextlib
import copy
import csv
from dataclasses import asdict
import json
import logging
from pathlib import Path
import time
from typing import Any

import numpy as np
import torch

from am_learning import augment, losses
from am_learning.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_trainer_state,
    save_checkpoint,
    save_trainer_state,
)
from am_learning.config import TrainConfig
from am_learning.data.dataset import EpisodeDataset
from am_learning.networks import QNetwork, build_network
from am_learning.relabel import (
    MASK_ROWS,
    ObservationGatherer,
    RelabelBatch,
    RelabelSampler,
    TensorBatch,
    batch_arrays,
    gather,
    gather_frames,
)

log = logging.getLogger(__name__)

DIAG_OFFSETS = (1, 5, 20, 50, 100, 200)
# Fields that may change when a run is resumed (extending or re-pacing it, or how its
# checkpoint acts: act_cem is never used in training).
RESUMABLE_CHANGES = {'updates', 'log_interval', 'checkpoint_interval', 'device', 'num_threads',
                     'cuda_graphs', 'tf32', 'act_cem.samples', 'act_cem.iterations',
                     'act_cem.elites', 'act_cem.init_std', 'act_cem.min_std',
                     'act_cem.warm_start'}
PLOT_INTERVAL_S = 30.0
GRAPH_WARMUP = 3
'''Eager updates before the CUDA graph is captured (lazy initialisation happens in them).'''


def resolve_device(name: str) -> torch.device:
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    '''Whether `device` computes bf16 natively: a CUDA GPU with bf16 support, or a CPU with
    AVX512-BF16 or AMX (oneDNN's check). Without it bf16 autocast is emulated and slower
    than fp32.'''
    if device.type == 'cuda':
        return torch.cuda.is_bf16_supported()
    if device.type == 'cpu':
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a torch build without oneDNN
            return False
    return False


def dataset_spec(dataset: EpisodeDataset) -> dict[str, Any]:
    '''Network-relevant shapes of a dataset (checked against the config before training).'''
    return {
        'image_size': None if dataset.images is None else int(dataset.images.shape[1]),
        'proprio_dim': int(dataset.proprio.shape[1]) if dataset.proprio.ndim == 2 else 0,
        'state_dim': None if dataset.states is None else int(dataset.states.shape[1]),
        'action_dim': int(dataset.actions.shape[1]),
    }


def check_dataset_fits(config: TrainConfig, dataset: EpisodeDataset) -> None:
    '''ValueError naming the config field that disagrees with the dataset's arrays.'''
    spec = dataset_spec(dataset)
    net = config.network
    problems = []
    if net.observation == 'image':
        if spec['image_size'] is None:
            problems.append('network.observation is image but the dataset has no images')
        elif spec['image_size'] != net.image_size or dataset.images.shape[2] != net.image_size:
            problems.append(f'network.image_size={net.image_size} but dataset images are '
                            f'{tuple(dataset.images.shape[1:3])}')
    else:
        if spec['state_dim'] is None:
            problems.append('network.observation is state but the dataset has no states')
        elif spec['state_dim'] != net.state_dim:
            problems.append(f'network.state_dim={net.state_dim} but dataset states have '
                            f'{spec["state_dim"]}')
    if net.proprio_dim and spec['proprio_dim'] != net.proprio_dim:  # 0: proprio unused
        problems.append(f'network.proprio_dim={net.proprio_dim} but dataset proprio has '
                        f'{spec["proprio_dim"]}')
    if spec['action_dim'] != net.action_dim:
        problems.append(f'network.action_dim={net.action_dim} but dataset actions have '
                        f'{spec["action_dim"]}')
    if problems:
        raise ValueError('config does not fit the dataset: ' + '; '.join(problems))


def task_rewards(dataset: EpisodeDataset, mode: str) -> np.ndarray:
    '''(N,) float32 per-frame task reward: 1 on the final frame of rewarded episodes.

    `episode_success`: episodes whose manifest entry says success (manifest['episodes'][k]
    ['success']); `final_frame`: every episode's final frame.
    '''
    reward = np.zeros(dataset.num_frames, dtype=np.float32)
    last = dataset.episode_ends - 1
    if mode == 'final_frame':
        reward[last] = 1.0
        return reward
    episodes = dataset.manifest.get('episodes')
    if not isinstance(episodes, list) or len(episodes) != dataset.num_episodes:
        raise ValueError('task_reward=episode_success needs manifest["episodes"] with one entry '
                         'per episode holding "success"')
    success = np.array([bool(e.get('success', False)) for e in episodes])
    reward[last[success]] = 1.0
    return reward


class Trainer:
    '''Trains one agent on one dataset; optional run folder for outputs and resuming.'''

    def __init__(self, config: TrainConfig, dataset: EpisodeDataset, *,
                 run_dir: str | Path | None = None, resume: bool = True,
                 rewards: np.ndarray | None = None) -> None:
        self.config = config.validate()
        check_dataset_fits(config, dataset)
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.dataset = dataset
        self.device = resolve_device(config.device)
        if self.device.type == 'cuda' and config.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.autocast = (config.autocast_bf16 and config.network.observation == 'image'
                         and native_bf16(self.device))
        if config.autocast_bf16 and config.network.observation == 'image' and not self.autocast:
            log.info('training in fp32: %s has no native bf16 (autocast_bf16 applies where '
                     'it has)', self.device)
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # weight init only, scoped to this block
            self.net = build_network(config.network, config.agent)
        self.is_q = isinstance(self.net, QNetwork)
        if config.finetune_from:
            self._load_pretrained(config.finetune_from)
        self.net.to(self.device)
        self.net.set_channels_last(config.channels_last)
        self.target = copy.deepcopy(self.net).requires_grad_(False) if self.is_q else None
        self.sampler = RelabelSampler(dataset, config.relabel, self.rng, gamma=config.gamma)
        self.gatherer = ObservationGatherer(dataset, config.network.observation, self.device)
        self.use_graph = (self.device.type == 'cuda' and config.cuda_graphs
                          and config.task_weight == 0 and self.gatherer.resident)
        actor = self.net.actor_parameters() if self.is_q else []
        actor_ids = {id(p) for p in actor}
        self._clip_groups = [[p for p in self.net.parameters() if id(p) not in actor_ids]]
        if actor:
            self._clip_groups.append(actor)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay, foreach=True,
                                           capturable=self.use_graph)
        self.graph_step: CudaGraphStep | None = None
        self._eager_updates = 0  # in this process: a resumed run warms up again
        self.rewards = None
        if config.task_weight > 0:
            if not self.is_q:
                raise ValueError('task_weight > 0 needs a Q-learning agent (not gcbc)')
            self.rewards = rewards if rewards is not None else task_rewards(
                dataset, config.task_reward)
            if self.rewards.shape != (dataset.num_frames,):
                raise ValueError('rewards must have one value per frame')
            # Transitions t -> t+1 inside one episode whose arrival is rewarded.
            episode = dataset.episode_index()
            self.rewarded = np.flatnonzero((self.rewards[1:] > 0)
                                           & (episode[1:] == episode[:-1]))
            self.task_goal = self._zero_goal()
        self.step = 0
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self.run_dir is not None:
            self._prepare_run_dir(resume)
        self._metric_keys: list[str] = []
        self._metric_sum: torch.Tensor | None = None  # (len(keys),) on the device
        self._metrics_since = self.step  # every update adds one set of metrics to the sum
        self._plotted_at = -float('inf')

    # --- setup ----------------------------------------------------------------------------
    def _load_pretrained(self, path: str) -> None:
        '''Initialise from an AM checkpoint: same network config required.'''
        ckpt = load_checkpoint(path)
        if ckpt.config.network != self.config.network or \
                isinstance(ckpt.network, QNetwork) != self.is_q:
            diff = [k for k, v in asdict(self.config.network).items()
                    if asdict(ckpt.config.network).get(k) != v]
            raise CheckpointError(f'{path}: pre-trained checkpoint does not fit the network '
                                  f'(differs in: {", ".join("network." + d for d in diff)}'
                                  f'{"; agent" if not diff else ""})')
        self.net.load_state_dict(ckpt.network.state_dict())
        log.info('initialised from %s (step %d)', path, ckpt.step)

    def _zero_goal(self) -> torch.Tensor:
        net = self.config.network
        if net.observation == 'image':
            return torch.zeros(1, net.image_size, net.image_size, 3, dtype=torch.uint8,
                               device=self.device)
        return torch.zeros(1, net.state_dim, device=self.device)

    def _prepare_run_dir(self, resume: bool) -> None:
        assert self.run_dir is not None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.run_dir / 'config.json'
        ckpt_dir = self.run_dir / 'checkpoint'
        if config_path.is_file() and resume:
            old = TrainConfig.from_dict(json.loads(config_path.read_text()))
            old_d, new_d = _flatten(old.to_dict()), _flatten(self.config.to_dict())
            changed = sorted(k for k in set(old_d) | set(new_d)
                             if old_d.get(k) != new_d.get(k) and k not in RESUMABLE_CHANGES)
            if changed:
                raise ValueError(f'{self.run_dir} holds a run with another config (differs in '
                                 f'{", ".join(changed)}); use a new run folder or --no-resume')
            if (ckpt_dir / 'model.safetensors').is_file():
                self._resume(ckpt_dir)
        elif not resume and (self.run_dir / 'metrics.csv').exists():
            (self.run_dir / 'metrics.csv').unlink()
        config_path.write_text(self.config.to_json())

    def _resume(self, ckpt_dir: Path) -> None:
        ckpt = load_checkpoint(ckpt_dir, expect=self.config)
        self.net.load_state_dict(ckpt.network.state_dict())
        self.net.set_channels_last(self.config.channels_last)
        state = load_trainer_state(ckpt_dir)
        if state is None:
            raise CheckpointError(f'{ckpt_dir}: no trainer state to resume from')
        tensors, meta = state
        if self.target is not None:
            self.target.load_state_dict(
                {k[len('target.'):]: v for k, v in tensors.items() if k.startswith('target.')})
        opt_state: dict[str, Any] = {'state': {}, 'param_groups': meta['param_groups']}
        for key, value in tensors.items():
            if key.startswith('opt.'):
                _, idx, name = key.split('.', 2)
                opt_state['state'].setdefault(int(idx), {})[name] = value
        self.optimizer.load_state_dict(opt_state)
        self.generator.set_state(tensors['rng.torch'].to(torch.uint8).cpu())
        self.rng.bit_generator.state = meta['numpy_rng']
        self.step = int(meta['step'])
        log.info('resumed %s at update %d', self.run_dir, self.step)

    # --- one update -----------------------------------------------------------------------
    def relabel_batch(self, n: int | None = None) -> RelabelBatch:
        '''This agent's relabeled examples, as frame indices (see RelabelSampler.sample).'''
        n = n or self.config.batch_size
        agent = self.config.agent
        if agent == 'am':
            return self.sampler.sample(n)
        if agent == 'her_neg':
            return self.sampler.sample(
                n, hindsight_goal_prob=1.0, goal_chaining=False,
                random_goal_negative_prob=self.config.relabel.random_goal_negative_prob)
        # her, and gcbc (goals are later states of the same trajectory)
        return self.sampler.sample(n, hindsight_goal_prob=1.0, goal_chaining=False)

    def sample_batch(self, n: int | None = None) -> TensorBatch:
        '''A relabeled batch for this agent, its frames gathered.'''
        return gather(self.relabel_batch(n), self.gatherer)

    def _task_batch(self, n: int) -> TensorBatch:
        '''Uniform transitions, with `task_positive_prob` of them drawn among rewarded ones.'''
        frames = self.sampler.sample_frames(n)
        if len(self.rewarded):
            pos = self.rng.random(n) < self.config.task_positive_prob
            frames = np.where(pos, self.rng.choice(self.rewarded, size=n), frames)
        g = self.gatherer
        zeros = np.zeros(n, dtype=np.float32)
        reward = self.rewards[frames + 1]
        return TensorBatch(
            obs=g.obs(frames), proprio=g.proprio(frames), action=g.actions(frames),
            next_obs=g.obs(frames + 1), next_proprio=g.proprio(frames + 1),
            next_action=g.actions(frames + 1), goal=self.task_goal,
            reward=torch.from_numpy(reward).to(self.device),
            bootstrap=torch.from_numpy(1 - reward).to(self.device),
            chain=torch.from_numpy(zeros).to(self.device),
            goal_negative=torch.from_numpy(zeros).to(self.device),
            hindsight=torch.from_numpy(zeros).to(self.device),
            chained=torch.from_numpy(zeros).to(self.device),
            steps=torch.from_numpy(np.ones(n, dtype=np.float32)).to(self.device))

    def compute_loss(self, batch: TensorBatch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        if cfg.agent == 'gcbc':
            return losses.gcbc_loss(self.net, batch)
        loss, metrics = torch.zeros((), device=self.device), {}
        if cfg.task_weight == 0 or cfg.aux_weight > 0:
            l_g, metrics = losses.q_learning_loss(self.net, self.target, batch, cfg,
                                                  self.generator,
                                                  negatives=cfg.agent == 'am')
            loss = loss + (cfg.aux_weight if cfg.task_weight > 0 else 1.0) * l_g
        if cfg.task_weight > 0:
            l_task, task_metrics = losses.task_loss(
                self.net, self.target, self._task_batch(cfg.batch_size), self.task_goal, cfg,
                self.generator, negatives=cfg.agent == 'am')
            loss = loss + cfg.task_weight * l_task
            metrics.update(task_metrics)
        return loss, metrics

    def update(self) -> None:
        '''One gradient step and the Polyak target update; its metrics are summed on the
        device (read them with take_metrics). With `use_graph`, the first GRAPH_WARMUP
        updates run eagerly on a side stream, then the step is captured in a CUDA graph and
        replayed from then on.'''
        cfg = self.config
        if self.use_graph and self.graph_step is None and self._eager_updates >= GRAPH_WARMUP:
            try:
                self.graph_step = CudaGraphStep(self)
            except Exception as exc:  # noqa: BLE001 - an optimisation must not end the run
                log.warning('CUDA graph capture failed (%s: %s); training on without it',
                            type(exc).__name__, exc)
                self.use_graph = False
                self.generator = _detached_generator(self.generator, self.config.seed + self.step)
        if self.graph_step is not None:
            self.graph_step.replay(*batch_arrays(self.relabel_batch()))
        else:
            goal_reaching = cfg.task_weight == 0 or cfg.aux_weight > 0
            with side_stream(self.use_graph):
                self._add_metrics(self.step_on(self.sample_batch() if goal_reaching else None))
            self._eager_updates += 1
        self.step += 1

    def step_on(self, batch: TensorBatch | None) -> dict[str, torch.Tensor]:
        '''Loss, backward, optimizer step and Polyak update on one batch (None: task-only
        training); returns the metrics as device tensors. What CudaGraphStep captures.'''
        cfg = self.config
        self.net.train()
        if batch is not None and cfg.augment_shift_px > 0:
            batch = augment.shift_batch(batch, cfg.augment_shift_px, cfg.augment_prob,
                                        self.generator)
        # bf16 pays off for the conv trunk; small state MLPs measured slower under it.
        # No cast cache: a CUDA graph must not keep weights cast at capture time.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False,
                            enabled=self.autocast):
            if batch is None:  # task-only training (fine-tuning / from scratch)
                loss, metrics = losses.task_loss(
                    self.net, self.target, self._task_batch(cfg.batch_size), self.task_goal,
                    cfg, self.generator, negatives=cfg.agent == 'am')
                loss = cfg.task_weight * loss
            else:
                loss, metrics = self.compute_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:  # the actor head apart, so that it never rescales Q's step
            metrics['optim/grad_norm'] = torch.nn.utils.clip_grad_norm_(
                self._clip_groups[0], cfg.grad_clip)
            for group in self._clip_groups[1:]:
                torch.nn.utils.clip_grad_norm_(group, cfg.grad_clip)
        self.optimizer.step()
        if self.target is not None:
            with torch.no_grad():
                torch._foreach_lerp_(list(self.target.parameters()),
                                     list(self.net.parameters()), cfg.polyak)
        metrics['optim/loss'] = loss.detach()
        return metrics

    def _add_metrics(self, metrics: dict[str, torch.Tensor]) -> None:
        values = torch.stack([v.float() for v in metrics.values()])
        if self._metric_sum is None:
            self._metric_keys = list(metrics)
            self._metric_sum = torch.zeros_like(values)
        self._metric_sum.add_(values)

    def take_metrics(self) -> dict[str, float]:
        '''Means of the metrics since the last call (waits for the device once).'''
        count = self.step - self._metrics_since
        if self._metric_sum is None or count == 0:
            return {}
        means = (self._metric_sum / count).tolist()
        self._metric_sum.zero_()
        self._metrics_since = self.step
        return dict(zip(self._metric_keys, means))

    # --- diagnostics ----------------------------------------------------------------------
    @torch.no_grad()
    def diagnostics(self) -> dict[str, float]:
        '''Q of dataset vs random actions, Q against goal offset, Q for random goals (fp32).'''
        if not self.is_q:
            return self._gcbc_diagnostics()
        self.net.eval()
        n = self.config.diag_batch
        g = self.gatherer
        out: dict[str, float] = {}

        def q_of(frames: np.ndarray, goals: np.ndarray, actions: torch.Tensor) -> torch.Tensor:
            feature = self.net.encode(g.obs(frames), g.obs(goals), g.proprio(frames))
            return torch.sigmoid(self.net.logits(feature, actions.unsqueeze(1))[:, 0])

        hind = self.sampler.sample(n, hindsight_goal_prob=1.0)
        data_a = g.actions(hind.obs)
        rand_a = torch.rand(data_a.shape, generator=self.generator,
                            device=self.device) * 2 - 1
        out['diag/q_data_action'] = q_of(hind.obs, hind.goal, data_a).mean().item()
        out['diag/q_random_action'] = q_of(hind.obs, hind.goal, rand_a).mean().item()
        for k in DIAG_OFFSETS:
            pairs = self.sampler.sample_offsets(n, k)
            if pairs is not None:
                frames, goals = pairs
                out[f'diag/q_offset_{k}'] = q_of(frames, goals, g.actions(frames)).mean().item()
        frames = self.sampler.sample_frames(n)
        goals = self.rng.integers(0, self.dataset.num_frames, size=n)
        out['diag/q_random_goal'] = q_of(frames, goals, g.actions(frames)).mean().item()
        self.net.train()
        return out

    def _gcbc_diagnostics(self) -> dict[str, float]:
        out = {}
        g = self.gatherer
        for k in DIAG_OFFSETS:
            pairs = self.sampler.sample_offsets(self.config.diag_batch, k)
            if pairs is not None:
                frames, goals = pairs
                pred = self.net(g.obs(frames), g.obs(goals), g.proprio(frames))
                err = (pred - g.actions(frames)).abs().mean().item()
                out[f'diag/bc_error_offset_{k}'] = err
        return out

    # --- the loop -------------------------------------------------------------------------
    def save(self, folder: str | Path | None = None) -> Path:
        '''Checkpoint (weights + config + manifest) and resume state; returns the folder.'''
        if folder is None:
            if self.run_dir is None:
                raise ValueError('no run folder: pass a folder to save to')
            folder = self.run_dir / 'checkpoint'
        folder = Path(folder)
        save_checkpoint(folder, self.config, self.net, step=self.step,
                        dataset_manifest=self.dataset.manifest)
        tensors: dict[str, torch.Tensor] = {'rng.torch': self.generator.get_state()}
        if self.target is not None:
            tensors.update({f'target.{k}': v for k, v in self.target.state_dict().items()})
        opt = self.optimizer.state_dict()
        for idx, state in opt['state'].items():
            for name, value in state.items():
                tensors[f'opt.{idx}.{name}'] = value
        save_trainer_state(folder, tensors, {
            'step': self.step, 'numpy_rng': self.rng.bit_generator.state,
            'param_groups': opt['param_groups']})
        return folder

    def train(self, updates: int | None = None, *, progress: bool = False) -> dict[str, float]:
        '''Run until `updates` (default config.updates) total updates; returns the last row.'''
        total = self.config.updates if updates is None else updates
        cfg = self.config
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, initial=self.step, desc=f'train {cfg.agent}', unit='upd',
                       dynamic_ncols=True)
        row: dict[str, float] = {}
        t_last, step_last = time.perf_counter(), self.step
        while self.step < total:
            self.update()
            if bar is not None:
                bar.update(1)
            if self.step % cfg.log_interval == 0 or self.step == total:
                row = self.take_metrics()  # waits for the device: the rate below is real
                now = time.perf_counter()
                row['perf/updates_per_s'] = (self.step - step_last) / max(now - t_last, 1e-9)
                row.update(self.diagnostics())
                self._log_row(row, final=self.step == total)
                if bar is not None:
                    bar.set_postfix(loss=f'{row["optim/loss"]:.3f}',
                                    q=f'{row.get("critic/q_mean", float("nan")):.2f}')
                t_last, step_last = time.perf_counter(), self.step
            if self.run_dir is not None and (self.step % cfg.checkpoint_interval == 0
                                             or self.step == total):
                self.save()
        if bar is not None:
            bar.close()
        return row

    def _log_row(self, row: dict[str, float], *, final: bool = False) -> None:
        '''Append a row to metrics.csv; redraw plots.png for the final row and otherwise
        at most every PLOT_INTERVAL_S (a redraw costs about as much as hundreds of GPU
        updates).'''
        if self.run_dir is None:
            return
        path = self.run_dir / 'metrics.csv'
        row = {'step': self.step, **row}
        if path.exists():
            with path.open() as f:
                header = next(csv.reader(f), None) or []
        else:
            header = []
        if not header:
            header = ['step'] + sorted(k for k in row if k != 'step')
            with path.open('w', newline='') as f:
                csv.writer(f).writerow(header)
        with path.open('a', newline='') as f:
            csv.DictWriter(f, fieldnames=header, extrasaction='ignore').writerow(row)
        if final or time.monotonic() - self._plotted_at >= PLOT_INTERVAL_S:
            self.draw_plots()

    def draw_plots(self) -> None:
        '''Redraw plots.png from metrics.csv (a failure is logged, never raised).'''
        if self.run_dir is None or not (self.run_dir / 'metrics.csv').exists():
            return
        self._plotted_at = time.monotonic()
        try:
            from am_learning.plots import plot_metrics
            plot_metrics(self.run_dir / 'metrics.csv', self.run_dir / 'plots.png')
        except Exception as exc:  # noqa: BLE001 - a plot failure must not stop training
            log.warning('could not draw plots: %s', exc)


class CudaGraphStep:
    '''A Trainer's whole update captured in one CUDA graph, then replayed per batch.

    The graph's inputs are static device buffers: the batch's frame indices and masks
    (relabel.batch_arrays), gathered from the GPU-resident dataset inside the graph; its
    metrics are added to the trainer's sums inside the graph too. Sampling stays on the
    host (numpy, ~0.1 ms at batch 1024) and overlaps the replay of the previous update. The
    trainer's generator is registered with the graph, so negative actions and sampled TD
    maxima draw fresh numbers at every replay. Capture needs eager warm-up updates on a
    side stream first (Trainer.update runs GRAPH_WARMUP of them).
    '''

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        n = trainer.config.batch_size
        self.frames = torch.zeros(4, n, dtype=torch.int64, device=trainer.device)
        self.masks = torch.zeros(len(MASK_ROWS), n, device=trainer.device)
        self.graph = torch.cuda.CUDAGraph()
        self.graph.register_generator_state(trainer.generator)
        trainer.optimizer.zero_grad(set_to_none=True)  # backward allocates them in the graph
        with torch.cuda.graph(self.graph):
            trainer._add_metrics(trainer.step_on(
                gather_frames(self.frames, self.masks, trainer.gatherer)))

    def replay(self, frames: np.ndarray, masks: np.ndarray) -> None:
        # Pinned staging from torch's caching host allocator: a block is not reused before
        # its copy has completed, so the host can sample the next batch meanwhile.
        self.frames.copy_(torch.from_numpy(frames).pin_memory(), non_blocking=True)
        self.masks.copy_(torch.from_numpy(masks).pin_memory(), non_blocking=True)
        self.graph.replay()


def _detached_generator(generator: torch.Generator, seed: int) -> torch.Generator:
    '''A generator with `generator`'s state that no graph knows of (a failed capture can
    leave the registered one refusing eager use); seeded afresh if the state is lost.'''
    fresh = torch.Generator(device=generator.device)
    try:
        fresh.set_state(generator.get_state())
    except RuntimeError:
        fresh.manual_seed(seed)
    return fresh


@contextlib.contextmanager
def side_stream(enabled: bool) -> Iterator[None]:
    '''Run the block on a fresh CUDA stream (the warm-up a CUDA graph capture needs).'''
    if not enabled:
        yield
        return
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream().wait_stream(side)


def _flatten(d: dict[str, Any], prefix: str = '') -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f'{prefix}{k}'
        if isinstance(v, dict):
            out.update(_flatten(v, key + '.'))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out
