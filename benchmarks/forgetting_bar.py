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
        [--cfg-options key=value ...]

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

SEQUENCES = {
    'shapes': dict(
        pretrain='configs/shapes/deformable-detr_r18-tiny_5e_shapes.py',
        base='work_dirs/demo/base.pth', fixed_steps=300,
        tasks=[osp.join(REPO, 'configs', 'shapes',
                        f'gslora_deformable-detr_r18-tiny_task{k}_shapes.py')
               for k in (1, 2, 3)]),
    'bccd': dict(
        pretrain='configs/bccd/deformable-detr_effnet-lite0-tiny_bccd.py',
        base='work_dirs/bccd/base.pth', fixed_steps=200,
        tasks=[osp.join(REPO, 'configs', 'bccd', 'gslora_deformable-detr_'
                        f'effnet-lite0-tiny_task{k}_bccd.py')
               for k in (1, 2)]),
    'chess': dict(
        pretrain='configs/chess/deformable-detr_effnet-lite0-tiny_chess.py',
        base='work_dirs/chess/base.pth', fixed_steps=None,
        tasks=[osp.join(REPO, 'configs', 'chess', 'gslora_deformable-detr_'
                        f'effnet-lite0-tiny_task{k}_chess.py')
               for k in (1, 2)]),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sequences', nargs='+', default=list(SEQUENCES),
                   choices=list(SEQUENCES))
    p.add_argument('--work-dir', default='work_dirs/bar')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='key=value overrides for every task')
    p.add_argument('--run-dirs', nargs='+', default=[], metavar='NAME=DIR',
                   help='a sequence\'s run directory (default: '
                   '<work-dir>/<name>), e.g. shapes=work_dirs/demo to read '
                   '(or finish) the demo\'s run of the same configs')
    return p.parse_args()


def ensure_data(name: str) -> None:
    """Convert the real photo sets once (data/bccd, data/chess)."""
    if name == 'bccd':
        from gslora_det.data.bccd import bccd_converted, convert_bccd
        if not bccd_converted('data/bccd'):
            convert_bccd('../shared/data/bccd', 'data/bccd')
    elif name == 'chess':
        from gslora_det.data.chess import convert_chess
        convert_chess('../shared/data/chess', 'data/chess')
    else:
        from gslora_det.data.shapes import (generate_shapes_dataset,
                                            shapes_dataset_ready)
        if not shapes_dataset_ready('data/shapes'):
            generate_shapes_dataset('data/shapes')


def row(seq: str, spec: dict, report: dict) -> dict:
    from gslora_det.benchmark.bar import check_bar
    bar = check_bar(report)
    ctl = report.get('controller') or {}
    return dict(sequence=seq, task=report['task'],
                forget=', '.join(report['forget_classes']),
                bar='met' if bar['met'] else 'MISSED: ' +
                '; '.join(bar['failed']),
                controller=ctl.get('status', '-'),
                steps=ctl.get('steps', report.get('train_iters')),
                fixed_steps=spec['fixed_steps'],
                train_min=report['train_time_s'] / 60,
                **{k: bar[k] for k in ('forget_map', 'old_map', 'retain_drop',
                                       'own', 'any', 'num_gt')})


def pct(v) -> str:
    return '-' if v is None else f'{100 * v:.1f}'


def markdown(rows) -> str:
    head = ('| sequence | task | forgotten | forgotten mAP % | old mAP % | '
            'retained drop (points) | own@0.3 % | any@0.3 % | bar | '
            'controller | steps (fixed) | train min |')
    lines = [head, '|' + '---|' * 12]
    for r in rows:
        lines.append(
            f'| {r["sequence"]} | {r["task"]} | {r["forget"]} | '
            f'{pct(r["forget_map"])} | {pct(r["old_map"])} | '
            f'{pct(r["retain_drop"])} | {pct(r["own"])} | {pct(r["any"])} | '
            f'{r["bar"]} | {r["controller"]} | {r["steps"]} '
            f'({r["fixed_steps"] or "-"}) | {r["train_min"]:.1f} |')
    done = [r for r in rows if r['steps'] is not None]
    if done:
        steps = sum(r['steps'] for r in done) / len(done)
        minutes = sum(r['train_min'] for r in done) / len(done)
        lines.append(f'\nMean per task: {steps:.0f} steps, {minutes:.1f} '
                     f'min of training; bar met on '
                     f'{sum(r["bar"] == "met" for r in rows)}/{len(rows)} '
                     'tasks.')
    return '\n'.join(lines)


def main():
    args = parse_args()
    from gslora_det.console import duration
    from gslora_det.io_utils import atomic_write_text
    from gslora_det.pretrain import pretrain_once
    from gslora_det.sequence import SequenceError, run_sequence
    start, rows = time.time(), []
    run_dirs = dict(item.split('=', 1) for item in args.run_dirs)
    for i, name in enumerate(args.sequences, start=1):
        spec = SEQUENCES[name]
        print(f'[bar] sequence {i}/{len(args.sequences)}: {name} (elapsed '
              f'{duration(time.time() - start)})', flush=True)
        ensure_data(name)
        base = spec['base']
        if not osp.isfile(base):
            base = pretrain_once(spec['pretrain'], osp.dirname(base),
                                 tag=name, what=f'the {name} base model')
        try:
            reports = run_sequence(
                spec['tasks'], base,
                run_dirs.get(name, osp.join(args.work_dir, name)),
                args.cfg_options, continue_on_unmet=True,
                summary_title=f'one forgetting default: {name}')
        except SequenceError as err:
            sys.exit(f'error: {err}')
        rows += [row(name, spec, r) for r in reports]
    table = markdown(rows)
    atomic_write_text(osp.join(args.work_dir, 'bar.md'), table + '\n')
    atomic_write_text(osp.join(args.work_dir, 'bar.json'),
                      json.dumps(rows, indent=1))
    print('\n' + table)
    print(f'\n[bar] done in {duration(time.time() - start)}; '
          f'{args.work_dir}/bar.md')


if __name__ == '__main__':
    main()
