'''Checkpoints: a folder with safetensors weights and JSON metadata. Loading never unpickles.

<dir>/model.safetensors      network weights (float32)
<dir>/checkpoint.json        {format, config, agent, step, code_version, dataset_manifest, ...}
<dir>/trainer.safetensors    optional: optimiser moments, target network, torch RNG (resume)
<dir>/trainer.json           optional: step, numpy RNG state, optimiser hyper-state (resume)

A checkpoint is accepted only when its JSON parses into a valid TrainConfig and every weight
has the name and shape the network built from that config expects; otherwise CheckpointError
says what is missing, corrupt, or which config field disagrees with the weights.
'''

from dataclasses import dataclass, field
import functools
import json
from pathlib import Path
import subprocess
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
import torch
from torch import nn

from am_learning.config import TrainConfig, config_differences
from am_learning.networks import build_network

FORMAT = 'am_learning.checkpoint/1'
MODEL_FILE = 'model.safetensors'
META_FILE = 'checkpoint.json'
TRAINER_FILE = 'trainer.safetensors'
TRAINER_META_FILE = 'trainer.json'


class CheckpointError(ValueError):
    '''A checkpoint is missing, corrupt, or does not fit the network; the message says which.'''


@functools.cache
def code_version() -> str:
    '''`git describe`-style version of the am_learning sources (+dirty), else the package.'''
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(['git', 'describe', '--always', '--dirty', '--abbrev=12'],
                             cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return f'git:{out.stdout.strip()}'
    except (OSError, subprocess.SubprocessError):
        pass
    return 'am_learning-0.1.0'


@dataclass
class Checkpoint:
    '''A loaded checkpoint: the config, the network with its weights, and the metadata.'''

    config: TrainConfig
    network: nn.Module
    step: int
    code_version: str
    dataset_manifest: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    path: Path | None = None


def save_checkpoint(path: str | Path, config: TrainConfig, network: nn.Module, *, step: int,
                    dataset_manifest: dict | None = None, extra: dict | None = None) -> Path:
    '''Write weights + metadata to the folder `path` (created); returns it.

    Files are written under temporary names and renamed, so a crash mid-save never leaves a
    half-written checkpoint under the real name.
    '''
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in network.state_dict().items()}
    meta = {
        'format': FORMAT,
        'agent': config.agent,
        'step': int(step),
        'code_version': code_version(),
        'config': config.to_dict(),
        'dataset_manifest': dataset_manifest or {},
        'extra': extra or {},
    }
    tmp_model = path / (MODEL_FILE + '.tmp')
    tmp_meta = path / (META_FILE + '.tmp')
    save_file(tensors, str(tmp_model), metadata={'format': FORMAT})
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    tmp_model.replace(path / MODEL_FILE)
    tmp_meta.replace(path / META_FILE)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    '''The parsed checkpoint.json of a checkpoint folder (or of the folder of a model file).'''
    folder = _folder(path)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f'{folder}: not a checkpoint (no {META_FILE})')
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f'{meta_path}: corrupt metadata ({exc})') from exc
    found = meta.get('format') if isinstance(meta, dict) else None
    if found != FORMAT:
        raise CheckpointError(
            f'{meta_path}: unknown checkpoint format {found!r} (expected {FORMAT!r})')
    return meta


def _folder(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name == MODEL_FILE:
        return path.parent
    if not path.exists():
        raise CheckpointError(f'{path}: no such checkpoint')
    return path


def load_checkpoint(path: str | Path, *, device: str | torch.device = 'cpu',
                    expect: TrainConfig | None = None) -> Checkpoint:
    '''Load and verify a checkpoint folder. With `expect`, the network config must match it.'''
    folder = _folder(path)
    meta = read_metadata(folder)
    try:
        config = TrainConfig.from_dict(meta['config']).validate()
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f'{folder}: invalid config in {META_FILE}: {exc}') from exc
    if expect is not None:
        diff = config_differences(config, expect)
        if config.agent != expect.agent:
            diff.insert(0, 'agent')
        if diff:
            detail = ', '.join(
                f'{name}: checkpoint {_lookup(config, name)!r} != requested '
                f'{_lookup(expect, name)!r}' for name in diff)
            raise CheckpointError(f'{folder}: checkpoint does not fit the network ({detail})')
    model_path = folder / MODEL_FILE
    if not model_path.is_file():
        raise CheckpointError(f'{folder}: missing {MODEL_FILE}')
    try:
        tensors = load_file(str(model_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f'{model_path}: corrupt weights file ({exc})') from exc
    network = build_network(config.network, config.agent)
    check_weights_fit(network, tensors, config, str(model_path))
    network.load_state_dict(tensors)
    network.to(device).eval()
    return Checkpoint(config=config, network=network, step=int(meta.get('step', 0)),
                      code_version=str(meta.get('code_version', '')),
                      dataset_manifest=meta.get('dataset_manifest') or {},
                      extra=meta.get('extra') or {}, path=folder)


def _lookup(config: TrainConfig, dotted: str) -> Any:
    obj: Any = config
    for part in dotted.split('.'):
        obj = getattr(obj, part)
    return obj


# Which config fields decide the shape of which weights (for error messages).
_SHAPE_FIELDS = (
    ('trunk.convs.0.', 'network.observation'),
    ('trunk.convs', 'network.conv_channels'),
    ('trunk.proj.weight', 'network.image_size / network.conv_channels / network.proprio_dim / '
     'network.state_dim / network.trunk_dim'),
    ('trunk.proj.bias', 'network.trunk_dim'),
    ('trunk.mlp', 'network.state_trunk_layers / network.trunk_dim'),
    ('head.feature_in', 'network.trunk_dim / network.hidden_dims'),
    ('head.action_in', 'network.action_dim / network.hidden_dims'),
    ('head.mlp', 'network.hidden_dims'),
    ('mlp', 'network.hidden_dims / network.action_dim'),
    ('actor.', 'network.actor_head / network.hidden_dims / network.action_dim'),
    ('actor_trunk.', 'network.actor_trunk / network.actor_head'),
)


def _fields_for(name: str) -> str:
    for prefix, fields in _SHAPE_FIELDS:
        if name.startswith(prefix):
            return fields
    return 'agent / network'


def check_weights_fit(network: nn.Module, tensors: dict[str, torch.Tensor],
                      config: TrainConfig, where: str) -> None:
    '''Raise CheckpointError naming the config field(s) a weight's name or shape disagrees with.'''
    expected = network.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        names = missing + unexpected
        lost = {k.split('.')[0] for k in missing}
        extra = {k.split('.')[0] for k in unexpected}
        if {'head', 'mlp'} <= (lost | extra) and not (lost & extra):
            suspects = ['agent']  # GCBC policy weights where a Q-network was expected, or back
        else:
            suspects = sorted({_fields_for(k) for k in names})
        raise CheckpointError(
            f'{where}: weights do not fit config (agent={config.agent!r}, '
            f'observation={config.network.observation!r}): missing {missing[:4]}, unexpected '
            f'{unexpected[:4]}; check {" | ".join(suspects)} '
            f'({"; ".join(_describe(config, s) for s in suspects)})')
    for name, value in expected.items():
        if tuple(tensors[name].shape) != tuple(value.shape):
            raise CheckpointError(
                f'{where}: weight {name} has shape {tuple(tensors[name].shape)} but the config '
                f'gives {tuple(value.shape)}; check {_fields_for(name)} '
                f'({_describe(config, _fields_for(name))})')


def _describe(config: TrainConfig, fields: str) -> str:
    parts = []
    for name in (f.strip() for f in fields.split('/')):
        try:
            parts.append(f'{name}={_lookup(config, name)!r}')
        except AttributeError:
            continue
    return ', '.join(parts)


def save_trainer_state(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    '''Resume state next to a checkpoint: tensors (safetensors) + JSON, written atomically.'''
    path = Path(path)
    tmp = path / (TRAINER_FILE + '.tmp')
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    tmp_meta = path / (TRAINER_META_FILE + '.tmp')
    tmp_meta.write_text(json.dumps(meta, default=int))
    tmp.replace(path / TRAINER_FILE)
    tmp_meta.replace(path / TRAINER_META_FILE)


def load_trainer_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    '''The resume state saved by save_trainer_state, or None when the folder has none.'''
    path = Path(path)
    if not (path / TRAINER_FILE).is_file() or not (path / TRAINER_META_FILE).is_file():
        return None
    try:
        return load_file(str(path / TRAINER_FILE)), json.loads(
            (path / TRAINER_META_FILE).read_text())
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f'{path}: corrupt trainer state ({exc})') from exc
