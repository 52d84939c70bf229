"""The benchmark's results: one row per method, as Markdown, JSON and a
plot. mAPs and residuals are on the 0-1 scale in JSON, in % in Markdown."""
import json
import statistics
from typing import Dict, List, Mapping, Optional, Sequence

from matplotlib.figure import Figure

from gslora_det.io_utils import atomic_write_text
from gslora_det.report.plots import _pct, _save

RESIDUAL_KEY = 'residual_{kind}@0.3'

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


def _fmt(value, spec: str = '.2f', pct: bool = False) -> str:
    if value is None:
        return '–'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    return format(100 * value if pct else value, spec)


def markdown_table(rows: Sequence[Mapping]) -> str:
    """The README table."""
    lines = [
        '| method | H-Mean per task | mean H | final mAP forgotten / '
        'previously forgotten / retained | residual own / any @0.3 | '
        'trainable params | train s/iter (× full FT) | train memory MiB '
        '(× full FT) | inference × base | same #params | wall min |',
        '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        hs = ' / '.join(_fmt(h, '.1f', True) for h in r['h_mean_per_task'])
        lines.append(
            f"| {r['label']} | {hs} | **{_fmt(r['h_mean_avg'], '.1f', True)}"
            f"** | {_fmt(r['mAP_forget_final'], '.1f', True)} / "
            f"{_fmt(r['mAP_old_final'], '.1f', True)} / "
            f"{_fmt(r['mAP_retain_final'], '.1f', True)} | "
            f"{_fmt(r['residual_own_final'], '.1f', True)} / "
            f"{_fmt(r['residual_any_final'], '.1f', True)} % | "
            f"{_fmt(r.get('trainable_params'), ',d')} | "
            f"{_fmt(r.get('sec_per_iter'))} ({_fmt(r.get('time_ratio'))}) | "
            f"{_fmt(r.get('train_mib'), '.0f')} "
            f"({_fmt(r.get('memory_ratio'))}) | "
            f"{_fmt(r.get('inference_ratio'))} | "
            f"{_fmt(r.get('params_identical'))} | "
            f"{_fmt(r.get('wall_min'), '.1f')} |")
    return '\n'.join(lines) + '\n'


def plot_methods(rows: Sequence[Mapping], path: str) -> str:
    """Left: mean H-Mean per method. Right: final mAP on the forgotten,
    previously forgotten and retained classes."""
    fig = Figure(figsize=(12, 0.45 * len(rows) + 1.8))
    ax_h, ax_m = fig.subplots(1, 2, sharey=True)
    labels = [r['label'] for r in rows]
    ys = list(range(len(rows)))[::-1]
    ax_h.barh(ys, [_pct(r['h_mean_avg']) for r in rows], color='#2ca02c')
    for y, r in zip(ys, rows):
        ax_h.text(_pct(r['h_mean_avg'] or 0) + 1, y,
                  _fmt(r['h_mean_avg'], '.1f', True), va='center',
                  fontsize=8)
    ax_h.set_yticks(ys, labels)
    ax_h.set_xlabel('mean H-Mean over tasks (%)')
    ax_h.set_xlim(0, 105)
    width = 0.27
    for k, (key, colour, name) in enumerate([
            ('mAP_forget_final', '#d62728', 'forgotten (last task)'),
            ('mAP_old_final', '#7f7f7f', 'previously forgotten'),
            ('mAP_retain_final', '#1f77b4', 'retained')]):
        ax_m.barh([y + (1 - k) * width for y in ys],
                  [_pct(r[key]) for r in rows], height=width,
                  color=colour, label=name)
    ax_m.set_xlabel('final mAP (%)')
    ax_m.set_xlim(0, 100)
    ax_m.legend(loc='lower right', fontsize=8)
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
        dict(settings=settings, rows=rows), indent=2))
    plot_methods(rows, out_prefix + '.png')
    return dict(md=out_prefix + '.md', json=out_prefix + '.json',
                png=out_prefix + '.png')
