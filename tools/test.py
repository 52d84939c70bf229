"""Evaluate a detector checkpoint; answer the forgetting questions.

Usage::

    # plain COCO mAP, as MMDetection's tools/test.py
    python tools/test.py CONFIG CHECKPOINT

    # forgotten / retained / previously forgotten mAP, per-class AP,
    # residual detection, for ANY checkpoint (gslora_det's or not)
    python tools/test.py CONFIG CHECKPOINT \
        --forget-classes blue_triangle orange_star \
        [--previously-forgotten green_square] \
        [--before work_dirs/demo/task_1/before_metrics.json]  # -> H-Mean

A config with a ``forget_task`` (a task config) uses its class lists unless
the command line gives others. Results can be written to JSON (``--out``).
"""
import argparse
import json
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner


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
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def forgetting_evaluator(evaluator: dict, args, task: dict) -> dict:
    """Turn the config's test evaluator into a ``ForgettingMetric``."""
    evaluator = dict(evaluator)
    if evaluator.get('type') != 'ForgettingMetric':
        keep = ('ann_file', 'backend_args', 'outfile_prefix')
        evaluator = {k: v for k, v in evaluator.items() if k in keep}
        evaluator['type'] = 'ForgettingMetric'
    evaluator['forget_classes'] = list(args.forget_classes or
                                       task.get('forget_classes', []))
    evaluator['previously_forgotten'] = list(
        args.previously_forgotten if args.previously_forgotten is not None
        else task.get('previously_forgotten', []))
    if args.before:
        with open(args.before) as f:
            evaluator['before'] = json.load(f)
    return evaluator


def main():
    args = parse_args()
    from gslora_det.config_checks import ConfigError, prepare_config
    from gslora_det.io_utils import atomic_write_text
    from gslora_det.task import check_task_classes, dataset_classes

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

    try:
        prepare_config(cfg, mode='test')
        task = dict(cfg.get('forget_task') or {})
        if args.forget_classes or task:
            ev = forgetting_evaluator(cfg.test_evaluator, args, task)
            check_task_classes(dataset_classes(cfg), ev['forget_classes'],
                               ev['previously_forgotten'])
            cfg.test_evaluator = ev
    except ConfigError as err:
        sys.exit(f'error: {err}')

    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if args.out:
        atomic_write_text(args.out, json.dumps(metrics, indent=2))
        print(f'metrics written to {args.out}')


if __name__ == '__main__':
    main()
