"""Real photos: GS-LoRA forgetting on BCCD blood-cell images, end to end.

Usage::

    python benchmarks/bccd.py [--src ../shared/data/bccd]
        [--work-dir work_dirs/bccd]
        [--pretrain-cfg-options key=value ...]
        [--task-cfg-options key=value ...]

1. converts BCCD (VOC XML) to COCO JSON under ``data/bccd`` (once);
2. pretrains the tiny Deformable DETR with an ImageNet EfficientNet-Lite0
   backbone (``configs/bccd/deformable-detr_effnet-lite0-tiny_bccd.py``)
   once: a finished pretraining (``<work-dir>/base.pth``) is reused, an
   interrupted one resumes;
3. runs the 2-task forgetting sequence (task 1: Platelets, task 2: WBC)
   with GS-LoRA, as ``tools/forget_sequence.py`` does, resuming where a
   previous run stopped;
4. prints one table row per task; ``<work-dir>/summary.md`` /
   ``summary.json`` hold the table, plots and settings, and each
   ``task_<k>/`` the report, merged checkpoint, adapter and manifest.

Budget on a 2-core CPU: pretraining <= 60 min, then ~10 min per task.
"""
import argparse
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN_CONFIG = osp.join(REPO, 'configs', 'bccd',
                           'deformable-detr_effnet-lite0-tiny_bccd.py')
TASK_CONFIGS = [
    osp.join(REPO, 'configs', 'bccd',
             f'gslora_deformable-detr_effnet-lite0-tiny_task{k}_bccd.py')
    for k in (1, 2)
]


def main():
    from gslora_det.cli_options import add_cfg_options
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--src', default='../shared/data/bccd',
                        help='BCCD folder (holding BCCD/Annotations)')
    parser.add_argument('--data', default='data/bccd',
                        help='converted COCO output (the configs read '
                        'data/bccd)')
    parser.add_argument('--work-dir', default='work_dirs/bccd')
    add_cfg_options(parser, '--pretrain-cfg-options',
                    'key=value overrides for the pretraining')
    add_cfg_options(parser, '--task-cfg-options',
                    'key=value overrides for every forgetting task')
    args = parser.parse_args()
    from gslora_det.console import duration
    from gslora_det.data.bccd import bccd_converted, convert_bccd
    from gslora_det.sequence import (SequenceError, format_table,
                                     run_sequence)

    start = time.time()

    def step(k: int, what: str) -> None:  # the tasks print their own ETA
        print(f'[bccd] step {k}/3: {what} (elapsed '
              f'{duration(time.time() - start)})', flush=True)

    step(1, 'BCCD as COCO JSON')
    if not bccd_converted(args.data):
        print(f'[bccd] converting {args.src} to COCO in {args.data}',
              flush=True)
        try:
            stats = convert_bccd(args.src, args.data)
        except (FileNotFoundError, ValueError) as err:
            sys.exit(f'error: {err}')
        for split, s in stats.items():
            print(f'[bccd] {split}: {s["images"]} images, '
                  f'{s["annotations"]} boxes, fixes {s["fixes"]}',
                  flush=True)
    from gslora_det.pretrain import pretrain_once
    step(2, 'pretraining')
    base = pretrain_once(PRETRAIN_CONFIG, args.work_dir,
                         args.pretrain_cfg_options, tag='bccd',
                         what='the tiny Deformable DETR on BCCD (<= 60 min '
                         'on 2 cores)')
    step(3, f'forgetting sequence of {len(TASK_CONFIGS)} tasks')
    try:
        reports = run_sequence(TASK_CONFIGS, base, args.work_dir,
                               args.task_cfg_options,
                               summary_title='gslora_det on BCCD')
    except SequenceError as err:
        sys.exit(f'error: {err}')
    print('\n' + format_table(reports))
    print(f'\n[bccd] done in {(time.time() - start) / 60:.1f} min; '
          f'summary in {args.work_dir}/summary.md, reports in '
          f'{args.work_dir}/task_*/forget_report.json')


if __name__ == '__main__':
    main()
