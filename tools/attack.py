"""Can a forgotten class come back? Recovery attacks on a detector.

Usage::

    python tools/attack.py CONFIG CHECKPOINT \
        --forget-classes blue_triangle orange_star \
        [--previously-forgotten green_square] --work-dir DIR \
        [--attacks retain_only k_shot head_only] [--k 1 5 10] \
        [--steps 100] [--lr LR] [--seed 0] \
        [--retrained work_dirs/retrained/retrained.pth] \
        [--base work_dirs/pretrain/epoch_5.pth] \
        [--cfg-options key=value ...]

CONFIG is the detector's own config (the one CHECKPOINT's architecture
was trained with, e.g. configs/shapes/deformable-detr_r18-tiny_5e_shapes.py),
not a GS-LoRA task config; CHECKPOINT is the merged (forgotten) model. Each
attack fine-tunes a copy of the model for ``--steps`` iterations with the
config's optimizer (at ``--lr``, default the config's learning rate,
constant) and gradient clipping, then evaluates it on the config's
validation set; the unattacked model is evaluated too. With ``--retrained``
(tools/retrain_without.py) the same attacks run on the retrained model and
the report's headline is the recovery gap (forgotten mAP, merged minus
retrained) per attack and k. ``--base`` adds the model before forgetting.
Writes DIR/attack_report.json (0-1), DIR/attack_report.md (%),
DIR/plots/confusion_*.png and DIR/runs/ (one folder per run; a run whose
settings did not change is not repeated). Protocol: docs/attacks.md.
"""
import argparse
import sys

from mmengine.config import DictAction

from gslora_det.attacks.configs import ATTACK_CHOICES, ATTACKS


def parse_args(argv=None):
    """Parse the command line (``argv``; None: ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Recovery attacks on a forgotten detector')
    parser.add_argument('config', help="the detector's own config file")
    parser.add_argument('checkpoint', help='the merged (forgotten) model')
    parser.add_argument('--forget-classes', nargs='+', required=True,
                        metavar='NAME', help='the classes it forgot')
    parser.add_argument('--previously-forgotten', nargs='*', default=[],
                        metavar='NAME', help='classes forgotten earlier')
    parser.add_argument('--work-dir', required=True,
                        help='output folder')
    parser.add_argument('--attacks', nargs='+',
                        choices=ATTACK_CHOICES,
                        default=list(ATTACKS), help='attacks to run '
                        '(default: all; `none`: only the unattacked '
                        'evaluations, e.g. a retrained model against the '
                        'bar)')
    parser.add_argument('--k', nargs='+', type=int, default=[1, 5, 10],
                        help='images per forgotten class of the k_shot and '
                        'head_only attacks (default: 1 5 10)')
    parser.add_argument('--steps', type=int, default=100,
                        help='fine-tuning iterations per attack '
                        '(default: 100)')
    parser.add_argument('--lr', type=float, default=None,
                        help="learning rate (default: the config's "
                        'optimizer lr)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the image draw and training')
    parser.add_argument('--retrained', metavar='CHECKPOINT',
                        help='model retrained without the classes: adds '
                        'the recovery gap')
    parser.add_argument('--base', metavar='CHECKPOINT',
                        help='the model before forgetting')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='score threshold of residual detection and '
                        'confusion rows (default: 0.3)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f'--steps {args.steps}: must be >= 1')
    bad = [k for k in args.k if k < 1]
    if bad:
        parser.error(f'--k {bad}: must be >= 1')
    if args.lr is not None and not args.lr > 0:
        parser.error(f'--lr {args.lr:g}: must be > 0')
    if not 0 <= args.score_thr <= 1:
        parser.error(f'--score-thr {args.score_thr:g}: must be in [0, 1]')
    return args


def main(argv=None):
    args = parse_args(argv)
    # Imported after parsing: `--help` works fast, and importing
    # gslora_det registers its modules and the weights-only allow-list.
    import gslora_det  # noqa: F401
    from gslora_det.attacks import run_attacks
    from gslora_det.config_checks import ConfigError
    try:
        run_attacks(
            args.config, args.checkpoint, args.forget_classes,
            args.work_dir, previously_forgotten=args.previously_forgotten,
            attacks=args.attacks, ks=args.k, steps=args.steps, lr=args.lr,
            seed=args.seed, retrained=args.retrained, base=args.base,
            cfg_options=args.cfg_options, score_thr=args.score_thr)
    except (ConfigError, FileNotFoundError) as err:
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
