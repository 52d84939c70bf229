"""The built-in demo, end to end on the CPU: data, pretraining, forgetting.

Usage::

    python tools/demo.py [--work-dir work_dirs/demo]     # or: make demo

1. generates the built-in shapes set under ``data/shapes`` (once);
2. pretrains the tiny Deformable DETR on it (once; an interrupted
   pretraining resumes) and publishes its weights as ``base.pth``;
3. runs the built-in forgetting sequence (3 tasks, 2 classes each) with
   GS-LoRA, resuming where a previous run stopped;
4. prints one table row per task; the run summary (``summary.md`` /
   ``summary.json`` with the table, plots and settings) is written by the
   sequence runner.

Measured on a 2-core CPU: 13 min pretraining + ~4.5 min per task, 27 min
in all.
"""
import argparse
import sys
import time


def pretrain(work_dir: str) -> str:
    """Pretrain once; return the published base checkpoint."""
    from gslora_det.pretrain import SHAPES_PRETRAIN_CONFIG, pretrain_once
    return pretrain_once(SHAPES_PRETRAIN_CONFIG, work_dir,
                         what='the tiny Deformable DETR (~13 min on 2 cores)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data', default='data/shapes')
    args = parser.parse_args()
    from gslora_det.data.shapes import (generate_shapes_dataset,
                                        shapes_dataset_ready)
    from gslora_det.pretrain import SHAPES_TASK_CONFIGS
    from gslora_det.sequence import (SequenceError, format_table,
                                     run_sequence)

    start = time.time()
    if not shapes_dataset_ready(args.data):
        print(f'[demo] generating the built-in shapes set in {args.data}',
              flush=True)
        generate_shapes_dataset(args.data)
    base = pretrain(args.work_dir)
    try:
        reports = run_sequence(SHAPES_TASK_CONFIGS, base, args.work_dir,
                               summary_title='gslora_det demo')
    except SequenceError as err:
        sys.exit(f'error: {err}')
    print('\n' + format_table(reports))
    print(f'\n[demo] done in {(time.time() - start) / 60:.1f} min; '
          f'summary in {args.work_dir}/summary.md, reports in '
          f'{args.work_dir}/task_*/forget_report.json')


if __name__ == '__main__':
    main()
