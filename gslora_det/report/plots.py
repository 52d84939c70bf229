"""Plots that show a class is gone: per-class AP, LoRA group norms, mAP on
the forgotten / retained / previously forgotten classes across tasks.

Every function takes ``forget_report.json`` dicts (or a dict of the same
keys), draws with matplotlib's Agg canvas (no display, no pyplot state) and
writes the PNG atomically. APs are drawn in percent.
"""
import math
from typing import Dict, List, Mapping, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from gslora_det.evaluation.evaluate import strip_prefix
from gslora_det.io_utils import atomic_path

#: Colours of the class roles (forgotten now, forgotten before, retained).
ROLE_COLOURS = dict(forget='#d62728', old='#7f7f7f', retain='#1f77b4')
ROLE_HATCH = dict(forget='//', old='..', retain='')
ROLE_LABELS = dict(forget='forgotten in this task',
                   old='previously forgotten', retain='retained')


def _save(fig: Figure, path: str, dpi: int = 110) -> str:
    """Write ``fig`` as a PNG at ``path`` atomically; return ``path``."""
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=dpi, bbox_inches='tight')
    return path


def _pct(value: Optional[float]) -> float:
    """0-1 value -> percent; None (or COCO's -1) -> NaN (not drawn)."""
    if value is None or value < 0:
        return math.nan
    return 100.0 * float(value)


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
        value = after.get(name)
        ax.annotate('n/a' if value is None else f'{100 * value:.0f}',
                    (x_after, _pct(value) if value is not None else 0.0),
                    ha='center', va='bottom', fontsize=7,
                    xytext=(0, 2), textcoords='offset points')
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45 if len(names) <= 20 else 90,
                       ha='right' if len(names) <= 20 else 'center')
    for label in ax.get_xticklabels():
        label.set_color(ROLE_COLOURS[roles[label.get_text()]])
    ax.set_ylim(0, 105)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel('AP@[.5:.95] (%)')
    ax.set_xlabel('class')
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
        forgotten = ', '.join(report.get('forget_classes') or []) or 'none'
        task = report.get('task')
        head = f'Task {task}: ' if task is not None else ''
        what = 'per-class AP before vs after' if has_before else \
            'per-class AP'
        title = f'{head}{what} (forgotten: {forgotten})'
    ax.set_title(title)
    return _save(fig, path)


def plot_group_norms(reports: Sequence[Mapping], path: str) -> str:
    """Heat map of the LoRA group norms, one row per task.

    Args:
        reports (Sequence[Mapping]): The tasks' reports, in order (uses
            ``task``, ``group_norms`` and ``inactive_groups``).
        path (str): Output PNG.

    Returns:
        str: ``path``.
    """
    groups: List[str] = []
    for r in reports:
        groups += [g for g in r.get('group_norms') or {} if g not in groups]
    values = [[(r.get('group_norms') or {}).get(g, math.nan) for g in groups]
              for r in reports]
    fig = Figure(figsize=(max(6.0, 0.9 * len(groups) + 2.5),
                          max(2.5, 0.6 * len(reports) + 1.8)))
    ax = fig.add_subplot()
    image = ax.imshow(values, aspect='auto', cmap='viridis')
    finite = [v for row in values for v in row if not math.isnan(v)]
    top = max(finite) if finite else 1.0
    for i, r in enumerate(reports):
        off = set(r.get('inactive_groups') or ())
        for j, g in enumerate(groups):
            v = values[i][j]
            if math.isnan(v):
                continue
            text = f'{v:.3g}' + ('\n(off)' if g in off else '')
            ax.text(j, i, text, ha='center', va='center', fontsize=8,
                    color='black' if v > 0.6 * top else 'white')
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=45, ha='right')
    ax.set_yticks(range(len(reports)))
    ax.set_yticklabels([f'task {r.get("task", i + 1)}'
                        for i, r in enumerate(reports)])
    ax.set_xlabel('LoRA group (transformer layer)')
    ax.set_ylabel('task')
    ax.set_title('LoRA group norms after each task ("off": switched off by '
                 'the group lasso)')
    fig.colorbar(image, ax=ax, label='group norm ‖(A, B)‖₂')
    return _save(fig, path)


def plot_map_across_tasks(reports: Sequence[Mapping], path: str) -> str:
    """mAP on the forgotten, retained and previously forgotten classes of
    each task, before and after it.

    Args:
        reports (Sequence[Mapping]): The tasks' reports, in order (uses
            ``task``, ``forget_classes`` and ``mAP_<set>_before/after`` for
            ``forget``, ``retain`` and ``old``).
        path (str): Output PNG.

    Returns:
        str: ``path``.
    """
    tasks = [r.get('task', i + 1) for i, r in enumerate(reports)]
    fig = Figure(figsize=(max(6.5, 1.3 * len(reports) + 4.0), 4.8))
    ax = fig.add_subplot()
    for key, role in (('forget', 'forget'), ('retain', 'retain'),
                      ('old', 'old')):
        for when, style, fill in (('before', '--', 'white'),
                                  ('after', '-', None)):
            ys = [_pct(r.get(f'mAP_{key}_{when}')) for r in reports]
            if all(math.isnan(y) for y in ys):
                continue
            ax.plot(tasks, ys, linestyle=style, marker='o', markersize=7,
                    color=ROLE_COLOURS[role], markerfacecolor=fill or
                    ROLE_COLOURS[role],
                    label=f'{_SET_LABELS[key]}, {when}')
    labels = []
    for t, r in zip(tasks, reports):
        names = ', '.join(r.get('forget_classes') or [])
        labels.append(f'task {t}' + (f'\n{names}' if len(names) <= 30 else
                                      ''))
    ax.set_xticks(tasks)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_xlim(min(tasks) - 0.5, max(tasks) + 0.5)
    ax.set_ylim(-3, 103)  # markers at 0 and 100 stay whole
    ax.set_xlabel('forgetting task (classes forgotten in it)')
    ax.set_ylabel('mAP@[.5:.95] (%)')
    ax.set_title('mAP per class set, before (dashed) and after (solid) each '
                 'task')
    ax.grid(alpha=0.3)
    ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=8,
              frameon=False)
    return _save(fig, path)


_SET_LABELS = dict(forget='forgotten in the task', retain='retained',
                   old='previously forgotten')
