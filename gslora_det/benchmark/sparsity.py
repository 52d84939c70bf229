"""The sparsity sweep's settings, rows, target and tables (no training).

A *setting* is one group-lasso configuration (weight α, mode, warm-up) run
on a model's whole task sequence; α = 0 is plain LoRA, the reference the
H-Mean is held to. The target of a setting (issue 15) holds when

* at least half of the LoRA groups are exactly zero on every task,
* its mean H-Mean over the tasks is at most 1 point below that of plain
  LoRA (α = 0) on the same model (being better is fine), and
* every task meets the quality bar (:func:`gslora_det.benchmark.bar.
  check_bar`).

mAPs, H-Means and residuals are 0-1 in the rows and JSON, % in the tables.
"""
import math
import statistics
from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Optional, Sequence

from gslora_det.benchmark.bar import check_bar
from gslora_det.benchmark.groups import exactly_zero_groups, groups_on
from gslora_det.detectors.settings import (GROUP_LASSO_CHOICES,
                                           short_group_name)

#: "H-Mean within 1 point of plain LoRA": the largest drop allowed (0-1).
H_TOLERANCE = 0.01


@dataclass(frozen=True)
class Setting:
    """One group-lasso configuration of the sweep.

    Args:
        alpha (float): ``group_lasso_cfg.alpha``; 0 is plain LoRA.
        mode (str): ``group_lasso_cfg.mode``, 'penalty' or 'proximal'.
        warmup_iters (int): ``group_lasso_cfg.warmup_iters``.
        sparsify_iters (int): ``group_lasso_cfg.sparsify_iters`` (no early
            stop before ``warmup_iters + sparsify_iters``).
    """
    alpha: float
    mode: str = 'penalty'
    warmup_iters: int = 0
    sparsify_iters: int = 0

    @property
    def is_reference(self) -> bool:
        return self.alpha == 0

    @property
    def label(self) -> str:
        if self.is_reference:
            return 'LoRA (α = 0)'
        warm = f', warm-up {self.warmup_iters}' if self.warmup_iters else ''
        if self.sparsify_iters:
            warm += f', sparsify ≥ {self.sparsify_iters}'
        return f'{self.mode} α = {self.alpha:g}{warm}'

    @property
    def slug(self) -> str:
        """Its run folder's name."""
        if self.is_reference:
            return 'lora_a0'
        warm = f'_w{self.warmup_iters}' if self.warmup_iters else ''
        if self.sparsify_iters:
            warm += f'_s{self.sparsify_iters}'
        return f'{self.mode}_a{self.alpha:g}{warm}'

    def cfg_options(self) -> List[str]:
        """The ``--cfg-options`` that make a task config this setting."""
        gl = 'model.group_lasso_cfg'
        # The mode alone: the forgetting default picks the proximal
        # optimiser wrapper for it (forgetting_setup.forgetting_optim_wrapper).
        opts = [f'{gl}.alpha={self.alpha!r}', f'{gl}.mode={self.mode}',
                f'{gl}.warmup_iters={int(self.warmup_iters)}']
        if self.sparsify_iters:  # absent: earlier sweeps' runs still match
            opts.append(f'{gl}.sparsify_iters={int(self.sparsify_iters)}')
        return opts


def settings_grid(alphas: Sequence[float], modes: Sequence[str],
                  warmups: Sequence[int] = (0, ),
                  sparsify: Sequence[int] = (0, )) -> List[Setting]:
    """Plain LoRA first (once: with α = 0, mode and warm-up do nothing),
    then every α > 0 × mode × warm-up × sparsify_iters.

    Raises:
        ValueError: a negative α or warm-up, or an unknown mode.
    """
    for mode in modes:
        if mode not in GROUP_LASSO_CHOICES['mode']:
            raise ValueError(f'unknown mode {mode!r}; use one of '
                             f"{list(GROUP_LASSO_CHOICES['mode'])}")
    if any(v < 0 for v in (*alphas, *warmups, *sparsify)):
        raise ValueError('α, warm-up and sparsify iterations must be >= 0')
    grid = [Setting(0.0)] if 0 in alphas else []
    grid += [Setting(float(a), m, int(w), int(n)) for a in alphas if a > 0
             for m in modes for w in warmups for n in sparsify]
    return list(dict.fromkeys(grid))


def task_row(report: Mapping) -> Dict:
    """One task of one setting: groups, mAPs, residuals, H, steps, bar."""
    norms = report.get('group_norms') or {}
    zero = exactly_zero_groups(report)
    bar = check_bar(report)
    ctl = report.get('controller') or {}
    res = report.get('residual_after') or {}
    return dict(
        task=report.get('task'), groups_total=len(norms),
        groups_zero=len(zero), zero=zero, on=groups_on(report),
        mAP_forget_after=report.get('mAP_forget_after'),
        mAP_retain_before=report.get('mAP_retain_before'),
        mAP_retain_after=report.get('mAP_retain_after'),
        mAP_old_after=report.get('mAP_old_after'),
        residual_own=res.get('residual_own@0.3'),
        residual_any=res.get('residual_any@0.3'),
        h_mean=report.get('h_mean'),
        steps=ctl.get('steps', report.get('train_iters')),
        controller=ctl.get('status'), bar_met=bar['met'],
        bar_failed=bar['failed'], group_norms=dict(norms))


def half_zero(row: Mapping) -> bool:
    """At least half of the task's groups are exactly zero."""
    return row['groups_total'] > 0 and 2 * row['groups_zero'] >= \
        row['groups_total']


def mean_h(rows: Sequence[Mapping]) -> Optional[float]:
    hs = [r['h_mean'] for r in rows]
    return statistics.mean(hs) if hs and None not in hs else None


def setting_summary(model: str, setting: Setting, rows: Sequence[Mapping],
                    reference_h: Optional[float],
                    expected_tasks: Optional[int] = None) -> Dict:
    """Whether the setting meets the target on the model's sequence.

    Args:
        model (str): The model's name.
        setting (Setting): The setting.
        rows (Sequence[Mapping]): Its :func:`task_row` dicts, in order.
        reference_h (float, optional): Plain LoRA's mean H on the model;
            None when α = 0 was not run (the H condition is then unknown:
            ``target`` is None if every other condition holds, else
            False).
        expected_tasks (int, optional): Tasks of the full sequence; fewer
            rows (a run that stopped) do not meet the target.

    Returns:
        dict: ``h_mean`` (mean over tasks), ``h_delta`` (vs α = 0, 0-1),
        ``half_zero_every_task``, ``h_within``, ``bar_every_task``,
        ``complete`` and ``target`` (True, False, or None: unknown).
    """
    h = mean_h(rows)
    delta = None if h is None or reference_h is None else h - reference_h
    complete = bool(rows) and (expected_tasks is None
                               or len(rows) == expected_tasks)
    flags = dict(
        half_zero_every_task=bool(rows) and all(half_zero(r) for r in rows),
        h_within=delta is not None and delta >= -H_TOLERANCE - 1e-12,
        bar_every_task=bool(rows) and all(r['bar_met'] for r in rows))
    target = complete and all(flags.values())
    if (reference_h is None and complete and flags['half_zero_every_task']
            and flags['bar_every_task']):
        target = None  # only the H condition is left, with nothing to compare
    return dict(model=model, setting=asdict(setting), label=setting.label,
                slug=setting.slug, tasks=len(rows), h_mean=h,
                h_reference=reference_h, h_delta=delta, complete=complete,
                target=target, **flags)


def _pct(value) -> str:
    return '–' if value is None or (isinstance(value, float) and
                                    math.isnan(value)) else \
        f'{100 * value:.1f}'


def _yes(flag: bool) -> str:
    return 'yes' if flag else 'no'


def task_table(results: Sequence[Mapping]) -> str:
    """Markdown: one line per setting and task."""
    lines = ['| model | setting | task | groups exactly 0 | layers on | '
             'mAP forgotten / retained / old (%) | residual own / any '
             '@0.3 (%) | H-Mean (%) | steps | bar |',
             '|' + '---|' * 10]
    for res in results:
        for r in res['rows']:
            on = ', '.join(short_group_name(g) for g in r['on']) or 'none'
            bar = 'met' if r['bar_met'] else 'missed: ' + '; '.join(
                r['bar_failed'])
            lines.append(
                f"| {res['model']} | {res['summary']['label']} | "
                f"{r['task']} | {r['groups_zero']}/{r['groups_total']} | "
                f"{on} | {_pct(r['mAP_forget_after'])} / "
                f"{_pct(r['mAP_retain_after'])} / "
                f"{_pct(r['mAP_old_after'])} | {_pct(r['residual_own'])} / "
                f"{_pct(r['residual_any'])} | {_pct(r['h_mean'])} | "
                f"{r['steps'] if r['steps'] is not None else '–'} | {bar} |")
    return '\n'.join(lines) + '\n'


def summary_table(results: Sequence[Mapping]) -> str:
    """Markdown: one line per setting, the target's three conditions."""
    lines = ['| model | setting | mean H-Mean (%) | vs α = 0 (points) | '
             '≥ half the groups exactly 0 on every task | bar met on every '
             'task | target |', '|' + '---|' * 7]
    for res in results:
        s = res['summary']
        delta = '–' if s['h_delta'] is None else f"{100 * s['h_delta']:+.1f}"
        target = ('unknown: no α = 0 run on this model'
                  if s['target'] is None else _yes(s['target'])
                  + ('' if s['complete'] else ' (sequence incomplete)'))
        lines.append(
            f"| {s['model']} | {s['label']} | {_pct(s['h_mean'])} | {delta} "
            f"| {_yes(s['half_zero_every_task'])} | "
            f"{_yes(s['bar_every_task'])} | **{target}** |")
    return '\n'.join(lines) + '\n'


def markdown(results: Sequence[Mapping]) -> str:
    """The sweep's report: the per-setting target, then every task."""
    return ('## Target per setting\n\nTarget: at least half the LoRA groups '
            'exactly zero on every task, mean H-Mean at most '
            f'{100 * H_TOLERANCE:.0f} point below plain LoRA (α = 0) on the '
            'same model, the bar met on every task.\n\n'
            + summary_table(results) + '\n## Every task\n\n'
            + task_table(results))


def plot(results: Sequence[Mapping], path: str) -> str:
    """Group-norm heat map per model (rows: setting and task; columns: the
    model's groups), on one colour scale from 0 per model. A group whose
    update is exactly zero is drawn as 0 (hatched), whatever ``‖A‖`` its
    norm keeps (``shrink='B'``).

    Args:
        results (Sequence[Mapping]): The sweep's results (``model``,
            ``summary``, ``rows``).
        path (str): Output PNG.

    Returns:
        str: ``path``.
    """
    from matplotlib.figure import Figure
    from gslora_det.report.plots import _save, draw_norm_heatmap
    models = list(dict.fromkeys(r['model'] for r in results))
    blocks = []
    for model in models:
        cells = [(f"{res['summary']['label']}, task {row['task']}", row)
                 for res in results if res['model'] == model
                 for row in res['rows']]
        groups = list(dict.fromkeys(g for _, row in cells
                                    for g in row['group_norms']))
        if cells:  # a model none of whose runs finished: no panel
            blocks.append((model, cells, groups))
    heights = [max(len(cells), 1) * 0.32 + 1.6 for _, cells, _ in blocks]
    width = max(8.0, 0.6 * max((len(g) for *_, g in blocks), default=1) + 5)
    fig = Figure(figsize=(width, sum(heights) + 0.5))
    if not blocks:
        fig.text(0.5, 0.5, 'no finished run', ha='center')
        return _save(fig, path)
    axes = fig.subplots(len(blocks), 1, squeeze=False,
                        gridspec_kw=dict(height_ratios=heights))[:, 0]
    for ax, (model, cells, groups) in zip(axes, blocks):
        values = [[0.0 if g in row['zero'] else
                   row['group_norms'].get(g, math.nan) for g in groups]
                  for _, row in cells]
        draw_norm_heatmap(ax, values, [label for label, _ in cells],
                          [short_group_name(g) for g in groups])
        ax.set_title(f'{model}: LoRA group norms after each task '
                     '(hatched: update exactly 0)', fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
