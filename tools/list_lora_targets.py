"""List the LoRA candidates of a config's model and what GS-LoRA selects.

Builds the config's model without LoRA and without weights (no checkpoint,
no download), lists every ``nn.Linear`` with its shape, marks the ones the
target patterns select, and prints the resulting groups with their LoRA
parameter counts. Use it to check a config, or to write the patterns for a
new detector (docs/detectors.md)::

    python tools/list_lora_targets.py \\
        configs/shapes/gslora_dino_r18-tiny_task1_shapes.py
    python tools/list_lora_targets.py CONFIG \\
        --targets 'decoder\\.layers\\.\\d+\\.ffn\\.layers\\.1' \\
        --group-pattern '(decoder\\.layers\\.\\d+)\\..*'

Patterns are full-match regular expressions over module names (as
``lora_cfg.targets`` / ``lora_cfg.group_pattern``); without ``--targets`` /
``--group-pattern`` the config's ``model.lora_cfg`` is used, else the
defaults. Exits with status 1 and a message when nothing matches.
"""
import argparse
import re
import sys
from collections import OrderedDict
from typing import List, Optional, Sequence

import torch.nn as nn
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config, DictAction

#: Constructor arguments of the GS-LoRA detectors that the stock class
#: does not take.
GSLORA_KEYS = ('lora_cfg', 'forget_cfg', 'group_lasso_cfg', 'prototype_cfg',
               'task_index', 'method', 'method_cfg')


def stock_model(model_cfg: dict):
    """Build the model of ``model_cfg`` as its stock mmdet class.

    Returns:
        tuple: (model, the config's ``lora_cfg`` or {}, the class name).
    """
    from gslora_det.detectors import GSLoRAForgettingMixin
    cfg = dict(model_cfg)
    cls = MODELS.get(cfg['type']) if isinstance(cfg['type'], str) \
        else cfg['type']
    if cls is None:
        raise SystemExit(f'error: model type {cfg["type"]!r} is not '
                         'registered; does the config import gslora_det '
                         '(custom_imports)?')
    lora_cfg = dict(cfg.get('lora_cfg') or {})
    name = cls.__name__
    if issubclass(cls, GSLoRAForgettingMixin):
        for key in GSLORA_KEYS:
            cfg.pop(key, None)
        stock = next(c for c in cls.__mro__ if issubclass(c, BaseDetector)
                     and not issubclass(c, GSLoRAForgettingMixin))
        cfg['type'] = stock
        name = f'{cls.__name__} (stock class {stock.__name__})'
    return MODELS.build(cfg), lora_cfg, name


def describe(model: nn.Module, targets: Sequence[str], group_pattern: str,
             rank: int) -> List[str]:
    """The report's lines.

    Raises:
        ValueError: no Linear matches ``targets``, or a selected layer
            matches no group of ``group_pattern``.
    """
    from gslora_det.inject import find_targets
    linears = [(n, m) for n, m in model.named_modules()
               if isinstance(m, nn.Linear)]
    selected = set(find_targets(model, targets))  # lists Linears if none
    width = max(len(n) for n, _ in linears)
    lines = [f'{len(linears)} nn.Linear layers; * = LoRA target '
             f'(patterns {list(targets)})',
             f'    {"name":<{width}}  in_features -> out_features']
    for name, module in linears:
        mark = '*' if name in selected else ' '
        lines.append(f'  {mark} {name:<{width}}  {module.in_features:>11}'
                     f' -> {module.out_features}')
    regex = re.compile(group_pattern)
    groups = OrderedDict()
    for name, module in linears:
        if name not in selected:
            continue
        match = regex.fullmatch(name)
        if match is None or not match.groups():
            raise ValueError(
                f'target {name} matches no group of group pattern '
                f'{group_pattern!r}: the pattern must full-match every '
                'target and capture the group name in its first group, '
                "e.g. r'((?:encoder|decoder)\\.layers\\.\\d+)\\..*'")
        layers = groups.setdefault(match.group(1), [])
        layers.append(rank * (module.in_features + module.out_features))
    lines.append(f'{len(groups)} groups (pattern {group_pattern!r}), '
                 f'LoRA rank {rank}:')
    for group, counts in groups.items():
        lines.append(f'  {group:<{width}}  {len(counts)} layers  '
                     f'{sum(counts):>10,} params')
    total = sum(sum(c) for c in groups.values())
    lines.append(f'total: {len(selected)} LoRA layers in {len(groups)} '
                 f'groups, {total:,} trainable LoRA parameters')
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--targets', nargs='+', metavar='REGEX',
                        help='full-match patterns of the Linear layers to '
                        'adapt (default: the config\'s lora_cfg.targets, '
                        'else gslora_det.inject.DEFAULT_TARGETS)')
    parser.add_argument('--group-pattern', metavar='REGEX',
                        help='full-match pattern whose first group names '
                        'the group of a target (default: the config\'s, '
                        'else gslora_det.inject.DEFAULT_GROUP_PATTERN)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings (key=value)')
    args = parser.parse_args(argv)

    register_all_modules()
    import gslora_det  # noqa: F401  (registers the GS-LoRA detectors)
    from gslora_det.inject import DEFAULT_GROUP_PATTERN, DEFAULT_TARGETS
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model, lora_cfg, name = stock_model(cfg.model)
    targets = args.targets or lora_cfg.get('targets', DEFAULT_TARGETS)
    group_pattern = args.group_pattern or lora_cfg.get(
        'group_pattern', DEFAULT_GROUP_PATTERN)
    print(f'model: {name}')
    try:
        lines = describe(model, list(targets), group_pattern,
                         int(lora_cfg.get('rank', 8)))
    except (ValueError, re.error) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
