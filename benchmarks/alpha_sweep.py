"""Group sparsity, shown: sweep GS-LoRA's group-lasso weight α.

For each α, the first task(s) of the built-in sequence run from the same
base checkpoint with ``model.group_lasso_cfg.alpha=α`` (everything else as
the task configs), and the sweep reports the fraction of LoRA groups whose
norm ends below 1 % of the largest (switched off), the H-Mean, and the
forgotten / retained mAP. The paper's claim: the lasso selects few groups
at no loss of H.

Usage::

    python benchmarks/alpha_sweep.py \\
        [--base-checkpoint work_dirs/demo/base.pth] \\
        [--work-dir work_dirs/alpha_sweep] [--alphas 0 3e-4 3e-3 ...] \\
        [--tasks 1] [--iters 300]

Writes ``<work-dir>/alpha_sweep.{md,json,png}``; finished runs are reused.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
from gslora_det.pretrain import (  # noqa: E402  (after the path setup)
    SHAPES_TASK_CONFIGS as TASK_CONFIGS)
DEFAULT_ALPHAS = [0.0, 3e-4, 3e-3, 1e-2, 3e-2, 0.1]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--base-checkpoint', default='work_dirs/demo/base.pth')
    p.add_argument('--work-dir', default='work_dirs/alpha_sweep')
    p.add_argument('--alphas', type=float, nargs='+', default=DEFAULT_ALPHAS)
    p.add_argument('--tasks', type=int, default=1, choices=(1, 2, 3))
    p.add_argument('--iters', type=int, default=300,
                   help='iterations per task (the task configs use 300)')
    p.add_argument('--rel-threshold', type=float, default=0.01,
                   help='a group is off below this fraction of the largest')
    p.add_argument('--cfg-options', nargs='+', default=[])
    return p.parse_args()


def sweep_row(alpha: float, reports, rel_threshold: float) -> dict:
    from gslora_det.group_lasso import inactive_groups
    per_task = []
    for r in reports:
        norms = r['group_norms']
        off = inactive_groups(norms, rel_threshold)
        per_task.append(dict(task=r['task'], norms=norms, off=off,
                             fraction_off=len(off) / max(len(norms), 1)))
    last = reports[-1]
    return dict(
        alpha=alpha, tasks=per_task,
        fraction_off=statistics.mean(t['fraction_off'] for t in per_task),
        # "off" is relative to the largest group; when every group
        # collapses, only the largest norm shows it.
        max_norm=max(per_task[-1]['norms'].values()),
        h_mean=statistics.mean(r['h_mean'] for r in reports),
        mAP_forget_after=last['mAP_forget_after'],
        mAP_retain_before=reports[0]['mAP_retain_before'],
        mAP_retain_after=last['mAP_retain_after'],
        residual_any=(last.get('residual_after') or {}).get(
            'residual_any@0.3'))


def markdown(rows) -> str:
    lines = ['| α | groups off (norm < 1 % of max) | largest group norm | '
             'H-Mean | mAP forgotten after | mAP retained before → after | '
             'residual any @0.3 |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        off = ', '.join(', '.join(t['off']) or '–' for t in r['tasks'])
        n = sum(len(t['norms']) for t in r['tasks'])
        k = sum(len(t['off']) for t in r['tasks'])
        lines.append(
            f"| {r['alpha']:g} | {k}/{n} ({100 * r['fraction_off']:.0f} %: "
            f"{off}) | {r['max_norm']:.3g} | {100 * r['h_mean']:.1f} | "
            f"{100 * r['mAP_forget_after']:.1f} | "
            f"{100 * r['mAP_retain_before']:.1f} → "
            f"{100 * r['mAP_retain_after']:.1f} | "
            f"{100 * (r['residual_any'] or 0):.1f} % |")
    return '\n'.join(lines) + '\n'


def plot(rows, path: str) -> str:
    """Left: fraction of groups off and H-Mean against α. Right: the
    final group norms (rows: α; columns: groups)."""
    import numpy as np
    from matplotlib.figure import Figure
    from gslora_det.report.plots import _save
    fig = Figure(figsize=(12, 4))
    ax, ax_hm = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1, 1.3]))
    xs = [max(r['alpha'], 1e-5) for r in rows]
    ax.plot(xs, [100 * r['fraction_off'] for r in rows], 'o-',
            color='#d62728', label='groups switched off (%)')
    ax.plot(xs, [100 * r['h_mean'] for r in rows], 's-', color='#2ca02c',
            label='H-Mean (%)')
    ax.plot(xs, [100 * r['mAP_retain_after'] for r in rows], '^--',
            color='#1f77b4', label='retained mAP after (%)')
    ax.set_xscale('log')
    ax.set_xlabel('group-lasso weight α (α = 0 drawn at 1e-5)')
    ax.set_ylim(-3, 103)
    ax.legend(fontsize=8, loc='center left')
    ax.set_title('Group sparsity against α')
    groups = list(rows[0]['tasks'][-1]['norms'])
    norms = np.array([[r['tasks'][-1]['norms'][g] for g in groups]
                      for r in rows])
    rel = norms / norms.max(axis=1, keepdims=True)
    im = ax_hm.imshow(rel, aspect='auto', cmap='viridis', vmin=0, vmax=1)
    ax_hm.set_xticks(range(len(groups)),
                     [g.replace('encoder.layers.', 'enc').replace(
                         'decoder.layers.', 'dec') for g in groups])
    ax_hm.set_yticks(range(len(rows)), [f'α={r["alpha"]:g}' for r in rows])
    for i in range(rel.shape[0]):
        for j in range(rel.shape[1]):
            ax_hm.text(j, i, f'{norms[i, j]:.2g}', ha='center',
                       va='center', fontsize=7,
                       color='white' if rel[i, j] < 0.5 else 'black')
    fig.colorbar(im, ax=ax_hm, label='norm / largest norm')
    ax_hm.set_title('Final LoRA group norms (last task)')
    fig.tight_layout()
    return _save(fig, path)


def main():
    args = parse_args()
    from gslora_det.io_utils import atomic_write_text
    from gslora_det.sequence import run_sequence
    start = time.time()
    rows = []
    for alpha in args.alphas:
        folder = osp.join(args.work_dir, f'alpha_{alpha:g}')
        print(f'[alpha-sweep] α = {alpha:g}', flush=True)
        reports = run_sequence(
            TASK_CONFIGS[:args.tasks], args.base_checkpoint, folder,
            cfg_options=[f'model.group_lasso_cfg.alpha={alpha}',
                         f'train_cfg.max_iters={args.iters}',
                         f'train_cfg.val_interval={args.iters}'] +
            args.cfg_options, summary_title=f'alpha sweep: α = {alpha:g}')
        rows.append(sweep_row(alpha, reports, args.rel_threshold))
    prefix = osp.join(args.work_dir, 'alpha_sweep')
    md = markdown(rows)
    atomic_write_text(prefix + '.md', md)
    atomic_write_text(prefix + '.json', json.dumps(dict(
        settings=dict(tasks=args.tasks, iters=args.iters,
                      rel_threshold=args.rel_threshold,
                      base_checkpoint=args.base_checkpoint,
                      cfg_options=args.cfg_options,
                      wall_min=(time.time() - start) / 60),
        rows=rows), indent=2))
    plot(rows, prefix + '.png')
    print('\n' + md)
    print(f'[alpha-sweep] {(time.time() - start) / 60:.1f} min; wrote '
          f'{prefix}.md/.json/.png')


if __name__ == '__main__':
    main()
