'''Plots of a run's metrics.csv: losses, Q of dataset vs random actions, Q against goal offset.'''

import csv
import math
from pathlib import Path


def read_metrics(path: str | Path) -> dict[str, list[float]]:
    '''metrics.csv -> column -> values (nan where a row lacks the column).'''
    with Path(path).open(newline='') as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for key in (rows[0].keys() if rows else []):
        columns[key] = [float(r[key]) if r.get(key) not in (None, '') else math.nan
                        for r in rows]
    return columns


def plot_metrics(csv_path: str | Path, out_path: str | Path) -> Path:
    '''Draw the diagnostics panels to a PNG; returns its path.'''
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    m = read_metrics(csv_path)
    step = m.get('step', [])
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    ax = axes[0, 0]
    for key in ('optim/loss', 'critic/td_loss', 'critic/negative_loss', 'task/td_loss',
                'actor/bc_loss'):
        if key in m:
            ax.plot(step, m[key], label=key)
    ax.set_title('losses')
    ax.set_yscale('log')
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    for key in ('diag/q_data_action', 'diag/q_random_action', 'diag/q_random_goal',
                'critic/target_mean', 'critic/positive_fraction', 'critic/q_negative_mean'):
        if key in m:
            ax.plot(step, m[key], label=key)
    ax.set_title('Q of dataset vs random actions / goals')
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    offsets = sorted((int(k.rsplit('_', 1)[1]), k) for k in m
                     if k.startswith(('diag/q_offset_', 'diag/bc_error_offset_')))
    for k, key in offsets:
        ax.plot(step, m[key], label=f'k={k}')
    ax.set_title('Q(s_t, a_t, s_t+k) over training' if offsets and 'q_offset' in offsets[0][1]
                 else 'GCBC action error by goal offset')
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    if offsets and step:
        ks = [k for k, _ in offsets]
        ax.plot(ks, [m[key][-1] for _, key in offsets], 'o-', label=f'step {int(step[-1])}')
        if 'diag/q_random_goal' in m:
            ax.axhline(m['diag/q_random_goal'][-1], color='gray', ls='--', label='random goal')
        ax.set_xscale('log')
        ax.legend(fontsize=7)
    ax.set_title('last row: value against goal offset k')
    ax.set_xlabel('k (steps ahead)')
    for a in axes.flat[:3]:
        a.set_xlabel('update')
    fig.tight_layout()
    out_path = Path(out_path)
    tmp = out_path.with_suffix('.tmp.png')
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(out_path)
    return out_path
