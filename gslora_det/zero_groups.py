"""LoRA groups whose update is exactly zero: found, left out, filled back.

A group (one transformer layer's LoRA, see
:func:`gslora_det.inject.lora_groups`) is *exactly zero* when the update
``s · B A`` of every LoRA layer in it is exactly zero
(:func:`gslora_det.lora.lora_update_is_zero`): the forgetting task did not
touch that transformer layer. The report lists these groups, the adapter
does not store their tensors, and merging leaves their base weights
bit-identical.

Everything here works on LoRA tensor dicts keyed ``<layer>.lora_A`` /
``<layer>.lora_B`` (:func:`gslora_det.inject.lora_state_dict`, an adapter's
weights), in their order (the model's).
"""
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from gslora_det.inject import group_of
from gslora_det.lora import lora_update_is_zero

#: ``adapter_config.json``'s ``zero_groups_note``.
ZERO_GROUPS_NOTE = (
    'The weights file holds the LoRA tensors of stored_groups only. The '
    'groups in zero_groups have an exactly zero update (lora_B or lora_A '
    'all zeros in each of their layers): their tensors are left out, '
    'reading the adapter gives them lora_A = lora_B = 0, and merging leaves '
    'their base weights bit-identical.')

_SUFFIXES = ('.lora_A', '.lora_B')


def layer_of(key: str) -> Optional[str]:
    """The LoRA layer of a tensor key (None: not an A or B)."""
    for suffix in _SUFFIXES:
        if key.endswith(suffix):
            return key[:-len(suffix)]
    return None


def lora_layers_of(tensors: Iterable[str]) -> List[str]:
    """The LoRA layers named by tensor keys, in order, each once."""
    layers = OrderedDict((layer_of(k), None) for k in tensors)
    layers.pop(None, None)
    return list(layers)


def layer_group(layer: str, group_pattern: Optional[str]) -> str:
    """A layer's group; without a pattern (an old single-file adapter
    recorded none) every layer is a group of its own."""
    return group_of(layer, group_pattern) if group_pattern else layer


def layer_groups(layers: Iterable[str], group_pattern: Optional[str]
                 ) -> 'OrderedDict[str, List[str]]':
    """Group -> its layers, groups in the order of their first layer."""
    groups: 'OrderedDict[str, List[str]]' = OrderedDict()
    for layer in layers:
        groups.setdefault(layer_group(layer, group_pattern), []).append(layer)
    return groups


def split_groups(tensors: Dict[str, torch.Tensor],
                 group_pattern: Optional[str],
                 group_names: Sequence[str] = ()) -> Tuple[List[str],
                                                           List[str]]:
    """The groups whose update is not exactly zero, and those whose is.

    Args:
        tensors (dict): LoRA tensors, every layer's A and B.
        group_pattern (str, optional): The adapter's group pattern.
        group_names (Sequence[str]): The model's groups, in model order:
            the order of the result (a group without tensors is left out).

    Returns:
        tuple[list[str], list[str]]: ``(on, exactly_zero)``.
    """
    groups = layer_groups(lora_layers_of(tensors), group_pattern)
    order = [g for g in group_names if g in groups] + [
        g for g in groups if g not in set(group_names)]
    zero = {g for g, layers in groups.items() if all(
        lora_update_is_zero(tensors[f'{layer}.lora_A'],
                            tensors[f'{layer}.lora_B'])
        for layer in layers)}
    return ([g for g in order if g not in zero],
            [g for g in order if g in zero])


def drop_groups(tensors: Dict[str, torch.Tensor], groups: Sequence[str],
                group_pattern: Optional[str]) -> Dict[str, torch.Tensor]:
    """``tensors`` without those of the layers of ``groups``."""
    drop = set(groups)
    return OrderedDict(
        (k, v) for k, v in tensors.items() if layer_of(k) is None or
        layer_group(layer_of(k), group_pattern) not in drop)


def stored_layers(layers: Dict[str, List[int]], zero_groups: Sequence[str],
                  group_pattern: Optional[str]) -> Dict[str, List[int]]:
    """The adapted layers whose tensors an adapter's weights file holds:
    all of ``layers`` but those of ``zero_groups``."""
    zero = set(zero_groups)
    if not zero:
        return {k: list(v) for k, v in layers.items()}
    return {k: list(v) for k, v in layers.items()
            if layer_group(k, group_pattern) not in zero}


def zero_filled(tensors: Dict[str, torch.Tensor],
                layers: Dict[str, List[int]],
                rank: int) -> Dict[str, torch.Tensor]:
    """``tensors`` with ``lora_A = 0`` (r, in) and ``lora_B = 0`` (out, r)
    for every layer of ``layers`` they do not hold, in ``layers``' order.
    """
    dtype = next(iter(tensors.values())).dtype if tensors else torch.float32
    filled = OrderedDict()
    for layer, (out_features, in_features) in layers.items():
        for suffix, shape in (('.lora_A', (rank, in_features)),
                              ('.lora_B', (out_features, rank))):
            key = layer + suffix
            filled[key] = tensors[key] if key in tensors else torch.zeros(
                shape, dtype=dtype)
    filled.update((k, v) for k, v in tensors.items() if k not in filled)
    return filled
