"""``--cfg-options`` for the tools that run other tools.

``tools/train.py``, ``tools/test.py`` and the other single-run tools take
``--cfg-options`` with mmengine's :class:`~mmengine.config.DictAction`, as
mmdet's tools do. A sequence, a benchmark or a sweep runs each task in a
child ``tools/train.py``, which parses the options again with
``DictAction``; re-serialising a parsed dict for the child would lose
quoting and tuple/list types, so these tools keep the ``key=value`` strings
as given (:class:`ForwardedCfgOptions`) after checking them with the same
parser, so that a malformed option fails before the first task, not inside
a child an hour later.
"""
import argparse
from typing import Dict, Sequence

from mmengine.config import DictAction

EXAMPLE = 'train_cfg.max_iters=100'


class ForwardedCfgOptions(argparse.Action):
    """Checked with ``DictAction``'s value parser, kept as ``key=value``
    strings for the children (an ``argparse.Action``: nothing of
    ``DictAction.__call__``, which builds a dict, is reused).

    ``namespace.<dest>`` becomes a list of the strings (empty by default);
    :func:`parse_cfg_options` gives the dict that ``DictAction`` would.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            parse_cfg_options(values)
        except ValueError as err:
            parser.error(f'{option_string}: {err}')
        kept = list(getattr(namespace, self.dest, None) or [])
        setattr(namespace, self.dest, kept + list(values))


def parse_cfg_options(items: Sequence[str]) -> Dict:
    """``key=value`` strings as ``DictAction`` parses them.

    Args:
        items (Sequence[str]): e.g. ``['model.lora_cfg.rank=4',
            'forget_task.forget_classes=[a,b]']``.

    Returns:
        dict: dotted key -> value (int, float, bool, None, str, list or
        tuple), ready for ``Config.merge_from_dict``.

    Raises:
        ValueError: an item without ``=`` or with an empty key; the message
            names the item and shows the expected form.
    """
    out = {}
    for item in items:
        key, sep, value = str(item).partition('=')
        if not sep or not key.strip():
            raise ValueError(f'{item!r} is not key=value (e.g. {EXAMPLE})')
        out[key.strip()] = DictAction._parse_iterable(value)
    return out


def add_cfg_options(parser: argparse.ArgumentParser,
                    flag: str = '--cfg-options',
                    help: str = 'key=value overrides for every task run '
                    "(mmengine's DictAction syntax)") -> None:
    """Adds a forwarded ``--cfg-options``-style flag to ``parser``."""
    parser.add_argument(flag, nargs='+', action=ForwardedCfgOptions,
                        default=[], metavar='KEY=VALUE', help=help)
