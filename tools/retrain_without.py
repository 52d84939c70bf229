"""Retrain a detector without some classes: the gold standard of forgetting.

Usage::

    python tools/retrain_without.py CONFIG --forget-classes A B \
        --work-dir DIR [--cfg-options key=value ...]

Trains CONFIG (the detector's own config) with its own recipe (schedule,
optimizer, pipeline; ``num_classes`` and label numbering unchanged) on its
training set with the objects of the given classes dropped; their images
stay, so the classes are background. Publishes DIR/retrained.pth, the
reference ``tools/attack.py --retrained`` measures the recovery gap
against. Run the same command again after an interruption: it resumes
from the newest loadable checkpoint in DIR (an existing retrained.pth is
kept, never overwritten). See docs/attacks.md.
"""
import argparse
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    """Parse the command line (``argv``; None: ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Train a detector without some classes')
    parser.add_argument('config', help="the detector's own config file")
    parser.add_argument('--forget-classes', nargs='+', required=True,
                        metavar='NAME', help='classes whose objects are '
                        'dropped from the training set')
    parser.add_argument('--work-dir', required=True,
                        help='run folder (checkpoints, logs, '
                        'retrained.pth)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import gslora_det  # noqa: F401  (registers modules, safe loading)
    from gslora_det.attacks import retrain_without
    from gslora_det.config_checks import ConfigError
    try:
        retrain_without(args.config, args.forget_classes, args.work_dir,
                        cfg_options=args.cfg_options)
    except ConfigError as err:
        sys.exit(f'error: {err}')
    except FloatingPointError as err:
        sys.exit(f'error: {err}\nRun the same command again to resume from '
                 f'the last good checkpoint in {args.work_dir}')


if __name__ == '__main__':
    main()
