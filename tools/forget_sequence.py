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
is never written to; ``<work-dir>/sequence.json`` records its SHA-256, and a
rerun whose base has other bytes than the one the started tasks ran from is
refused (use another --work-dir, or --overwrite to start anew).

The terminal shows ``[sequence] task k/N`` at each task's start and end,
with the elapsed time and an ETA from the tasks finished in this run, and
the tasks' training progress; each task's config and environment dumps go
to its log file only (``task_<k>/<timestamp>/<timestamp>.log``).

Several processes per task (docs/distributed.md)::

    # N processes on this node (GPUs, or CPU processes with gloo)
    python tools/forget_sequence.py TASKS... --base-checkpoint B \
        --work-dir W --launcher pytorch --nproc-per-node N
    # several nodes: the same command on each, with --nnodes,
    # --node-rank, --master-addr, --master-port
    # Slurm: once, inside an sbatch script; each task is an srun step
    python tools/forget_sequence.py TASKS... --base-checkpoint B \
        --work-dir W --launcher slurm [--srun-args "--ntasks=16 ..."]
"""
import argparse
import os.path as osp
import sys

from gslora_det.cli_options import add_cfg_options
from gslora_det.sequence import (Launch, SequenceError, format_table,
                                 run_sequence)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('task_configs', nargs='+', help='task configs')
    parser.add_argument('--base-checkpoint', required=True)
    parser.add_argument('--work-dir', required=True)
    add_cfg_options(parser)
    parser.add_argument('--overwrite', action='store_true',
                        help='start anew in a run dir of another sequence or '
                        'base checkpoint')
    parser.add_argument('--attack-config', default=None,
                        help='after the sequence, run the recovery attacks '
                        '(tools/attack.py, docs/attacks.md) on every task\'s '
                        'merged.pth with this detector config (the '
                        'detector\'s own config, not a task config); each '
                        'writes <work-dir>/task_<k>/attacks/')
    parser.add_argument('--attack-steps', type=int, default=100)
    parser.add_argument('--attack-k', type=int, nargs='+', default=[1, 5, 10])
    parser.add_argument('--continue-on-unmet', action='store_true',
                        help='go on to the next task when a task reached '
                        'its step limit without meeting the forgetting '
                        'target (default: stop there and say so)')
    dist = parser.add_argument_group(
        'distributed', 'how each task is started (as tools/dist_train.sh '
        'and tools/slurm_train.sh do)')
    dist.add_argument('--launcher', default='none',
                      choices=['none', 'pytorch', 'slurm'])
    dist.add_argument('--nproc-per-node', type=int, default=1,
                      help='processes per node (pytorch)')
    dist.add_argument('--nnodes', type=int, default=1)
    dist.add_argument('--node-rank', type=int, default=0)
    dist.add_argument('--master-addr', default='127.0.0.1')
    dist.add_argument('--master-port', type=int, default=29500)
    dist.add_argument('--srun-args', default='',
                      help='extra srun arguments (slurm), one string')
    args = parser.parse_args()
    launch = Launch(args.launcher, args.nproc_per_node, args.nnodes,
                    args.node_rank, args.master_addr, args.master_port,
                    args.srun_args)
    try:
        reports = run_sequence(args.task_configs, args.base_checkpoint,
                               args.work_dir, args.cfg_options,
                               args.overwrite, launch=launch,
                               continue_on_unmet=args.continue_on_unmet)
    except SequenceError as err:
        sys.exit(f'error: {err}')
    print(format_table(reports))
    if args.attack_config:
        from gslora_det.attacks import run_attacks
        from gslora_det.config_checks import ConfigError
        from gslora_det.sequence import MERGED, task_dir
        previous = args.base_checkpoint
        for k, rep in enumerate(reports, start=1):
            folder = task_dir(args.work_dir, k)
            print(f'[sequence] recovery attacks on task {k}/{len(reports)}',
                  flush=True)
            try:
                run_attacks(args.attack_config, osp.join(folder, MERGED),
                            rep['forget_classes'], osp.join(folder, 'attacks'),
                            previously_forgotten=rep.get(
                                'previously_forgotten') or [],
                            ks=args.attack_k, steps=args.attack_steps,
                            base=previous)
            except ConfigError as err:
                sys.exit(f'error: {err}')
            previous = osp.join(folder, MERGED)


if __name__ == '__main__':
    main()
