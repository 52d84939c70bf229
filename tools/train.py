"""Train a detector, or run one GS-LoRA forgetting task, with mmengine.

Usage::

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
        [--resume [CKPT]] [--cfg-options key=value ...]
        [--launcher pytorch|slurm|mpi] [--quiet-config]

Same flags as MMDetection's ``tools/train.py``, plus ``--quiet-config``
(set by ``tools/forget_sequence.py`` for its tasks): the config,
environment and hook-order dumps go to the log file only, not to the
terminal. Before the Runner is built, the config is checked (data files,
class names, forget-task class lists, checkpoint class count) so that bad
input fails with a clear message instead of a traceback from inside mmdet.
Several processes: tools/dist_train.sh or tools/slurm_train.sh
(docs/distributed.md); without CUDA they use the gloo backend.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate by (total batch size) / '
        '`auto_scale_lr.base_batch_size` of the config')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from a checkpoint; without a path, from the latest '
        'checkpoint in the work directory')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (see mmdet docs)')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument(
        '--quiet-config', action='store_true',
        help='log the config, environment and hook order to the log file '
        'only, not to the terminal (set for the tasks of a sequence)')
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def setup_config(args) -> Config:
    """The config with the command line applied, as mmdet's train.py.

    Args:
        args (argparse.Namespace): From :func:`parse_args`.

    Returns:
        Config: The config to build the runner from.

    Raises:
        SystemExit: ``--auto-scale-lr`` without ``auto_scale_lr.
            base_batch_size`` in the config.
    """
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        # mmdet also wants an `enable` key; base_batch_size is what the
        # scaling needs (mmengine's Runner.scale_lr), so it is enough here.
        if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
            sys.exit(f'error: --auto-scale-lr needs `auto_scale_lr = dict('
                     f'base_batch_size=N)` in {args.config} (N: the total '
                     'batch size its learning rate was set for); it has '
                     f'auto_scale_lr={cfg.get("auto_scale_lr")}')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def build_runner(cfg: Config, quiet_config: bool = False):
    """mmdet's runner choice; ``quiet_config`` wraps the runner class with
    :func:`gslora_det.console.quiet_console`."""
    if not quiet_config:
        return (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
                RUNNERS.build(cfg))
    from gslora_det.console import quiet_console
    runner_cls = cfg.get('runner_type', Runner)
    if isinstance(runner_cls, str):
        runner_cls = RUNNERS.get(runner_cls)
    if runner_cls is None:  # unknown type: mmengine's own error
        return RUNNERS.build(cfg)
    runner = quiet_console(runner_cls).from_cfg(cfg)
    runner.logger.info('Config and environment: in the log file '
                       f'{runner.logger.log_file}')
    return runner


def main():
    args = parse_args()
    # Imported here so that `--help` works even before installation.
    from gslora_det.config_checks import ConfigError, prepare_config
    from gslora_det.distributed import LaunchError, setup_cpu_distributed

    cfg = setup_config(args)
    try:
        prepare_config(cfg, mode='train')
        # Without CUDA: gloo, and DDP without device ids (mmengine's
        # launchers assume GPUs); a no-op on GPU machines.
        setup_cpu_distributed(cfg, args.launcher)
    except (ConfigError, LaunchError) as err:
        sys.exit(f'error: {err}')

    runner = build_runner(cfg, args.quiet_config)
    try:
        runner.train()
    except FloatingPointError as err:
        # Raised before the optimiser step: nothing bad was written.
        last = osp.join(cfg.work_dir, 'last_checkpoint')
        kept = (open(last).read().strip() if osp.isfile(last) else
                'none yet (the input checkpoint is unchanged)')
        sys.exit(f'error: {err}\nLast good checkpoint: {kept}')


if __name__ == '__main__':
    main()
