"""The one forgetting default against the bar, on every task of three sequences.

Runs the built-in shapes sequence (3 tasks), BCCD (2) and chess (2) with the
same default (``configs/_base_/gslora_default.py``: no per-dataset or
per-task constant) from their pretrained bases, and prints per task: bar
met or not (and what missed it), the controller's status, steps used and
training time, against the fixed schedules the hand-calibrated configs used
(300 steps shapes, 200 BCCD).

Usage::

    python benchmarks/forgetting_bar.py [--sequences shapes bccd chess] \\
        [--work-dir work_dirs/bar] [--run-dirs shapes=work_dirs/demo] \\
        [--attack-tasks shapes:1 bccd:1] [--attack-steps 100] \\
        [--attack-k 1 5 10] [--cfg-options key=value ...]

``--attack-tasks NAME:K`` retrains the detector without every class
forgotten up to task K (its own recipe: one more pretraining), measures
that model against the same bar (the bar's reach: a row "K (retrained)")
and runs the recovery attacks (docs/attacks.md) on task K's merged model,
the retrained one and the task's input, adding the recovery-gap table.

Bases: ``work_dirs/demo/base.pth`` (``make demo``), ``work_dirs/bccd/
base.pth`` and ``work_dirs/chess/base.pth`` (pretrained here once if
missing: ~13, ~51 and ~40 min on 2 idle cores). Finished tasks are reused,
so an interrupted benchmark continues. Writes ``<work-dir>/bar.{md,json}``.
"""
import argparse
import json
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from gslora_det.benchmark.sequences import SEQUENCES  # noqa: E402


def parse_args():
    from gslora_det.cli_options import add_cfg_options
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sequences', nargs='+', default=list(SEQUENCES),
                   choices=list(SEQUENCES))
    p.add_argument('--work-dir', default='work_dirs/bar')
    add_cfg_options(p)
    p.add_argument('--run-dirs', nargs='+', default=[], metavar='NAME=DIR',
                   help='a sequence\'s run directory (default: '
                   '<work-dir>/<name>), e.g. shapes=work_dirs/demo to read '
                   '(or finish) the demo\'s run of the same configs; a run '
                   'started elsewhere (e.g. by the sparsity sweep) keeps '
                   'the --cfg-options it was started with, shown in the '
                   'table')
    p.add_argument('--attack-tasks', nargs='+', default=[],
                   metavar='NAME:K', help='retrain without the classes '
                   'forgotten up to task K of sequence NAME, measure it '
                   'against the bar and attack both (recovery gap)')
    p.add_argument('--attack-steps', type=int, default=100,
                   help='iterations of each attack')
    p.add_argument('--attack-k', type=int, nargs='+', default=[1, 5, 10],
                   help='images per forgotten class of the k-shot attacks')
    return p.parse_args()


def parse_task_refs(items):
    """``['shapes:1', 'bccd:2']`` -> ``{'shapes': [1], 'bccd': [2]}``."""
    out = {}
    for item in items:
        try:
            name, k = item.split(':')
            out.setdefault(name, []).append(int(k))
        except ValueError:
            sys.exit(f'error: --attack-tasks {item!r}: expected NAME:K, '
                     'e.g. shapes:1')
        if name not in SEQUENCES:
            sys.exit(f'error: --attack-tasks {item!r}: unknown sequence '
                     f'{name!r} (one of {", ".join(SEQUENCES)})')
    return out


def sequence_options(name: str, run_dir: str, given: list,
                     named: bool) -> list:
    """The ``--cfg-options`` of a sequence's run.

    A run directory named with ``--run-dirs`` that already holds a run
    carries the options it was started with (``sequence.json``), e.g. a
    sparsity-sweep run that spelt out the default's group lasso: reading it
    with other options would refuse it (:func:`run_sequence` never mixes
    two settings in one directory), so its own are used and reported.
    Options given here must then be the same ones.
    """
    path = osp.join(run_dir, 'sequence.json')
    if not named or not osp.isfile(path):
        return list(given)
    with open(path) as f:
        recorded = list(json.load(f).get('cfg_options') or [])
    if given and list(given) != recorded:
        sys.exit(f'error: --run-dirs {name}={run_dir} holds a run started '
                 f'with --cfg-options {recorded}, not {list(given)}: drop '
                 '--cfg-options to read it with its own, or name another '
                 'run directory')
    return recorded


def bar_fields(bar: dict) -> dict:
    """A row's verdict and measured values from :func:`check_bar`."""
    return dict(bar='met' if bar['met'] else 'MISSED: ' +
                '; '.join(bar['failed']),
                **{k: bar[k] for k in ('forget_map', 'old_map', 'retain_drop',
                                       'own', 'any', 'num_gt')})


def retrained_row(seq: str, task_report: dict, attack_dir: str):
    """The bar row of a model retrained without a task's classes."""
    from gslora_det.benchmark.bar import check_bar, retrained_report
    with open(osp.join(attack_dir, 'attack_report.json')) as f:
        pseudo = retrained_report(json.load(f))
    if pseudo is None:  # attacked without a retrained model
        return None
    return dict(sequence=seq, task=f'{task_report["task"]} (retrained)',
                forget=', '.join(task_report['forget_classes']),
                controller='-', steps=None, fixed_steps=None, train_min=None,
                kind='retrained', **bar_fields(check_bar(pseudo)))


def row(seq: str, spec: dict, report: dict) -> dict:
    from gslora_det.benchmark.bar import check_bar
    ctl = report.get('controller') or {}
    status = ctl.get('status', '-')
    if ctl.get('retain_recovered') is False:  # stopped by max_recovery
        status += ' (retained not back)'
    return dict(sequence=seq, task=report['task'],
                forget=', '.join(report['forget_classes']),
                controller=status,
                steps=ctl.get('steps', report.get('train_iters')),
                fixed_steps=spec['fixed_steps'],
                train_min=report['train_time_s'] / 60, kind='gslora',
                **bar_fields(check_bar(report)))


def pct(v) -> str:
    return '-' if v is None else f'{100 * v:.1f}'


def markdown(rows) -> str:
    head = ('| sequence | task | forgotten | forgotten mAP % | old mAP % | '
            'retained drop (points) | own@0.3 % | any@0.3 % | bar | '
            'controller | steps (fixed) | train min |')
    lines = [head, '|' + '---|' * 12]
    for r in rows:
        minutes = '-' if r['train_min'] is None else f'{r["train_min"]:.1f}'
        lines.append(
            f'| {r["sequence"]} | {r["task"]} | {r["forget"]} | '
            f'{pct(r["forget_map"])} | {pct(r["old_map"])} | '
            f'{pct(r["retain_drop"])} | {pct(r["own"])} | {pct(r["any"])} | '
            f'{r["bar"]} | {r["controller"]} | {r["steps"] or "-"} '
            f'({r["fixed_steps"] or "-"}) | '
            f'{minutes} |')
    options = {}
    for r in rows:
        if r.get('options'):
            options.setdefault(r['sequence'], r['options'])
    for seq, opts in options.items():
        lines.append(f'\n{seq} ran with --cfg-options '
                     + ' '.join(f'`{o}`' for o in opts))
    tasks = [r for r in rows if r['kind'] == 'gslora']
    done = [r for r in tasks if r['steps'] is not None]
    if done:
        steps = sum(r['steps'] for r in done) / len(done)
        minutes = sum(r['train_min'] for r in done) / len(done)
        lines.append(f'\nMean per task: {steps:.0f} steps, {minutes:.1f} '
                     f'min of training; bar met on '
                     f'{sum(r["bar"] == "met" for r in tasks)}/{len(tasks)} '
                     'tasks.')
    return '\n'.join(lines)


def main():
    args = parse_args()
    from gslora_det.benchmark.data import ensure_data
    from gslora_det.console import duration
    from gslora_det.io_utils import atomic_write_text
    from gslora_det.pretrain import pretrain_once
    from gslora_det.sequence import SequenceError, run_sequence
    from gslora_det.benchmark.attack_step import (attack_task, gap_markdown,
                                                  gap_rows)
    start, rows, gaps = time.time(), [], []
    run_dirs = dict(item.split('=', 1) for item in args.run_dirs)
    attack_tasks = parse_task_refs(args.attack_tasks)
    for i, name in enumerate(args.sequences, start=1):
        spec = SEQUENCES[name]
        print(f'[bar] sequence {i}/{len(args.sequences)}: {name} (elapsed '
              f'{duration(time.time() - start)})', flush=True)
        ensure_data(name)
        base = spec['base']
        if not osp.isfile(base):
            base = pretrain_once(spec['pretrain'], osp.dirname(base),
                                 tag=name, what=f'the {name} base model')
        run_dir = run_dirs.get(name, osp.join(args.work_dir, name))
        options = sequence_options(name, run_dir, args.cfg_options,
                                   name in run_dirs)
        if options != args.cfg_options:
            print(f'[bar] {name}: {run_dir} keeps its own --cfg-options '
                  f'{options}', flush=True)
        try:
            reports = run_sequence(
                spec['tasks'], base, run_dir,
                options, continue_on_unmet=True,
                summary_title=f'one forgetting default: {name}')
        except SequenceError as err:
            sys.exit(f'error: {err}')
        rows += [dict(row(name, spec, r), options=options) for r in reports]
        for j, k in enumerate(attack_tasks.get(name, []), start=1):
            if not 1 <= k <= len(reports):
                sys.exit(f'error: --attack-tasks {name}:{k}: the sequence '
                         f'has {len(reports)} tasks')
            print(f'[bar] attacks {j}/{len(attack_tasks[name])}: {name} '
                  f'task {k} (elapsed {duration(time.time() - start)})',
                  flush=True)
            folder = attack_task(spec['pretrain'], run_dir, base, k,
                                 reports[k - 1], args.attack_steps,
                                 args.attack_k)
            extra = retrained_row(name, reports[k - 1], folder)
            rows += [extra] if extra else []
            gaps += gap_rows(name, k, folder)
    table = markdown(rows)
    if gaps:
        table += ('\n\nRecovery attacks (docs/attacks.md; '
                  f'{args.attack_steps} steps each):\n\n' + gap_markdown(gaps))
    atomic_write_text(osp.join(args.work_dir, 'bar.md'), table + '\n')
    atomic_write_text(osp.join(args.work_dir, 'bar.json'),
                      json.dumps(dict(tasks=rows, recovery=gaps), indent=1))
    print('\n' + table)
    print(f'\n[bar] done in {duration(time.time() - start)}; '
          f'{args.work_dir}/bar.md')


if __name__ == '__main__':
    main()
