"""Put LoRA on a model's Linear layers by exact name pattern, freeze the
rest, and group the LoRA parameters for the group-sparse penalty.

Target and group patterns are regular expressions matched against the full
module name with ``re.fullmatch``, so ``encoder.layers.1.ffn.layers.1`` never
catches ``encoder.layers.1.ffn.layers.10`` or an attention projection.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Sequence

import torch
import torch.nn as nn

from gslora_det.lora import (LORA_PREFIX, LoRALinear, lora_modules,
                             lora_update_is_zero)

#: Both linears of every FFN of a DETR-family encoder and decoder
#: (mmcv's FFN: ``layers.0`` = Sequential(Linear, act, Dropout),
#: ``layers.1`` = Linear). Nothing on attention or heads.
DEFAULT_TARGETS = (
    r'(encoder|decoder)\.layers\.\d+\.ffn\.layers\.0\.0',
    r'(encoder|decoder)\.layers\.\d+\.ffn\.layers\.1',
)
#: One group per transformer layer: its first capture group names it.
DEFAULT_GROUP_PATTERN = r'((?:encoder|decoder)\.layers\.\d+)\..*'


def linear_layer_names(model: nn.Module) -> List[str]:
    """Names of every ``nn.Linear`` in ``model`` (LoRA candidates)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def find_targets(model: nn.Module,
                 patterns: Sequence[str] = DEFAULT_TARGETS) -> List[str]:
    """Names of the Linear layers that fully match one of ``patterns``.

    Raises:
        ValueError: nothing matched; the message lists the Linear layers
            that exist so that the user can write a pattern that does.
    """
    compiled = [re.compile(p) for p in patterns]
    linears = linear_layer_names(model)
    found = [n for n in linears if any(p.fullmatch(n) for p in compiled)]
    if not found:
        shown = '\n  '.join(linears[:60])
        more = f'\n  ... ({len(linears) - 60} more)' if len(linears) > 60 \
            else ''
        raise ValueError(
            f'LoRA target patterns {list(patterns)} match no nn.Linear of '
            f'{type(model).__name__}. Patterns are full-match regular '
            f'expressions over module names; the Linear layers are:\n  '
            f'{shown}{more}')
    return found


def inject_lora(model: nn.Module,
                targets: Sequence[str] = DEFAULT_TARGETS,
                rank: int = 8,
                alpha: float = 1.0,
                init_a_gain: float = 5**0.5) -> List[str]:
    """Replace each target ``nn.Linear`` with a :class:`LoRALinear` in place.

    Returns:
        list[str]: The names of the wrapped layers.
    """
    if rank <= 0:
        raise ValueError(f'LoRA rank must be a positive integer, got {rank}')
    names = find_targets(model, targets)
    for name in names:
        parent_name, _, child = name.rpartition('.')
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        if isinstance(old, LoRALinear):
            raise ValueError(f'{name} already has LoRA; merge it first')
        setattr(parent, child,
                LoRALinear.from_linear(old, rank=rank, alpha=alpha,
                                       init_a_gain=init_a_gain))
    return names


def is_lora_param(name: str) -> bool:
    """Whether a parameter name belongs to a LoRA module."""
    return name.rpartition('.')[2].startswith(LORA_PREFIX)


def freeze_all_but_lora(model: nn.Module) -> int:
    """Only LoRA parameters train (biases and norms stay frozen too).

    Returns:
        int: Number of trainable parameters.
    """
    trainable = 0
    for name, param in model.named_parameters():
        param.requires_grad_(is_lora_param(name))
        trainable += param.numel() if param.requires_grad else 0
    return trainable


def freeze_matching(model: torch.nn.Module, patterns: Sequence[str]) -> int:
    """Freeze the parameters whose name fully matches one of ``patterns``;
    the others keep their ``requires_grad``. Returns the trainable count."""
    compiled = [re.compile(p) for p in patterns]
    trainable = 0
    for name, param in model.named_parameters():
        if any(p.fullmatch(name) for p in compiled):
            param.requires_grad_(False)
        trainable += param.numel() if param.requires_grad else 0
    return trainable


def group_of(layer: str, group_pattern: str = DEFAULT_GROUP_PATTERN) -> str:
    """The group-lasso group of a LoRA layer: ``group_pattern``'s first
    capture of its full name.

    Raises:
        ValueError: the name does not fully match ``group_pattern``.
    """
    match = re.fullmatch(group_pattern, layer)
    if match is None:
        raise ValueError(f'LoRA layer {layer} matches no group of pattern '
                         f'{group_pattern!r}')
    return match.group(1)


def lora_groups(model: nn.Module,
                group_pattern: str = DEFAULT_GROUP_PATTERN
                ) -> 'OrderedDict[str, List[nn.Parameter]]':
    """Group LoRA parameters by the first capture of ``group_pattern``.

    Returns:
        OrderedDict[str, list[nn.Parameter]]: group name -> parameters
        (A and B of every LoRA layer in that group), in model order.
    """
    groups: 'OrderedDict[str, List[nn.Parameter]]' = OrderedDict()
    for name, module in lora_modules(model):
        groups.setdefault(group_of(name, group_pattern), []).extend(
            [module.lora_A, module.lora_B])
    return groups


def lora_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The adapter: every ``lora_`` tensor, detached, contiguous, on CPU."""
    return OrderedDict((k, v.detach().cpu().contiguous())
                       for k, v in model.state_dict().items()
                       if is_lora_param(k))


def merge_lora(model: nn.Module, safe_merge: bool = True
               ) -> Dict[str, List[str]]:
    """Merge every LoRA layer of ``model`` into its weight, in place.

    Returns:
        dict[str, list[str]]: ``merged``, the layers whose weight changed;
        ``skipped``, those whose update is exactly zero (weight left
        bit-identical) or that were merged already.

    Raises:
        ValueError: a merged weight would not be finite (``safe_merge``).
    """
    done: Dict[str, List[str]] = dict(merged=[], skipped=[])
    for name, module in lora_modules(model):
        changed = module.merge(safe_merge=safe_merge)
        done['merged' if changed else 'skipped'].append(name)
    return done


def merged_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's weights with every LoRA update added in and the ``lora_``
    entries dropped: a state dict of the model *without* LoRA. The model
    itself is not changed; a layer whose update is exactly zero keeps its
    weight tensor as it is."""
    state = model.state_dict()
    for name, module in lora_modules(model):
        if not module.merged and not module.update_is_zero():
            state[f'{name}.weight'] = (module.weight +
                                       module.get_delta_weight()).detach()
    return OrderedDict((k, v) for k, v in state.items()
                       if not is_lora_param(k))


def apply_adapter(state: Dict[str, torch.Tensor],
                  adapter: Dict[str, torch.Tensor],
                  scaling: float) -> Dict[str, torch.Tensor]:
    """``base + s · B A`` for each adapted layer of a plain state dict.

    Used to check a merged checkpoint against its input and adapter. A
    layer whose update is exactly zero, or that ``adapter`` does not hold,
    keeps its weight tensor as it is (no ``float()`` round trip either).
    """
    merged = OrderedDict(state)
    for key in adapter:
        if key.endswith('.lora_A'):
            layer = key[:-len('.lora_A')]
            if lora_update_is_zero(adapter[key], adapter[f'{layer}.lora_B']):
                continue
            delta = scaling * (adapter[f'{layer}.lora_B'].float()
                               @ adapter[key].float())
            merged[f'{layer}.weight'] = (state[f'{layer}.weight'].float() +
                                         delta).to(
                                             state[f'{layer}.weight'].dtype)
    return merged
