"""Plots that show a class is gone: per-class AP, LoRA group norms, mAP on
the forgotten / retained / previously forgotten classes across tasks.

Every function takes ``forget_report.json`` dicts (0-1 scale), draws with
matplotlib's Agg canvas (no pyplot state) and writes the PNG atomically.
APs and mAPs are drawn in percent; group norms on a colour scale from 0.
"""
import math
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from gslora_det.evaluation.evaluate import strip_prefix
from gslora_det.io_utils import atomic_path

#: Colours of the class roles (forgotten now, forgotten before, retained).
ROLE_COLOURS = dict(forget='#d62728', old='#7f7f7f', retain='#1f77b4')
ROLE_HATCH = dict(forget='//', old='..', retain='')
ROLE_LABELS = dict(forget='forgotten in this task',
                   old='previously forgotten', retain='retained')
#: One colour per task's class set (no blue: that is "retained").
TASK_COLOURS = ('#d62728', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2',
                '#bcbd22', '#17becf', '#2ca02c')
ZERO_GID = 'exact-zero'  #: ``gid`` of the patch over an exact 0 (tests)


def _save(fig: Figure, path: str, dpi: int = 110) -> str:
    """Write ``fig`` as a PNG at ``path`` atomically; return ``path``."""
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=dpi, bbox_inches='tight')
    return path


def _pct(value: Optional[float]) -> float:
    """0-1 value -> percent; None (or COCO's -1) -> NaN (not drawn)."""
    return math.nan if value is None or value < 0 else 100.0 * float(value)


def per_class_ap(metrics: Mapping) -> Dict[str, float]:
    """Per-class AP of a metrics dict (``AP_<name>`` or
    ``forgetting/AP_<name>`` keys) as ``{name: AP}``."""
    out = {}
    for key, value in strip_prefix(metrics).items():
        if key.startswith('AP_') and value is not None:
            out[key[3:]] = float(value)
    return out


def class_roles(report: Mapping) -> Dict[str, str]:
    """``{class: role}`` in drawing order: forgotten in this task, then
    previously forgotten, then retained, then any other class of the
    per-class APs (role ``retain``)."""
    roles: Dict[str, str] = {}
    for role, key in (('forget', 'forget_classes'),
                      ('old', 'previously_forgotten'),
                      ('retain', 'retained_classes')):
        for name in report.get(key) or ():
            roles.setdefault(name, role)
    for key in ('per_class_AP_after', 'per_class_AP_before'):
        for name in report.get(key) or {}:
            roles.setdefault(name, 'retain')
    return roles


def plot_per_class_ap(report: Mapping, path: str,
                      title: Optional[str] = None) -> str:
    """Grouped bars of per-class AP before vs after one task.

    Args:
        report (Mapping): A ``forget_report.json`` dict; uses ``task``,
            ``forget_classes``, ``previously_forgotten``,
            ``retained_classes``, ``per_class_AP_after`` and (optional)
            ``per_class_AP_before``.
        path (str): Output PNG.
        title (str, optional): Figure title. Defaults to one naming the
            task and its forgotten classes.

    Returns:
        str: ``path``.
    """
    after = report.get('per_class_AP_after') or {}
    before = report.get('per_class_AP_before') or {}
    has_before = any(v is not None for v in before.values())
    roles = class_roles(report)
    names = list(roles)
    width = 0.4 if has_before else 0.7
    fig = Figure(figsize=(min(30.0, max(6.0, 0.6 * len(names) + 2.0)), 4.8))
    ax = fig.add_subplot()
    for i, name in enumerate(names):
        role = roles[name]
        style = dict(color=ROLE_COLOURS[role], hatch=ROLE_HATCH[role],
                     edgecolor='black', linewidth=0.6)
        x_after = i + (width / 2 if has_before else 0.0)
        if has_before:
            ax.bar(i - width / 2, _pct(before.get(name)), width, alpha=0.35,
                   **style)
        ax.bar(x_after, _pct(after.get(name)), width, **style)
        value = _pct(after.get(name))
        ax.annotate('n/a' if math.isnan(value) else f'{value:.0f}',
                    (x_after, 0.0 if math.isnan(value) else value),
                    ha='center', va='bottom', fontsize=7,
                    xytext=(0, 2), textcoords='offset points')
    ax.set_xticks(range(len(names)), names,
                  rotation=45 if len(names) <= 20 else 90,
                  ha='right' if len(names) <= 20 else 'center')
    for label in ax.get_xticklabels():
        label.set_color(ROLE_COLOURS[roles[label.get_text()]])
    ax.set(ylim=(0, 105), xlim=(-0.6, len(names) - 0.4), xlabel='class',
           ylabel='AP@[.5:.95] (%)')
    ax.grid(axis='y', alpha=0.3)
    handles = [Patch(facecolor=ROLE_COLOURS[r], hatch=ROLE_HATCH[r],
                     edgecolor='black', label=ROLE_LABELS[r])
               for r in ROLE_LABELS if r in roles.values()]
    if has_before:
        handles += [Patch(facecolor='white', edgecolor='black', alpha=0.35,
                          label='before (light)'),
                    Patch(facecolor='black', edgecolor='black',
                          label='after (solid, value on top)')]
    ax.legend(handles=handles, loc='upper left', bbox_to_anchor=(1.01, 1),
              fontsize=8, frameon=False)
    if title is None:
        task, forgotten = report.get('task'), report.get('forget_classes')
        title = (f'Task {task}: ' if task is not None else '') + (
            'per-class AP before vs after' if has_before else 'per-class AP'
        ) + f" (forgotten: {', '.join(forgotten or []) or 'none'})"
    ax.set_title(title)
    return _save(fig, path)


def draw_norm_heatmap(ax, norms, rows: Sequence[str], cols: Sequence[str],
                      off: Optional[Sequence] = None,
                      annotate: Optional[bool] = None):
    """Draw LoRA group norms as a heat map on one colour scale from 0.

    All cells share ``[0, largest norm]``, so a weak group looks weak and a
    collapsed row collapsed (a per-row or min-based scale hides both). Exact
    zeros are hatched white cells marked "0"; NaN (no such group) "n/a".

    Args:
        ax (matplotlib.axes.Axes): Target axes.
        norms (Sequence[Sequence[float]]): One row of norms per row label.
        rows (Sequence[str]): Row (y) labels.
        cols (Sequence[str]): Column (x) labels.
        off (Sequence[Collection[str]], optional): Per row, the columns
            switched off (marked "off").
        annotate (bool, optional): Write each value in its cell. Defaults to
            True for grids of at most 120 cells.

    Returns:
        matplotlib.image.AxesImage: The image.
    """
    data = np.array(norms, dtype=float).reshape(len(rows), len(cols))
    top = float(max([v for v in data.flat if v > 0] or [1.0]))
    cmap = colormaps['viridis'].with_extremes(bad='#d9d9d9')
    image = ax.imshow(data, aspect='auto', cmap=cmap, vmin=0.0, vmax=top,
                      interpolation='nearest')
    annotate = data.size <= 120 if annotate is None else annotate
    for (i, j), v in np.ndenumerate(data):
        if v == 0:  # drawn over the colour: 0 must not read as "small"
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, gid=ZERO_GID,
                                   facecolor='white', edgecolor='#888888',
                                   hatch='///', linewidth=0))
        text = '0' if v == 0 else 'n/a' if math.isnan(v) else \
            f'{v:.2g}' if annotate else ''
        if annotate and off is not None and cols[j] in (off[i] or ()):
            text += '\noff'
        if text:
            ax.text(j, i, text, ha='center', va='center',
                    fontsize=8 if annotate else 6,
                    color='white' if 0 < v < 0.55 * top else 'black',
                    fontweight='bold' if v == 0 else 'normal')
    tilt = max(map(len, cols), default=0) > 6  # long names would collide
    ax.set_xticks(range(len(cols)), cols, rotation=45 if tilt else 0,
                  ha='right' if tilt else 'center')
    ax.set_yticks(range(len(rows)), rows)
    bar = ax.figure.colorbar(
        image, ax=ax, label='group norm ‖(A, B)‖₂ (L2 of the LoRA weights)')
    # The swatch goes under the colour bar, where it reads as the scale's
    # "0" step; beside the axes it collided with the bar's label or a title.
    ax.legend(handles=[Patch(facecolor='white', edgecolor='#888888',
                             hatch='///', label='exactly 0')], fontsize=7,
              loc='upper center', bbox_to_anchor=(0.5, -0.02),
              bbox_transform=bar.ax.transAxes, frameon=False,
              borderaxespad=0.0, handlelength=1.2, handletextpad=0.3)
    return image


def group_norms_figure(reports: Sequence[Mapping]) -> Figure:
    """Heat map of the LoRA group norms, one row per task, colour from 0.

    Args:
        reports (Sequence[Mapping]): The tasks' reports, in order (uses
            ``task``, ``group_norms`` and ``inactive_groups``).

    Returns:
        Figure: The figure (not yet saved).
    """
    groups: List[str] = list(dict.fromkeys(
        g for r in reports for g in r.get('group_norms') or {}))
    # A group whose update is exactly zero (the prox zeroes B and keeps A,
    # so its norm is not 0) is drawn as the hatched 0 it is.
    values = [[0.0 if g in (r.get('groups_exactly_zero') or ()) else
               (r.get('group_norms') or {}).get(g, math.nan) for g in groups]
              for r in reports]
    fig = Figure(figsize=(max(6.0, 0.9 * len(groups) + 3.0),
                          max(2.8, 0.6 * len(reports) + 2.0)))
    ax = fig.add_subplot()
    draw_norm_heatmap(ax, values, [f'task {r.get("task", i + 1)}'
                                   for i, r in enumerate(reports)],
                      groups, [r.get('inactive_groups') for r in reports])
    ax.set_xlabel('LoRA group (transformer layer)')
    ax.set_title('LoRA group norms after each task\n(hatched 0: update '
                 'exactly zero; "off": below the relative threshold)',
                 fontsize=10)
    return fig


def plot_group_norms(reports: Sequence[Mapping], path: str) -> str:
    """Save :func:`group_norms_figure` at ``path``; return ``path``."""
    return _save(group_norms_figure(reports), path)


def _mean_ap(per_class: Optional[Mapping], names: Sequence[str]) -> float:
    """Mean AP (%) of ``names``; classes without an AP are left out."""
    aps = [a for a in (_pct((per_class or {}).get(c)) for c in names)
           if not math.isnan(a)]
    return sum(aps) / len(aps) if aps else math.nan


def map_across_tasks_figure(reports: Sequence[Mapping]) -> Figure:
    """mAP across the tasks of a sequence, in two panels.

    Left: per task, bars of its own forgotten / retained / previously
    forgotten mAPs (before and after), not joined: those class sets differ
    between tasks. Right: lines for class sets that stay the same through
    the sequence (each task's forgotten classes, the classes retained at the
    end): the mean of their per-class APs on the base model and after each
    task.

    Args:
        reports (Sequence[Mapping]): The tasks' reports, in order (uses
            ``task``, ``forget_classes``, ``retained_classes``,
            ``mAP_<set>_before/after`` and ``per_class_AP_before/after``).

    Returns:
        Figure: The figure (not yet saved).
    """
    n, tasks = len(reports), [r.get('task', i + 1)
                              for i, r in enumerate(reports)]
    fig = Figure(figsize=(max(11.0, 2.2 * n + 7.0), 4.8))
    ax_t, ax_s = fig.subplots(1, 2)
    bars = [(k, w) for k, w in (('forget', 'before'), ('forget', 'after'),
                                ('retain', 'before'), ('retain', 'after'),
                                ('old', 'after'))
            if any(r.get(f'mAP_{k}_{w}') is not None for r in reports)]
    width = 0.8 / max(len(bars), 1)
    for b, (key, when) in enumerate(bars):
        ys = [_pct(r.get(f'mAP_{key}_{when}')) for r in reports]
        drawn = ax_t.bar([i + (b - (len(bars) - 1) / 2) * width
                          for i in range(n)], ys, width, edgecolor='black',
                         color=ROLE_COLOURS[key], linewidth=0.5,
                         alpha=0.35 if when == 'before' else 1.0,
                         label=f'{ROLE_LABELS[key]}, {when}')
        ax_t.bar_label(drawn, ['' if math.isnan(y) else f'{y:.0f}'
                               for y in ys], fontsize=7, padding=1)
    names = [r.get('forget_classes') or [] for r in reports]
    ax_t.set_xticks(range(n), [
        f'task {t}\n' + ('\n'.join(c) if len(c) <= 3 else f'{len(c)} classes')
        for t, c in zip(tasks, names)], fontsize=8)
    ax_t.set(xlim=(-0.7, n - 0.3), ylim=(0, 108), ylabel='mAP@[.5:.95] (%)')
    ax_t.set_title("Each task's own class sets (as in the table)", fontsize=10)
    # Right: only sets that stay the same may be joined across tasks.
    aps = [reports[0].get('per_class_AP_before')] + [
        r.get('per_class_AP_after') for r in reports]
    kept = list(reports[-1].get('retained_classes') or [
        c for c in aps[-1] or {} if not any(c in s for s in names)])
    sets = [(f'forgotten in task {t}', c, TASK_COLOURS[i % 8], 'o-', 1.5)
            for i, (t, c) in enumerate(zip(tasks, names))]
    sets.append((f'retained at the end ({len(kept)} classes)', kept,
                 ROLE_COLOURS['retain'], 's-', 2.2))
    for label, classes, colour, style, lw in sets:
        ys = [_mean_ap(a, classes) for a in aps]
        if not all(math.isnan(y) for y in ys):
            ax_s.plot(range(n + 1), ys, style, color=colour, label=label,
                      linewidth=lw)
    ax_s.set_xticks(range(n + 1), ['base'] + [f'after\ntask {t}'
                                              for t in tasks], fontsize=8)
    ax_s.set(xlim=(-0.3, n + 0.3), ylim=(-3, 103),  # whole markers at 0
             ylabel='mean per-class AP@[.5:.95] (%)')
    ax_s.set_title('Fixed class sets through the sequence', fontsize=10)
    ax_s.grid(alpha=0.3)
    for ax, cols in ((ax_t, 3), (ax_s, 2)):
        ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.2),
                  ncol=cols, frameon=False)
    fig.suptitle('mAP across forgetting tasks')
    return fig


def plot_map_across_tasks(reports: Sequence[Mapping], path: str) -> str:
    """Save :func:`map_across_tasks_figure` at ``path``; return ``path``."""
    return _save(map_across_tasks_figure(reports), path)
