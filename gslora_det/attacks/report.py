"""``attack_report.json`` (0-1), ``attack_report.md`` (%) and the plots."""
import json
import os.path as osp
from typing import Dict, List, Mapping, Optional

from gslora_det.attacks.confusion import MISSED, plot_confusion_rows
from gslora_det.attacks.gap import recovered, recovery_gap, run_key
from gslora_det.io_utils import atomic_write_text

UNITS = ('mAP, AP, residual fractions and confusion fractions are on a 0-1 '
         'scale (attack_report.md shows them in %); gaps are differences of '
         'mAP on the same scale')


def forgotten_map(runs: List[Mapping], model: str) -> Dict[str, float]:
    """``{run key: mAP_forget}`` of one model's runs."""
    return {run_key(r['attack'], r['k']): r['metrics'].get('mAP_forget')
            for r in runs if r['model'] == model}


def headline(runs: List[Mapping]) -> Dict:
    """The recovery gap per (attack, k) when a retrained model was
    attacked; otherwise how far each attack moved the merged model."""
    merged = forgotten_map(runs, 'merged')
    models = {r['model'] for r in runs}
    if 'retrained' in models:
        retrained = forgotten_map(runs, 'retrained')
        return dict(
            kind='recovery_gap',
            definition='mAP_forget(attack(merged)) - '
                       'mAP_forget(attack(retrained)), per attack and k',
            merged=merged, retrained=retrained,
            gap=recovery_gap(merged, retrained))
    return dict(kind='recovered',
                definition='mAP_forget(attack(merged)) - '
                           'mAP_forget(merged), per attack and k (no '
                           'retrained model given: pass --retrained for the '
                           'recovery gap)',
                merged=merged,
                recovered=recovered(merged, merged.get('none')))


def percent_text(value: Optional[float], signed: bool = False) -> str:
    """A 0-1 value in % for tables; '-' for None or a negative value (COCO's
    -1: no ground truth), unless ``signed`` (a difference)."""
    if value is None or value < 0 and not signed:
        return '-'
    return f'{100 * value:+.1f}' if signed else f'{100 * value:.1f}'


def _row_text(row: Mapping) -> str:
    parts = [f'{"**" + col + "**" if col == MISSED else col} '
             f'{100 * frac:.0f}%' for col, frac in row['fractions'].items()
             if frac]
    return ', '.join(parts) or '-'


def markdown(report: Mapping) -> str:
    """The report for people: tables in %."""
    s = report['settings']
    thr = s['score_thr']
    own, any_ = f'residual_own@{thr:g}', f'residual_any@{thr:g}'
    lr_from = 'the config' if s['lr_source'] == 'config' else '--lr'
    lines = [
        f'# Recovery attacks on {osp.basename(report["config"])}', '',
        f'Forgotten: {", ".join(report["forget_classes"])}'
        + (f'; previously forgotten: '
           f'{", ".join(report["previously_forgotten"])}'
           if report['previously_forgotten'] else '') + '.',
        f'Values in % (attack_report.json: 0-1). Each attack: {s["steps"]} '
        f'steps, batch size {s["batch_size"]}, lr {s["lr"]:g} (from '
        f'{lr_from}, constant), {s["optimizer"]}, grad clip '
        f'{s["clip_grad"]}, seed {s["seed"]}. Residual and confusion at '
        f'score >= {thr:g}, IoU >= {s["iou_thr"]:g}.', '']
    head = report['headline']
    if head['kind'] == 'recovery_gap':
        lines += ['## Recovery gap (forgotten mAP, merged - retrained, '
                  'points)', '',
                  '| attack | merged | retrained | gap |',
                  '| --- | ---: | ---: | ---: |']
        for key, gap in head['gap'].items():
            lines.append(f'| {key} | {percent_text(head["merged"][key])} | '
                         f'{percent_text(head["retrained"].get(key))} | '
                         f'{percent_text(gap, signed=True)} |')
    else:
        lines += ['## Forgotten mAP recovered by each attack (merged model; '
                  'no retrained model given)', '',
                  '| attack | forgotten mAP | recovered (points) |',
                  '| --- | ---: | ---: |']
        for key, value in head['recovered'].items():
            lines.append(f'| {key} | {percent_text(head["merged"][key])} | '
                         f'{percent_text(value, signed=True)} |')
    lines += ['', '## All runs', '',
              '| model | attack | images | trained params | forgotten mAP '
              f'| residual own@{thr:g} | residual any@{thr:g} | retained '
              'mAP | prev. forgotten mAP |',
              '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in report['runs']:
        m, t = r['metrics'], r['trained']
        lines.append(
            f'| {r["model"]} | {run_key(r["attack"], r["k"])} | '
            f'{r["dataset_size"] or "-"} | '
            f'{format(t["num_params"], ",") if t else "-"} | '
            f'{percent_text(m.get("mAP_forget"))} '
            f'| {percent_text(m.get(own))} | {percent_text(m.get(any_))} | '
            f'{percent_text(m.get("mAP_retain"))} | '
            f'{percent_text(m.get("mAP_old"))} |')
    lines += ['', f'## Confusion rows (objects of each forgotten class '
              f'detected as, score >= {thr:g})', '',
              '| model | attack | class | objects | detected as |',
              '| --- | --- | --- | ---: | --- |']
    for r in report['runs']:
        for name, row in ((r.get('confusion') or {}).get('rows') or
                          {}).items():
            lines.append(f'| {r["model"]} | {run_key(r["attack"], r["k"])} '
                         f'| {name} | {row["num_gt"]} | {_row_text(row)} |')
    lines += ['', 'Plots: ' + ', '.join(
        f'`{p}`' for p in report.get('plots', [])), '']
    return '\n'.join(lines)


def plot_name(run: Mapping) -> str:
    key = run_key(run['attack'], run['k']).replace(' k=', '_k')
    return osp.join('plots', f'confusion_{run["model"]}_{key}.png')


def write_report(report: Dict, work_dir: str) -> Dict[str, str]:
    """Draw the confusion plots, then write the JSON and Markdown
    atomically (a reader never sees half a report).

    Returns:
        dict: ``json``, ``markdown`` paths.
    """
    report['plots'] = []
    for run in report['runs']:
        rows = (run.get('confusion') or {}).get('rows')
        if not rows:
            continue
        rel = plot_name(run)
        plot_confusion_rows(
            rows, osp.join(work_dir, rel),
            title=f'{run["model"]}, {run_key(run["attack"], run["k"])}: '
                  f'forgotten objects detected as (score >= '
                  f'{report["settings"]["score_thr"]:g})')
        report['plots'].append(rel)
    paths = dict(json=osp.join(work_dir, 'attack_report.json'),
                 markdown=osp.join(work_dir, 'attack_report.md'))
    atomic_write_text(paths['json'], json.dumps(report, indent=2))
    atomic_write_text(paths['markdown'], markdown(report))
    return paths
