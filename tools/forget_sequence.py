"""Run a whole forgetting sequence; run it again to pick up where it stopped.

Usage::

    python tools/forget_sequence.py \
        configs/shapes/gslora_deformable-detr_r18-tiny_task{1,2,3}_shapes.py \
        --base-checkpoint work_dirs/demo/pretrain/epoch_5.pth \
        --work-dir work_dirs/my_run [--cfg-options key=value ...]

Task k writes ``<work-dir>/task_<k>/{merged.pth, adapter.safetensors,
manifest.json, per_class_ap.png, forget_report.json}``; ``merged.pth`` is a
plain mmdet checkpoint of the base architecture. After the last task (on
every run) the run summary is written: ``<work-dir>/{summary.md,
summary.json, group_norms.png, map_across_tasks.png}``. The base checkpoint
is never written to.
"""
import argparse
import sys

from gslora_det.sequence import SequenceError, format_table, run_sequence


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('task_configs', nargs='+', help='task configs')
    parser.add_argument('--base-checkpoint', required=True)
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides for every task')
    parser.add_argument('--overwrite', action='store_true',
                        help='start anew in a run dir of another sequence')
    args = parser.parse_args()
    try:
        reports = run_sequence(args.task_configs, args.base_checkpoint,
                               args.work_dir, args.cfg_options,
                               args.overwrite)
    except SequenceError as err:
        sys.exit(f'error: {err}')
    print(format_table(reports))


if __name__ == '__main__':
    main()
