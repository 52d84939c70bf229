"""Evaluate a detector checkpoint; answer the forgetting questions.

Usage::

    # plain COCO mAP, as MMDetection's tools/test.py
    python tools/test.py CONFIG CHECKPOINT

    # forgotten / retained / previously forgotten mAP, per-class AP,
    # residual detection, for ANY checkpoint (gslora_det's or not)
    python tools/test.py CONFIG CHECKPOINT \
        --forget-classes blue_triangle orange_star \
        [--previously-forgotten green_square] \
        [--before work_dirs/demo/task_1/before_metrics.json] \
        [--plot-dir work_dirs/check]  # -> per_class_ap.png

A config with a ``forget_task`` (a task config) uses its class lists unless
the command line gives others. Results can be written to JSON (``--out``);
``--plot-dir`` draws the per-class AP (with ``--before``'s values as the
"before" bars when given) to ``<DIR>/per_class_ap.png``.
"""
import argparse
import json
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction


def parse_args():
    parser = argparse.ArgumentParser(description='Test a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for logs')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument('--forget-classes', nargs='+', metavar='NAME',
                        help='classes whose forgetting is measured')
    parser.add_argument('--previously-forgotten', nargs='*', default=None,
                        metavar='NAME', help='classes forgotten earlier')
    parser.add_argument(
        '--before', help='JSON of the metrics before forgetting (e.g. a '
        "task's before_metrics.json); adds H-Mean")
    parser.add_argument(
        '--plot-dir', metavar='DIR', help='draw the per-class AP (before vs '
        'after with --before) to DIR/per_class_ap.png')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    from gslora_det.config_checks import ConfigError
    from gslora_det.distributed import LaunchError, setup_cpu_distributed
    from gslora_det.evaluation.evaluate import (prepare_forgetting_test,
                                                run_test)
    from gslora_det.io_utils import atomic_write_text

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs',
        osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if not osp.isfile(args.checkpoint):
        sys.exit(f'error: checkpoint not found: {args.checkpoint}')

    before = None
    if args.before:
        with open(args.before) as f:
            before = json.load(f)
    try:
        forgetting = prepare_forgetting_test(
            cfg, args.forget_classes, args.previously_forgotten, before)
        # Without CUDA: gloo for a multi-process test (as tools/train.py).
        setup_cpu_distributed(cfg, args.launcher)
    except (ConfigError, LaunchError) as err:
        sys.exit(f'error: {err}')
    if args.plot_dir and not forgetting:
        sys.exit('error: --plot-dir needs the class lists: pass '
                 '--forget-classes or a task config')
    # Name the checkpoint and log progress with an ETA (LoggerHook's
    # interval can leave a small test set silent).
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'EvalProgressHook' for h in hooks):
        hooks.append(dict(type='EvalProgressHook'))
    cfg.custom_hooks = hooks

    metrics, sets = run_test(cfg)
    if args.out:
        atomic_write_text(args.out, json.dumps(metrics, indent=2))
        print(f'metrics written to {args.out}')
    if args.plot_dir:
        path = plot(args.plot_dir, metrics, before, sets, cfg, args)
        print(f'per-class AP plot written to {path}')


def plot(plot_dir: str, metrics: dict, before, sets: dict, cfg,
         args) -> str:
    """Draw the per-class AP of this test pass (rank 0 only)."""
    from mmengine.dist import is_main_process
    from gslora_det.report.plots import per_class_ap, plot_per_class_ap
    path = osp.join(plot_dir, 'per_class_ap.png')
    if not is_main_process():
        return path
    report = dict(
        task=(cfg.get('forget_task') or {}).get('index'),
        forget_classes=sets.get('forget', []),
        previously_forgotten=sets.get('old', []),
        retained_classes=sets.get('retain', []),
        per_class_AP_after=per_class_ap(metrics),
        per_class_AP_before=per_class_ap(before or {}))
    forgotten = ', '.join(report['forget_classes'])
    title = (f'{osp.basename(args.checkpoint)}: per-class AP' +
             (' before vs after' if before else '') +
             f' (forgotten: {forgotten})')
    return plot_per_class_ap(report, path, title=title)


if __name__ == '__main__':
    main()
