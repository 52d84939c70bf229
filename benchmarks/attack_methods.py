"""Recovery attacks on GS-LoRA and its baselines, against one retrained model.

Every method forgets the first ``--task`` tasks of a built-in sequence
from the same base with the same task configs (``model.method=<method>``;
the one forgetting default's controller), then the same recovery attacks
(docs/attacks.md: retain-only fine-tuning, k-shot and head-only
relearning; same images, seed, steps and learning rate) run on each
method's merged model, on one model retrained without the forgotten
classes (the base model's recipe) and on the base model. The retrained
and base models' attack runs are shared by every method, so each is
trained once. Prints and writes one table: per method the forgotten
classes' val mAP unattacked and after each attack, and the recovery gap
(after the attack on the method's model minus after the same attack on the
retrained one, in points).

Usage::

    python benchmarks/attack_methods.py [--sequence shapes] [--task 1] \\
        [--methods gslora lora full_ft_gslora_loss] \\
        [--work-dir work_dirs/attack_methods] \\
        [--run-dirs gslora=work_dirs/bar/shapes] [--retrained PATH] \\
        [--attack-steps 50] [--attack-k 1 5 10] [--cfg-options ...]

``--run-dirs METHOD=DIR`` reads (never reruns) a finished run of the same
sequence, e.g. the forgetting benchmark's GS-LoRA run; ``--retrained``
reuses a retrained model (``tools/retrain_without.py``). Finished work is
reused, so an interrupted benchmark continues. Writes
``<work-dir>/<sequence>_task<K>.{md,json,png}``.
"""
import argparse
import json
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from gslora_det.benchmark.sequences import SEQUENCES  # noqa: E402

#: Methods attacked by default: GS-LoRA, plain LoRA (no group lasso) and
#: full fine-tuning with GS-LoRA's loss (no adapter at all).
DEFAULT_METHODS = ('gslora', 'lora', 'full_ft_gslora_loss')


def parse_args(argv=None):
    from gslora_det.cli_options import add_cfg_options
    from gslora_det.baselines.methods import METHOD_PRESETS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sequence', default='shapes', choices=list(SEQUENCES))
    p.add_argument('--task', type=int, default=1,
                   help='attack the models after this task (1-based)')
    p.add_argument('--methods', nargs='+', default=list(DEFAULT_METHODS),
                   choices=list(METHOD_PRESETS))
    p.add_argument('--work-dir', default='work_dirs/attack_methods')
    p.add_argument('--run-dirs', nargs='+', default=[],
                   metavar='METHOD=DIR', help='a finished run of the '
                   'sequence to read instead of running the method')
    p.add_argument('--retrained', default=None, help='a model retrained '
                   'without the classes (default: retrained here once)')
    p.add_argument('--attack-steps', type=int, default=50)
    p.add_argument('--attack-k', type=int, nargs='+', default=[1, 5, 10])
    add_cfg_options(p)
    args = p.parse_args(argv)
    try:
        args.run_dirs = dict(item.split('=', 1) for item in args.run_dirs)
    except ValueError:
        p.error('--run-dirs: expected METHOD=DIR')
    return args


def method_reports(method: str, args, spec: dict, base: str):
    """The method's reports of tasks 1..K and its run folder (run or
    resumed here, or read from ``--run-dirs``)."""
    from gslora_det.sequence import SequenceError, run_sequence, task_dir
    tasks = spec['tasks'][:args.task]
    if method in args.run_dirs:
        folder = args.run_dirs[method]
        paths = [osp.join(task_dir(folder, k), 'forget_report.json')
                 for k in range(1, args.task + 1)]
        missing = [p for p in paths if not osp.isfile(p)]
        if missing:
            sys.exit(f'error: --run-dirs {method}={folder}: no finished '
                     f'task there ({missing[0]} missing); run the sequence '
                     'first or leave the method out of --run-dirs')
        reports = []
        for p in paths:
            with open(p) as f:
                reports.append(json.load(f))
        return reports, folder
    folder = osp.join(args.work_dir, args.sequence, method)
    try:
        reports = run_sequence(
            tasks, base, folder,
            cfg_options=[f'model.method={method}'] + args.cfg_options,
            summary_title=f'attack benchmark: {method}',
            continue_on_unmet=True)
    except SequenceError as err:
        sys.exit(f'error: {method}: {err}')
    return reports, folder


def _bar_fields(task_report) -> dict:
    """The forgetting's own price: retained mAP drop and the bar verdict."""
    from gslora_det.benchmark.bar import check_bar
    if task_report is None:
        return dict(retain_drop=None, bar='-')
    bar = check_bar(task_report)
    return dict(retain_drop=bar['retain_drop'],
                bar='met' if bar['met'] else 'missed: ' +
                '; '.join(bar['failed']))


def method_row(method: str, report: dict, task_report: dict = None) -> dict:
    """One table row: the method's forgetting against the bar (its task
    report), forgotten mAP per attack on its model and the gap to the
    retrained model (its attack report)."""
    head = report['headline']
    return dict(method=method, merged=head['merged'],
                gap=head.get('gap') or {}, **_bar_fields(task_report))


def reference_row(role: str, report: dict) -> dict:
    """The retrained or base model's row (no gap; the retrained model's
    bar against the base model's retained mAP)."""
    from gslora_det.attacks.report import forgotten_map
    from gslora_det.benchmark.bar import retrained_report
    pseudo = retrained_report(report) if role == 'retrained' else None
    return dict(method=role, merged=forgotten_map(report['runs'], role),
                gap={}, **_bar_fields(pseudo))


def markdown(rows, keys) -> str:
    """Per model: retained drop and bar of the forgetting itself, then the
    forgotten mAP % after each attack, with the gap in points."""
    from gslora_det.attacks.report import percent_text as pct
    lines = ['| model | retained drop (points) | bar | ' + ' | '.join(keys)
             + ' |', '|---|---|---|' + '---|' * len(keys)]
    for r in rows:
        cells = [pct(r.get('retain_drop'), signed=True)
                 if r.get('retain_drop') is not None else '-',
                 r.get('bar', '-')]
        for key in keys:
            text = pct(r['merged'].get(key))
            gap = r['gap'].get(key)
            if gap is not None:
                text += f' ({pct(gap, signed=True)})'
            cells.append(text)
        lines.append(f'| {r["method"]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot(rows, keys, path: str, title: str) -> None:
    """Grouped bars: forgotten mAP after each attack, one bar per model."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from gslora_det.io_utils import atomic_path
    x = np.arange(len(keys))
    width = 0.8 / max(len(rows), 1)
    fig = Figure(figsize=(1.2 * len(keys) + 3, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, r in enumerate(rows):
        values = [100 * max(r['merged'].get(k) or 0.0, 0.0) for k in keys]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width,
               label=r['method'],
               hatch='//' if r['method'] in ('retrained', 'base') else None)
    ax.set_xticks(x, [k.replace(' ', '\n') for k in keys], fontsize=8)
    ax.set_ylabel('forgotten classes\' val mAP (%)')
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=110)


def main(argv=None):
    args = parse_args(argv)
    from gslora_det.attacks import retrain_without, run_attacks
    from gslora_det.benchmark.attack_step import ATTACK_DIR, task_input
    from gslora_det.benchmark.data import ensure_data
    from gslora_det.config_checks import ConfigError
    from gslora_det.console import LoopProgress, duration
    from gslora_det.io_utils import atomic_write_text
    from gslora_det.pretrain import pretrain_once
    from gslora_det.sequence import MERGED, task_dir
    spec, start = SEQUENCES[args.sequence], time.time()
    if not 1 <= args.task <= len(spec['tasks']):
        sys.exit(f'error: --task {args.task}: the {args.sequence} sequence '
                 f'has {len(spec["tasks"])} tasks')
    ensure_data(args.sequence)
    base = spec['base']
    if not osp.isfile(base):
        base = pretrain_once(spec['pretrain'], osp.dirname(base),
                             tag=args.sequence,
                             what=f'the {args.sequence} base model')
    out = osp.join(args.work_dir, f'{args.sequence}_task{args.task}')
    progress = LoopProgress(len(args.methods), 'method', '[attack-methods]')
    reports, task_reports, retrained = {}, {}, args.retrained
    for i, method in enumerate(args.methods, start=1):
        progress.start(i, method)
        done, folder = method_reports(method, args, spec, base)
        last = task_reports[method] = done[-1]
        classes = list(last['forget_classes'])
        previous = list(last.get('previously_forgotten') or [])
        try:
            if retrained is None:  # once, shared by every method
                retrained = retrain_without(
                    spec['pretrain'], previous + classes,
                    f'{out}_retrained')
            reports[method] = run_attacks(
                spec['pretrain'],
                osp.join(task_dir(folder, args.task), MERGED), classes,
                osp.join(task_dir(folder, args.task), ATTACK_DIR),
                previously_forgotten=previous, ks=args.attack_k,
                steps=args.attack_steps, retrained=retrained,
                base=task_input(folder, base, args.task),
                runs_dirs={role: osp.join(f'{out}_shared_runs', role)
                           for role in ('retrained', 'base')})
        except ConfigError as err:
            sys.exit(f'error: {method}: {err}')
        progress.end(i)
    first = reports[args.methods[0]]
    rows = [method_row(m, r, task_reports[m]) for m, r in reports.items()]
    rows += [reference_row(role, first) for role in ('retrained', 'base')]
    keys = list(first['headline']['merged'])
    title = (f'{args.sequence} task {args.task}: forgotten '
             f'{", ".join(first["forget_classes"])}; '
             f'{args.attack_steps} attack steps')
    table = (f'{title}. Forgotten classes\' val mAP % after each attack '
             '(recovery gap vs the retrained model, points):\n\n'
             + markdown(rows, keys))
    atomic_write_text(out + '.md', table + '\n')
    atomic_write_text(out + '.json', json.dumps(dict(
        sequence=args.sequence, task=args.task, rows=rows,
        settings=first['settings'], retrained=retrained), indent=1))
    plot(rows, keys, out + '.png', title)
    print('\n' + table)
    print(f'\n[attack-methods] done in {duration(time.time() - start)}; '
          f'{out}.md')


if __name__ == '__main__':
    main()
