"""The summary of a forgetting sequence: ``<run>/summary.md`` and
``<run>/summary.json``.

One table row per task with the numbers of its ``forget_report.json``, the
residual detection of the forgotten objects, the plots (per task: per-class
AP; per run: LoRA group norms, mAP across tasks) and the settings used,
taken from each task's ``manifest.json`` (or, for a task without one, from
the config the runner dumped into its work dir).
"""
import glob
import json
import os.path as osp
import sys
from typing import Dict, List, Mapping, Optional, Sequence

from mmengine.dist import is_main_process

from gslora_det.io_utils import atomic_write_text
from gslora_det.report.manifest import MANIFEST_NAME, json_safe, utc_now
from gslora_det.report.plots import (plot_group_norms, plot_map_across_tasks,
                                     plot_per_class_ap)

SUMMARY_MD = 'summary.md'
SUMMARY_JSON = 'summary.json'
GROUP_NORMS_PNG = 'group_norms.png'
MAP_PNG = 'map_across_tasks.png'
PER_CLASS_PNG = 'per_class_ap.png'
SETTING_KEYS = ('lora_cfg', 'forget_cfg', 'group_lasso_cfg', 'prototype_cfg',
                'replay', 'optimizer', 'train_cfg')
RESIDUAL_THR = '0.3'
#: ``summary.json`` keeps the reports' fractions; the Markdown shows %.
JSON_UNITS = dict(mAP='0-1', AP='0-1', h_mean='0-1',
                  residual='0-1 (share of the forgotten objects)',
                  train_time_s='s')


def _pct(v: Optional[float]) -> str:
    """A 0-1 value as the tables' % (one decimal); None: "–"."""
    return '–' if v is None else f'{100 * v:.1f}'


def task_row(report: Mapping) -> Dict:
    """The summary numbers of one ``forget_report.json`` (0-1 scale)."""
    res = report.get('residual_after') or {}
    keys = ('task', 'forget_classes', 'mAP_forget_before', 'mAP_forget_after',
            'mAP_retain_before', 'mAP_retain_after', 'mAP_old_after',
            'h_mean', 'trainable_params', 'total_params', 'train_time_s')
    row = {k: report.get(k) for k in keys}
    row[f'residual_own@{RESIDUAL_THR}_after'] = res.get(
        f'residual_own@{RESIDUAL_THR}')
    row[f'residual_any@{RESIDUAL_THR}_after'] = res.get(
        f'residual_any@{RESIDUAL_THR}')
    row['groups_off'] = list(report.get('inactive_groups') or [])
    # None: a report from before the on / exactly-zero split.
    on = report.get('groups_on')
    row['groups_on'] = None if on is None else list(on)
    row['groups_total'] = len(report.get('group_norms') or {})
    return row


def task_table(reports: Sequence[Mapping]) -> str:
    """A Markdown table, one row per task; mAPs, H-Mean and residuals in
    %, which the headers say (the table is also printed on its own)."""
    lines = [
        '| task | forgotten classes | mAP forget before → after (%) | '
        'mAP retain before → after (%) | mAP old after (%) | H-Mean (%) | '
        f'residual own / any @{RESIDUAL_THR} after (%) | groups on | '
        'groups off | trainable params | train s |',
        '|---|---|---|---|---|---|---|---|---|---|---|'
    ]
    for r in map(task_row, reports):
        on = '–' if r['groups_on'] is None else \
            f'{len(r["groups_on"])}/{r["groups_total"]}'
        lines.append(
            f'| {r["task"]} | {", ".join(r["forget_classes"] or [])} | '
            f'{_pct(r["mAP_forget_before"])} → {_pct(r["mAP_forget_after"])}'
            f' | {_pct(r["mAP_retain_before"])} → '
            f'{_pct(r["mAP_retain_after"])} | {_pct(r["mAP_old_after"])} | '
            f'{_pct(r["h_mean"])} | '
            f'{_pct(r[f"residual_own@{RESIDUAL_THR}_after"])} / '
            f'{_pct(r[f"residual_any@{RESIDUAL_THR}_after"])} | '
            f'{on} | {len(r["groups_off"])}/{r["groups_total"]} | '
            f'{r["trainable_params"] or 0:,} | '
            f'{r["train_time_s"] or 0:.0f} |')
    return '\n'.join(lines)


def residual_table(reports: Sequence[Mapping]) -> str:
    """Markdown: every residual share of each task, before → after."""
    thrs = sorted({k.split('@')[1] for r in reports
                   for k in (r.get('residual_after') or {})
                   if k.startswith(('residual_own@', 'residual_any@'))},
                  key=float)
    cols = [f'{kind}@{t}' for t in thrs for kind in ('own', 'any')]
    lines = ['| task | forgotten objects | ' + ' | '.join(cols) + ' |',
             '|---|---|' + '---|' * len(cols)]
    for r in reports:
        before = r.get('residual_before') or {}
        after = r.get('residual_after') or {}
        num = after.get('residual_num_gt')
        cells = [f'{_pct(before.get("residual_" + c))} → '
                 f'{_pct(after.get("residual_" + c))}' for c in cols]
        lines.append(f'| {r.get("task")} | '
                     f'{"–" if num is None else int(num)} | ' +
                     ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def task_settings(folder: str, config: Optional[str] = None) -> Dict:
    """The settings a task ran with: the manifest's effective settings, or
    (no manifest) the values in the config the runner dumped into
    ``folder`` (``config``'s file name, else the only ``.py`` there)."""
    manifest = osp.join(folder, MANIFEST_NAME)
    if osp.isfile(manifest):
        with open(manifest) as f:
            return dict(json.load(f).get('settings') or {})
    dumped = osp.join(folder, osp.basename(config)) if config else None
    if not dumped or not osp.isfile(dumped):
        found = sorted(glob.glob(osp.join(folder, '*.py')))
        dumped = found[0] if len(found) == 1 else None
    if dumped is None:
        return {}
    from mmengine.config import Config
    cfg = Config.fromfile(dumped)
    model = cfg.get('model', {})
    out = {k: model.get(k) for k in SETTING_KEYS[:4]}
    out.update(replay=cfg.get('replay'), optimizer=cfg.get('optim_wrapper'),
               train_cfg=cfg.get('train_cfg'),
               forget_task=cfg.get('forget_task'))
    return json_safe(out)


def _settings_md(per_task: Sequence[Mapping], tasks: Sequence) -> List[str]:
    """Each setting once when every task used the same, else per task."""
    lines = []
    for key in SETTING_KEYS:
        values = [s.get(key) for s in per_task]
        if all(v is None for v in values):
            continue
        if all(v == values[0] for v in values):
            lines.append(f'- `{key}`: `{json.dumps(values[0])}`')
        else:
            lines.append(f'- `{key}`:')
            lines += [f'  - task {t}: `{json.dumps(v)}`'
                      for t, v in zip(tasks, values)]
    return lines


def _plot(fn, *args) -> bool:
    """Draw one plot; a failure is reported, never fatal to the summary."""
    try:
        fn(*args)
        return True
    except Exception as err:  # noqa: BLE001
        print(f'[summary] warning: {fn.__name__} failed: {err!r}',
              file=sys.stderr)
        return False


def write_run_summary(work_dir: str, reports: Sequence[Mapping],
                      task_configs: Sequence[str], base_checkpoint: str,
                      cfg_options: Sequence[str] = (),
                      title: str = 'GS-LoRA forgetting run') -> Dict:
    """Draw the run's plots and write ``summary.md`` and ``summary.json``.

    A task whose ``per_class_ap.png`` is missing (a run from before the
    plot existed) gets it drawn from its report. Only rank 0 writes.

    Args:
        work_dir (str): The run directory (task k in ``task_<k>/``).
        reports (Sequence[Mapping]): The tasks' reports, in order.
        task_configs (Sequence[str]): The task configs, in order.
        base_checkpoint (str): The checkpoint task 1 started from.
        cfg_options (Sequence[str]): ``key=value`` overrides of every task.
        title (str): Heading of ``summary.md``.

    Returns:
        dict: The content of ``summary.json``.
    """
    tasks = [r.get('task', i + 1) for i, r in enumerate(reports)]
    folders = [f'task_{i}' for i in range(1, len(reports) + 1)]
    if not is_main_process():
        return {}
    plots = {}
    for name, fn in ((GROUP_NORMS_PNG, plot_group_norms),
                     (MAP_PNG, plot_map_across_tasks)):
        if _plot(fn, reports, osp.join(work_dir, name)):
            plots[name[:-4]] = name
    entries, settings = [], []
    for folder, report, cfg in zip(folders, reports, task_configs):
        png = osp.join(work_dir, folder, PER_CLASS_PNG)
        if not osp.isfile(png):
            _plot(plot_per_class_ap, report, png)
        settings.append(task_settings(osp.join(work_dir, folder), cfg))
        files = {k: f'{folder}/{n}' for k, n in (
            ('report', 'forget_report.json'), ('manifest', MANIFEST_NAME),
            ('per_class_ap', PER_CLASS_PNG), ('merged', 'merged.pth'),
            ('adapter', 'adapter.safetensors'))
            if osp.isfile(osp.join(work_dir, folder, n))}
        entries.append(dict(task_row(report), config=cfg, files=files,
                            settings=settings[-1]))
    summary = dict(title=title, units=JSON_UNITS, generated_at=utc_now(),
                   base_checkpoint=base_checkpoint,
                   base_checkpoint_sha256=_input_sha(work_dir),
                   task_configs=list(task_configs),
                   cfg_options=list(cfg_options), plots=plots, tasks=entries,
                   reports=list(reports))
    atomic_write_text(osp.join(work_dir, SUMMARY_JSON),
                      json.dumps(summary, indent=1) + '\n')
    atomic_write_text(osp.join(work_dir, SUMMARY_MD),
                      _markdown(summary, reports, settings, tasks))
    return summary


def _input_sha(work_dir: str) -> Optional[str]:
    """The base checkpoint's SHA-256 as task 1's manifest recorded it."""
    path = osp.join(work_dir, 'task_1', MANIFEST_NAME)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        files = json.load(f).get('files', {})
    return files.get('input_checkpoint', {}).get('sha256')


def _markdown(summary: Mapping, reports: Sequence[Mapping],
              settings: Sequence[Mapping], tasks: Sequence) -> str:
    """The text of ``summary.md``."""
    lines = [f'# {summary["title"]}', '',
             f'{len(reports)} forgetting task(s); written '
             f'{summary["generated_at"]}. mAP@[.5:.95] and H-Mean in % '
             '(`summary.json` keeps them on the 0-1 scale); residual '
             'own / any @τ: share (%) of the forgotten objects still covered '
             '(IoU ≥ 0.5) by a detection of score ≥ τ of their own class / '
             'of any class. Groups on: LoRA groups whose update is not '
             'exactly zero (the layers the task changed); groups off: those '
             "whose norm ends below the report's relative threshold.", '',
             task_table(reports), '', '## Residual detection of the '
             'forgotten objects (before → after, %)', '',
             residual_table(reports), '', '## Plots', '']
    if 'map_across_tasks' in summary['plots']:
        lines += ["mAP across tasks: left, each task's own class sets as in "
                  'the table (not joined: they differ between tasks); '
                  'right, sets that stay the same (mean per-class AP).', '',
                  f'![mAP across tasks]({MAP_PNG})', '']
    if 'group_norms' in summary['plots']:
        lines += ['LoRA group norms: one colour scale from 0; hatched: '
                  'exactly 0.', '', f'![LoRA group norms]({GROUP_NORMS_PNG})',
                  '']
    for entry in summary['tasks']:
        files = entry['files']
        if 'per_class_ap' in files:
            lines += [f'Task {entry["task"]}:', '',
                      f'![task {entry["task"]} per-class AP]'
                      f'({files["per_class_ap"]})', '']
    lines += ['## Settings', '',
              f'- base checkpoint: `{summary["base_checkpoint"]}`' +
              (f' (sha256 `{summary["base_checkpoint_sha256"]}`)'
               if summary['base_checkpoint_sha256'] else ''),
              '- task configs: ' + ', '.join(
                  f'`{c}`' for c in summary['task_configs'])]
    if summary['cfg_options']:
        lines.append('- cfg options: ' + ' '.join(
            f'`{o}`' for o in summary['cfg_options']))
    lines += _settings_md(settings, tasks)
    lines += ['', '## Files', '']
    for entry in summary['tasks']:
        lines.append(f'- task {entry["task"]}: ' + ', '.join(
            f'[{k}]({v})' for k, v in entry['files'].items()))
    return '\n'.join(lines) + '\n'
