"""The forgetting controller's trajectory as a picture (``controller.png``).

Top: the forget score on the training forget images per check (mAP and
the fractions still detected as their own class / any class, in %), with
the targets dashed. Bottom: the multiplier λ (log scale) and the retained
guard: the retained classes' mAP on held-out training images (with its
value before the task and the tolerated fall), or the retained loss when
there was no such probe. A reader sees at once whether the request was
met, when, and at what cost to the retained classes.
"""
from typing import Mapping

from matplotlib.figure import Figure

from gslora_det.report.plots import _save


def controller_figure(section: Mapping) -> Figure:
    """Figure of a report's ``controller`` section."""
    traj = list(section.get('trajectory') or [])
    cfg = section.get('settings') or {}
    fig = Figure(figsize=(6.4, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    steps = [p['iter'] for p in traj]
    for key, label, colour in (('map', 'forgotten mAP', '#d62728'),
                               ('own', 'still detected as own class',
                                '#ff7f0e'),
                               ('any', 'still detected as any class',
                                '#9467bd')):
        top.plot(steps, [100 * p[key] for p in traj], marker='o',
                 color=colour, label=label)
        if f'target_{key}' in cfg:
            top.axhline(100 * cfg[f'target_{key}'], color=colour, ls='--',
                        lw=0.8)
    top.set_ylabel('training forget images (%)')
    top.set_ylim(bottom=0)
    top.legend(fontsize=7, loc='upper right')
    top.set_title(f'controller: {section.get("status")} after '
                  f'{section.get("steps")} steps', fontsize=9)
    bottom.plot(steps, [p['multiplier'] for p in traj], marker='s',
                color='black', label='multiplier λ (before the check)')
    held = [p for p in traj if p.get('held')]
    if held:  # λ kept (not raised) although unmet: the retained were harmed
        bottom.scatter([p['iter'] for p in held],
                       [p['multiplier'] for p in held], s=90,
                       facecolors='none', edgecolors='#ff7f0e', zorder=3,
                       label='held: unmet, retained harmed')
    bottom.set_yscale('log')
    bottom.set_ylabel('λ')
    bottom.set_xlabel('training step')
    guard = _plot_guard(bottom, section, steps, traj)
    # One legend for λ and the guard (two y axes), below the plot: inside
    # either axis it hid the curves of the other.
    handles, labels = bottom.get_legend_handles_labels()
    if guard is not None:
        more = guard.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    fig.legend(handles, labels, loc='lower center', ncol=3, fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def _plot_guard(ax, section: Mapping, steps, traj):
    """The retained guard on a twin axis of ``ax``: the held-out retained
    mAP (%) with its value before the task (solid) and the tolerated fall
    (dashed), or else the retained loss.

    Returns:
        The twin axis, or None when there is no guard to plot.
    """
    ref = section.get('retain_map_ref')
    maps = [p.get('retain_map') for p in traj]
    if ref is not None and any(v is not None for v in maps):
        values = [None if v is None else 100 * v for v in maps]
        label = 'retained mAP, held-out train (%)'
    else:
        values, ref = [p.get('retain_loss') for p in traj], None
        label = 'retained loss'
    if all(v is None for v in values):
        return None
    twin = ax.twinx()
    twin.plot(steps, [float('nan') if v is None else v for v in values],
              marker='^', color='#1f77b4', label=label)
    if ref is not None:
        twin.axhline(100 * ref, color='#1f77b4', lw=0.8)
        tol = (section.get('settings') or {}).get('retain_map_tolerance')
        if tol is not None:
            twin.axhline(100 * (ref - tol), color='#1f77b4', ls='--', lw=0.8)
    twin.set_ylabel(label, color='#1f77b4')
    return twin


def plot_controller(section: Mapping, path: str) -> str:
    """Write ``controller.png``; return ``path``."""
    return _save(controller_figure(section), path)
