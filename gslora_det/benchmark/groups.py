"""What the benchmarks read off a finished task about its LoRA groups and
adapter, and the spread of a number over seeds.

A group is *exactly zero* when the forgetting task left its transformer
layer untouched (the LoRA update ``s·B·A`` is 0, so merging keeps the base
weights bit-identical). A report that lists ``groups_exactly_zero`` (its
writer's rule) is taken at its word; an older report has only
``group_norms`` (``‖(A, B)‖``), where only a norm of exactly 0.0 proves a
zero update (with ``shrink='B'`` a zero group keeps ``‖A‖ > 0`` there and
is missed: the reason the writer's key is preferred).
"""
import math
import os.path as osp
import statistics
from typing import Dict, List, Mapping, Optional, Sequence

#: A task's adapter: ``<task dir>/adapter/adapter_model.safetensors``
#: (:mod:`gslora_det.adapter`), or the older single file next to it.
ADAPTER_FILES = (osp.join('adapter', 'adapter_model.safetensors'),
                 'adapter.safetensors')
_LORA_SUFFIXES = ('.lora_A', '.lora_B')


def exactly_zero_groups(report: Mapping) -> List[str]:
    """The task's groups whose update is exactly zero, in model order.

    Args:
        report (Mapping): A ``forget_report.json`` dict.

    Returns:
        list[str]: Group names (empty for a method without LoRA groups).
    """
    norms = report.get('group_norms') or {}
    listed = report.get('groups_exactly_zero')
    if listed is not None:
        zero = set(listed)
        return [g for g in norms if g in zero] + [
            g for g in listed if g not in norms]
    return [g for g, v in norms.items() if v == 0.0]


def groups_on(report: Mapping) -> List[str]:
    """The task's groups whose update is not exactly zero, in model order."""
    zero = set(exactly_zero_groups(report))
    return [g for g in report.get('group_norms') or {} if g not in zero]


def task_adapter_file(task_dir: str) -> Optional[str]:
    """The adapter weights file a task wrote, or None (no LoRA method)."""
    for name in ADAPTER_FILES:
        path = osp.join(task_dir, name)
        if osp.isfile(path):
            return path
    return None


def adapter_nonzero_params(path: str) -> int:
    """Non-zero elements of the LoRA tensors (``*.lora_A``, ``*.lora_B``)
    of an adapter safetensors file: what the adapter really carries.

    Args:
        path (str): A ``.safetensors`` file.

    Returns:
        int: The count (the A of a group whose B is zero counts, unless
        the writer left that group out).
    """
    from safetensors import safe_open
    total = 0
    with safe_open(path, framework='pt') as f:
        for key in f.keys():
            if key.endswith(_LORA_SUFFIXES):
                total += int((f.get_tensor(key) != 0).sum())
    return total


def task_adapter_nonzero(task_dir: str) -> Optional[int]:
    """:func:`adapter_nonzero_params` of a task folder's adapter, or None
    when the task wrote none."""
    path = task_adapter_file(task_dir)
    return None if path is None else adapter_nonzero_params(path)


def spread(values: Sequence[Optional[float]]) -> Dict[str, Optional[float]]:
    """Mean, sample standard deviation, min and max of ``values``.

    Args:
        values (Sequence[float]): One number per seed; None (a failed
            seed) is left out.

    Returns:
        dict: ``n``, ``mean``, ``std`` (None below two values), ``min``,
        ``max`` (None when there is no value).
    """
    got = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not got:
        return dict(n=0, mean=None, std=None, min=None, max=None)
    return dict(n=len(got), mean=statistics.mean(got),
                std=statistics.stdev(got) if len(got) > 1 else None,
                min=min(got), max=max(got))


def format_spread(stats: Mapping, pct: bool = True) -> str:
    """``'70.1 ± 1.2 (68.9–71.3), 3 seeds'``; ``'–'`` without a value."""
    if not stats.get('n'):
        return '–'
    scale = 100.0 if pct else 1.0
    text = f"{scale * stats['mean']:.1f}"
    if stats['n'] > 1:
        text += (f" ± {scale * stats['std']:.1f} ({scale * stats['min']:.1f}"
                 f"–{scale * stats['max']:.1f})")
    return text + f", {stats['n']} seed{'s' if stats['n'] > 1 else ''}"
