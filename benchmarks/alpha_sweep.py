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
    from gslora_det.cli_options import add_cfg_options
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--base-checkpoint', default='work_dirs/demo/base.pth')
    p.add_argument('--work-dir', default='work_dirs/alpha_sweep')
    p.add_argument('--alphas', type=float, nargs='+', default=DEFAULT_ALPHAS)
    p.add_argument('--tasks', type=int, default=1, choices=(1, 2, 3))
    p.add_argument('--iters', type=int, default=300,
                   help='iterations per task (the task configs use 300)')
    p.add_argument('--rel-threshold', type=float, default=0.01,
                   help='a group is off below this fraction of the largest')
    add_cfg_options(p)
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


def _pct(value) -> str:
    return '–' if value is None else f'{100 * value:.1f}'


def markdown(rows) -> str:
    """The sweep's Markdown table (mAP, H-Mean, residual in %)."""
    lines = ['| α | groups off (norm < 1 % of max) | largest group norm | '
             'H-Mean (%) | mAP forgotten after (%) | mAP retained before → '
             'after (%) | residual any @0.3 (%) |',
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
            f"{_pct(r['residual_any'])} |")
    return '\n'.join(lines) + '\n'


def plot(rows, path: str) -> str:
    """Left: fraction of groups off, H-Mean and retained mAP against α.
    Right: the final group norms (rows: α; columns: groups), on one colour
    scale from 0 for every α (a per-row scale shows a collapsed row as
    fully on), exact zeros hatched."""
    from matplotlib.figure import Figure
    from gslora_det.report.plots import _save, draw_norm_heatmap
    fig = Figure(figsize=(13, max(4.0, 0.45 * len(rows) + 2.2)))
    ax, ax_hm = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1, 1.3]))
    xs = [max(r['alpha'], 1e-5) for r in rows]
    ax.plot(xs, [100 * r['fraction_off'] for r in rows], 'o-',
            color='#d62728', label='groups switched off (%)')
    ax.plot(xs, [100 * r['h_mean'] for r in rows], 's-', color='#2ca02c',
            label='H-Mean (%)')
    ax.plot(xs, [100 * r['mAP_retain_after'] for r in rows], '^--',
            color='#1f77b4', label='retained mAP@[.5:.95] after (%)')
    ax.set_xscale('log')
    ax.set_xlabel('group-lasso weight α (α = 0 drawn at 1e-5)')
    ax.set_ylabel('%')
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='center left')
    ax.set_title('Group sparsity against α')

    def short(group):  # "enc0" fits a column, "encoder.layers.0" does not
        return group.replace('encoder.layers.', 'enc').replace(
            'decoder.layers.', 'dec')

    last = [r['tasks'][-1] for r in rows]
    groups = list(dict.fromkeys(g for t in last for g in t['norms']))
    draw_norm_heatmap(
        ax_hm, [[t['norms'].get(g, float('nan')) for g in groups]
                for t in last], [f'α={r["alpha"]:g}' for r in rows],
        [short(g) for g in groups], [[short(g) for g in t['off']]
                                     for t in last])
    ax_hm.set_title('Final LoRA group norms (last task; "off": below '
                    '1 % of the largest)', fontsize=10)
    return _save(fig, path)


def main():
    args = parse_args()
    from gslora_det.io_utils import atomic_write_text
    from gslora_det.console import LoopProgress
    from gslora_det.sequence import run_sequence, task_dir, task_done
    start = time.time()
    rows = []
    progress = LoopProgress(len(args.alphas), 'α', '[alpha-sweep]')
    for i, alpha in enumerate(args.alphas, start=1):
        folder = osp.join(args.work_dir, f'alpha_{alpha:g}')
        done = all(task_done(task_dir(folder, k))
                   for k in range(1, args.tasks + 1))
        if done:  # only reads its reports: no wall time for the ETA
            progress.skip(i)
        else:
            progress.start(i, f'α = {alpha:g}')
        reports = run_sequence(
            TASK_CONFIGS[:args.tasks], args.base_checkpoint, folder,
            cfg_options=[f'model.group_lasso_cfg.alpha={alpha}',
                         f'train_cfg.max_iters={args.iters}',
                         f'train_cfg.val_interval={args.iters}'] +
            args.cfg_options, summary_title=f'alpha sweep: α = {alpha:g}')
        if not done:
            progress.end(i)
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
