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
        [--metrics-out metrics.json] \
        [--plot-dir work_dirs/check]  # -> per_class_ap.png

    # mmdet's options: dump the predictions, paint the detections
    python tools/test.py CONFIG CHECKPOINT --out preds.pkl \
        --show-dir vis [--show-score-thr 0.3]

A config with a ``forget_task`` (a task config) uses its class lists unless
the command line gives others. As in mmdet, ``--out`` dumps the predictions
to a ``.pkl`` (``DumpDetResults``) and ``--show-dir`` turns on the config's
``DetVisualizationHook`` (a relative DIR lands in
``<work_dir>/<timestamp>/DIR``, as mmdet puts it); ``--metrics-out`` writes
the metrics to JSON; ``--plot-dir`` draws the per-class AP (with
``--before``'s values as the "before" bars when given) to
``<DIR>/per_class_ap.png``.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Optional

from mmengine.config import Config, DictAction


def parse_args(argv=None):
    """Parse the command line (``argv``; None: ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description='Test a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for logs')
    parser.add_argument(
        '--out', metavar='FILE.pkl', help='dump the predictions to a pickle '
        "file for offline evaluation (mmdet's DumpDetResults)")
    parser.add_argument('--metrics-out', metavar='FILE.json',
                        help='write the metrics to this JSON file')
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
    parser.add_argument('--show', action='store_true',
                        help='show the detections of each image in a window')
    parser.add_argument(
        '--show-dir', metavar='DIR', help='save the images with their '
        'detections drawn to DIR (relative: under <work_dir>/<timestamp>/)')
    parser.add_argument('--show-score-thr', type=float, default=0.3,
                        metavar='T', help='draw detections scoring >= T '
                        '(default: 0.3)')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='seconds each --show image stays (default: 2)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    # mmdet's --out is a pickle of predictions; the metrics have their flag.
    if args.out and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out {args.out}: the predictions dump must be a '
                     '.pkl/.pickle file (as in mmdet); the metrics JSON is '
                     '--metrics-out')
    if args.metrics_out and not args.metrics_out.endswith('.json'):
        parser.error(f'--metrics-out {args.metrics_out}: must be a .json '
                     'file')
    if not 0 <= args.show_score_thr <= 1:
        parser.error(f'--show-score-thr {args.show_score_thr:g}: must be in '
                     '[0, 1]')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    from gslora_det.config_checks import ConfigError
    from gslora_det.distributed import LaunchError, setup_cpu_distributed
    from gslora_det.evaluation.evaluate import (enable_visualization,
                                                prepare_forgetting_test,
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
        if args.show or args.show_dir:
            enable_visualization(cfg, args.show_dir, args.show_score_thr,
                                 args.show, args.wait_time)
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

    metrics, sets, runner = run_test(cfg, dump_to=args.out)
    if args.out:
        print(f'predictions dumped to {args.out}')
    if args.metrics_out:
        atomic_write_text(args.metrics_out, json.dumps(metrics, indent=2))
        print(f'metrics written to {args.metrics_out}')
    if args.show_dir:
        print(f'painted images written to {show_dir(runner)}')
    if args.plot_dir:
        path = plot(args.plot_dir, metrics, before, sets, cfg, args)
        print(f'per-class AP plot written to {path}')


def show_dir(runner) -> Optional[str]:
    """Where the visualization hook wrote the images (it resolves a relative
    ``--show-dir`` against the run's work dir and timestamp)."""
    from mmdet.engine.hooks import DetVisualizationHook
    return next((h.test_out_dir for h in runner.hooks
                 if isinstance(h, DetVisualizationHook)), None)


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
