"""Group sparsity against H-Mean: sweep the group-lasso weight α and mode.

For each model (``shapes``: 3 + 3 layers, 6 LoRA groups; ``shapes6``:
6 + 6, 12 groups, as the R50 COCO model; ``bccd``) and each setting (α,
``group_lasso_cfg.mode`` penalty / proximal, ``warmup_iters``), the
model's full task sequence runs from its pretrained base with the one
forgetting default (``configs/_base_/gslora_default.py``: the controller's
schedule, not a shortened one). α = 0 (plain LoRA) runs once per model: it
is the H-Mean reference. Per setting and task it prints the groups exactly
zero, the layers that stayed on, forgotten / retained / old mAP, residual
detection, H-Mean, steps and the bar; per setting whether the target holds
(at least half the groups exactly zero on every task, H-Mean at most 1
point below α = 0, bar met on every task). Logic:
:mod:`gslora_det.benchmark.sparsity` and ``sparsity_run``.

Usage::

    python benchmarks/sparsity_sweep.py [--models shapes shapes6 bccd] \\
        [--alphas 0 3e-4 3e-3 3e-2] [--modes penalty proximal] \\
        [--warmup-iters 0] [--sparsify-iters 0] [--work-dir work_dirs/sparsity_sweep] \\
        [--bases shapes6=work_dirs/shapes6/base.pth] [--plan]

Bases: ``work_dirs/demo/base.pth``, ``work_dirs/shapes6/base.pth``,
``work_dirs/bccd/base.pth``, pretrained here once if missing. Finished
tasks are reused. Writes ``<work-dir>/<--name>.{md,json,png}`` (default
``sparsity_sweep``; refreshed after every setting).
"""
import argparse
import dataclasses
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
DEFAULT_ALPHAS = [0.0, 3e-4, 3e-3, 3e-2]


def parse_args(argv=None):
    from gslora_det.cli_options import add_cfg_options
    from gslora_det.benchmark.sparsity_run import MODELS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=list(MODELS))
    p.add_argument('--alphas', type=float, nargs='+', default=DEFAULT_ALPHAS,
                   help='group_lasso_cfg.alpha values (0: plain LoRA, the '
                   'H-Mean reference)')
    p.add_argument('--modes', nargs='+', default=['penalty', 'proximal'],
                   choices=['penalty', 'proximal'])
    p.add_argument('--warmup-iters', type=int, nargs='+', default=[0],
                   help='group_lasso_cfg.warmup_iters values')
    p.add_argument('--sparsify-iters', type=int, nargs='+', default=[0],
                   help='group_lasso_cfg.sparsify_iters values (no early '
                   'stop before warm-up + these steps)')
    p.add_argument('--work-dir', default='work_dirs/sparsity_sweep')
    p.add_argument('--name', default='sparsity_sweep',
                   help='file stem of the outputs in --work-dir (default: '
                   'sparsity_sweep), so that sweeps with other options can '
                   'share one folder of runs')
    p.add_argument('--bases', nargs='+', default=[], metavar='MODEL=PATH',
                   help='a model\'s base checkpoint instead of its default')
    add_cfg_options(p)
    p.add_argument('--plan', action='store_true',
                   help='print the settings and task runs, run nothing')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from gslora_det.benchmark.sparsity import settings_grid
    from gslora_det.benchmark.sparsity_run import (MODELS, run_sweep,
                                                   setting_dir)
    from gslora_det.sequence import task_dir, task_done
    bases = dict(item.split('=', 1) for item in args.bases)
    unknown = set(bases) - set(args.models)
    if unknown:
        sys.exit(f'error: --bases names {sorted(unknown)}, not in --models')
    models = {m: dataclasses.replace(MODELS[m], base=bases.get(
        m, MODELS[m].base)) for m in args.models}
    settings = settings_grid(args.alphas, args.modes, args.warmup_iters,
                              args.sparsify_iters)
    if 0.0 not in args.alphas:
        print('[sparsity] no α = 0 in --alphas: the H-Mean condition of the '
              'target cannot be checked', flush=True)
    if args.plan:
        runs = done = 0
        for name, spec in models.items():
            for s in settings:
                folder = setting_dir(args.work_dir, name, s)
                finished = sum(task_done(task_dir(folder, k))
                               for k in range(1, len(spec.tasks) + 1))
                runs += len(spec.tasks)
                done += finished
                print(f'{name:8s} {s.label:32s} {finished}/{len(spec.tasks)}'
                      f' tasks done  {folder}')
        print(f'{len(models) * len(settings)} settings, {runs} task runs, '
              f'{done} done, {runs - done} to run')
        return
    info = dict(models=args.models, alphas=args.alphas, modes=args.modes,
                warmup_iters=args.warmup_iters,
                sparsify_iters=args.sparsify_iters,
                cfg_options=args.cfg_options,
                command=' '.join(['python', 'benchmarks/sparsity_sweep.py']
                                 + sys.argv[1:]))
    # run_sweep writes the outputs after every setting (the last: all).
    run_sweep(models, settings, args.work_dir, args.cfg_options, info,
              out_name=args.name)
    prefix = osp.join(args.work_dir, args.name)
    with open(prefix + '.md') as f:
        print('\n' + f.read())
    print(f'[sparsity] wrote {prefix}.md/.json/.png')


if __name__ == '__main__':
    main()
