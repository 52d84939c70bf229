"""The benchmark's results: one row per method, as Markdown, JSON and a
plot. mAPs, H-Means and residuals are on the 0-1 scale in JSON (its
``units`` key says so), in % in the Markdown table and the plot."""
import json
import math
import statistics
from typing import Dict, List, Mapping, Optional, Sequence

from matplotlib.figure import Figure

from gslora_det.benchmark.groups import format_spread, groups_on, spread
from gslora_det.io_utils import atomic_write_text
from gslora_det.report.plots import _pct, _save

RESIDUAL_KEY = 'residual_{kind}@0.3'
#: Written into the JSON: its numbers are fractions, not the tables' %.
JSON_UNITS = dict(mAP='0-1', h_mean='0-1',
                  residual='0-1 (share of the forgotten objects)',
                  sec_per_iter='s', train_mib='MiB', wall_min='min')

#: Display names, in table order.
METHOD_LABELS = {
    'gslora': 'GS-LoRA',
    'lora': 'LoRA (α = 0)',
    'full_ft_gslora_loss': 'Full FT, GS-LoRA loss',
    'rehearsal_ft': 'Rehearsal FT',
    'gradient_ascent': 'Gradient ascent',
    'l2': 'L2 + rehearsal',
    'ewc': 'EWC + rehearsal',
    'mas': 'MAS + rehearsal',
    'derpp': 'DER++',
    'retrain': 'Retrain (oracle)',
}


def method_row(method: str, reports: Sequence[Mapping],
               cost: Optional[Mapping] = None,
               reference_cost: Optional[Mapping] = None,
               inference: Optional[Mapping] = None,
               base_inference: Optional[Mapping] = None,
               wall_s: Optional[float] = None) -> Dict:
    """Summarise one method's sequence (its tasks' reports, in order)."""
    last = reports[-1]
    residual = last.get('residual_after') or {}
    hs = [r.get('h_mean') for r in reports]
    row = dict(
        method=method, label=METHOD_LABELS.get(method, method),
        tasks=len(reports), h_mean_per_task=hs,
        h_mean_avg=statistics.mean(hs) if all(
            h is not None for h in hs) else None,
        mAP_forget_final=last.get('mAP_forget_after'),
        mAP_old_final=last.get('mAP_old_after'),
        mAP_retain_final=last.get('mAP_retain_after'),
        mAP_retain_base=reports[0].get('mAP_retain_before'),
        residual_own_final=residual.get(RESIDUAL_KEY.format(kind='own')),
        residual_any_final=residual.get(RESIDUAL_KEY.format(kind='any')),
        trainable_params=last.get('trainable_params'),
        # LoRA groups not exactly zero per task (None: no LoRA groups).
        groups_on_per_task=[
            [len(groups_on(r)), len(r['group_norms'])]
            if r.get('group_norms') else None for r in reports],
        wall_min=None if wall_s is None else wall_s / 60)
    if cost:
        row['trainable_params'] = cost['memory']['trainable_params']
        row['sec_per_iter'] = cost['sec_per_iter']
        row['train_mib'] = cost['memory']['train_tensor_bytes'] / 2**20
    if cost and reference_cost:
        row['time_ratio'] = (cost['sec_per_iter'] /
                             reference_cost['sec_per_iter'])
        row['memory_ratio'] = (
            cost['memory']['train_tensor_bytes'] /
            reference_cost['memory']['train_tensor_bytes'])
    if inference and base_inference:
        row['inference_ratio'] = (inference['sec_per_image'] /
                                  base_inference['sec_per_image'])
        row['params_identical'] = inference['params'] == base_inference[
            'params']
    return row


def with_seeds(row: Dict, h_by_seed: Mapping[int, Optional[float]],
               failed: Optional[Mapping[int, str]] = None) -> Dict:
    """Add the method's mean H-Mean over seeds to its row (in place).

    Args:
        row (dict): The :func:`method_row` of one seed.
        h_by_seed (Mapping[int, float]): Seed -> that run's mean H-Mean
            over tasks (``h_mean_avg``; None if unknown).
        failed (Mapping[int, str], optional): Seed -> error of the runs
            that did not finish (not in the statistics).

    Returns:
        dict: ``row`` with ``h_mean_by_seed``, ``h_mean_over_seeds``
        (:func:`gslora_det.benchmark.groups.spread`) and ``failed_seeds``.
    """
    row['h_mean_by_seed'] = {str(s): h for s, h in sorted(h_by_seed.items())}
    row['h_mean_over_seeds'] = spread(list(h_by_seed.values()))
    row['failed_seeds'] = sorted(failed or {})
    return row


def _per_task(values, fmt) -> str:
    return ' / '.join('–' if v is None else fmt(v) for v in values or []) \
        or '–'


def _fmt(value, spec: str = '.2f', pct: bool = False) -> str:
    if value is None:
        return '–'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    return format(100 * value if pct else value, spec)


def markdown_table(rows: Sequence[Mapping]) -> str:
    """The README table: one row per method; mAP@[.5:.95], H-Mean and
    residuals in %. A method that failed (an ``error`` row) keeps its row,
    with "–" for what it did not measure.

    Args:
        rows (Sequence[Mapping]): :func:`method_row` dicts or error rows.

    Returns:
        str: The Markdown table, newline-terminated.
    """
    lines = [
        '| method | H-Mean per task (%) | mean H (%) | final mAP (%) '
        'forgotten / previously forgotten / retained | residual own / any '
        '@0.3 (%) | mean H over seeds (%): mean ± std (min–max) | LoRA '
        'groups on per task | non-zero adapter params per task | '
        'trainable params | train s/iter (× full FT) | train '
        'memory MiB (× full FT) | inference × base | same #params | '
        'wall min |',
        '|' + '---|' * 14]
    for r in rows:
        pct = {k: _fmt(r.get(k), '.1f', True) for k in (
            'h_mean_avg', 'mAP_forget_final', 'mAP_old_final',
            'mAP_retain_final', 'residual_own_final', 'residual_any_final')}
        hs = ' / '.join(_fmt(h, '.1f', True)
                        for h in r.get('h_mean_per_task') or []) or '–'
        label = r['label'] + (' (failed)' if 'error' in r else '')
        seeds = format_spread(r.get('h_mean_over_seeds') or {})
        if r.get('failed_seeds'):
            seeds += ' (failed: seed ' + ', '.join(
                map(str, r['failed_seeds'])) + ')'
        groups = _per_task(r.get('groups_on_per_task'),
                           lambda g: f'{g[0]}/{g[1]}')
        nonzero = _per_task(r.get('adapter_nonzero_per_task'),
                            lambda n: f'{n:,d}')
        lines.append(
            f"| {label} | {hs} | **{pct['h_mean_avg']}** | "
            f"{pct['mAP_forget_final']} / {pct['mAP_old_final']} / "
            f"{pct['mAP_retain_final']} | {pct['residual_own_final']} / "
            f"{pct['residual_any_final']} | {seeds} | {groups} | "
            f"{nonzero} | {_fmt(r.get('trainable_params'), ',d')} | "
            f"{_fmt(r.get('sec_per_iter'))} ({_fmt(r.get('time_ratio'))}) | "
            f"{_fmt(r.get('train_mib'), '.0f')} "
            f"({_fmt(r.get('memory_ratio'))}) | "
            f"{_fmt(r.get('inference_ratio'))} | "
            f"{_fmt(r.get('params_identical'))} | "
            f"{_fmt(r.get('wall_min'), '.1f')} |")
    return '\n'.join(lines) + '\n'


def plot_methods(rows: Sequence[Mapping], path: str) -> str:
    """Left: mean H-Mean per method. Right: final mAP on the forgotten,
    previously forgotten and retained classes. Every bar carries its value
    (a 0 has no visible bar), "–" marks a missing one and "failed" a method
    that did not finish; a class set no method has (e.g. no previously
    forgotten classes in a one-task run) gets no legend entry.

    Args:
        rows (Sequence[Mapping]): :func:`method_row` dicts (or an error row:
            ``label`` and ``error``), in drawing order (top to bottom).
        path (str): Output PNG.

    Returns:
        str: ``path``.
    """
    fig = Figure(figsize=(12, 0.6 * len(rows) + 2.0))
    ax_h, ax_m = fig.subplots(1, 2, sharey=True)
    ys = list(range(len(rows)))[::-1]

    def labels(values):
        return ['failed' if 'error' in r else '–' if v is None else
                _fmt(v, '.1f', True) for r, v in zip(rows, values)]

    def widths(values):  # a missing value: a 0-wide bar that holds a label
        return [0.0 if math.isnan(_pct(v)) else _pct(v) for v in values]

    hs = [r.get('h_mean_avg') for r in rows]
    bars = ax_h.barh(ys, widths(hs), color='#2ca02c')
    ax_h.bar_label(bars, labels(hs), fontsize=8, padding=3)
    # Every seed's mean H as a dot on its method's bar (the bar is the
    # first seed's): the spread is what tells a gap from noise.
    seeds = [(y, _pct(h)) for y, r in zip(ys, rows)
             for h in (r.get('h_mean_by_seed') or {}).values()
             if h is not None and len(r['h_mean_by_seed']) > 1]
    if seeds:
        ax_h.scatter([x for _, x in seeds], [y for y, _ in seeds], s=14,
                     color='black', zorder=3, label='each seed')
        ax_h.legend(loc='lower center', bbox_to_anchor=(0.5, 1.0),
                    fontsize=8, frameon=False)
    ax_h.set_yticks(ys, [r['label'] for r in rows])
    ax_h.set_xlabel('mean H-Mean over tasks (%)'
                    + (': bar first seed' if seeds else ''))
    ax_h.set_xlim(0, 110)  # room for the labels of bars near 100
    # A class set no method has (all None) gets no bars: no legend entry.
    series = [(key, colour, name) for key, colour, name in (
        ('mAP_forget_final', '#d62728', 'forgotten (last task)'),
        ('mAP_old_final', '#7f7f7f', 'previously forgotten'),
        ('mAP_retain_final', '#1f77b4', 'retained'))
        if any(r.get(key) is not None for r in rows)]
    width = 0.8 / max(len(series), 1)
    for k, (key, colour, name) in enumerate(series):
        values = [r.get(key) for r in rows]
        bars = ax_m.barh([y + ((len(series) - 1) / 2 - k) * width
                          for y in ys],
                         widths(values), height=width,
                         color=colour, label=name)
        # Coloured text: a 0 has no bar to tell which set it belongs to.
        ax_m.bar_label(bars, labels(values), fontsize=7, padding=2,
                       color=colour)
    ax_m.set_xlabel('final mAP@[.5:.95] (%)')
    ax_m.set_xlim(0, 110)
    ax_m.legend(loc='lower center', bbox_to_anchor=(0.5, 1.0), ncol=3,
                fontsize=8, frameon=False)
    fig.suptitle('Forgetting methods on the same sequence and base model')
    fig.tight_layout()
    return _save(fig, path)


def write_results(rows: List[Dict], out_prefix: str,
                  settings: Mapping) -> Dict[str, str]:
    """``<prefix>.md``, ``<prefix>.json`` and ``<prefix>.png``."""
    md = markdown_table(rows)
    lines = [f'- {key}: {value:.1f}' if isinstance(value, float) else
             f'- {key}: {value}' for key, value in settings.items()]
    atomic_write_text(out_prefix + '.md', md + '\n' + '\n'.join(lines)
                      + '\n')
    atomic_write_text(out_prefix + '.json', json.dumps(
        dict(units=JSON_UNITS, settings=settings, rows=rows), indent=2))
    plot_methods(rows, out_prefix + '.png')
    return dict(md=out_prefix + '.md', json=out_prefix + '.json',
                png=out_prefix + '.png')
