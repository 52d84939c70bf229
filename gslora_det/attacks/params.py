"""Which parameters an attack trains, and a record of them.

A full attack trains what the detector's config trains (every parameter
that requires grad in the model as built: a ResNet's ``frozen_stages`` stay
frozen). A head-only attack trains only the classification head:

* Deformable DETR, DINO (``DeformableDETRHead`` and subclasses):
  ``bbox_head.cls_branches``, one linear layer per decoder layer (shared
  when boxes are not refined), plus the encoder's proposal classifier in
  two-stage mode;
* DETR, Conditional DETR (``DETRHead``): ``bbox_head.fc_cls``.
"""
from typing import Dict, List, Mapping, Sequence

import torch
from torch import nn

#: Attributes of ``model.bbox_head`` that hold the class head, in order.
CLASS_HEAD_ATTRS = ('cls_branches', 'fc_cls')


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside an mmengine model wrapper (DDP), or ``model``."""
    from mmengine.model import is_model_wrapper
    return model.module if is_model_wrapper(model) else model


def class_head_prefix(model: nn.Module) -> str:
    """Parameter-name prefix of the detector's classification head.

    Args:
        model (nn.Module): The detector (unwrapped or wrapped).

    Returns:
        str: ``'bbox_head.cls_branches'`` or ``'bbox_head.fc_cls'``.

    Raises:
        ValueError: the model has no such head (named in the message).
    """
    head = getattr(unwrap(model), 'bbox_head', None)
    for attr in CLASS_HEAD_ATTRS:
        if isinstance(getattr(head, attr, None), nn.Module):
            return f'bbox_head.{attr}'
    raise ValueError(
        f'{type(unwrap(model)).__name__} has no classification head at '
        f'bbox_head.{{{", ".join(CLASS_HEAD_ATTRS)}}}: the head-only attack '
        'supports the DETR family (DETR, Conditional DETR, Deformable DETR, '
        'DINO); drop head_only from --attacks')


def under(name: str, prefixes: Sequence[str]) -> bool:
    """Whether parameter/module ``name`` is one of ``prefixes`` or inside."""
    return any(name == p or name.startswith(p + '.') for p in prefixes)


def restrict_trainable(model: nn.Module, prefixes: Sequence[str]) -> None:
    """Freeze every parameter outside ``prefixes`` (never unfreezes).

    Raises:
        ValueError: no trainable parameter is left under ``prefixes``.
    """
    model = unwrap(model)
    left = 0
    for name, param in model.named_parameters():
        if not under(name, prefixes):
            param.requires_grad_(False)
        elif param.requires_grad:
            left += 1
    if not left:
        raise ValueError(f'no trainable parameter under {list(prefixes)}')


def trainable_summary(model: nn.Module, list_up_to: int = 50) -> Dict:
    """What trains: counts per top-level module, names of small sets.

    Args:
        model (nn.Module): The detector.
        list_up_to (int): List the trainable names when there are at most
            this many tensors. Defaults to 50.

    Returns:
        dict: ``num_tensors``, ``num_params`` (trainable), ``frozen_tensors``,
        ``frozen_params``, ``params_by_module`` (``{top-level module:
        trainable numel}``) and ``names`` (list, or None when longer than
        ``list_up_to``).
    """
    names, by_module = [], {}
    count = frozen = frozen_tensors = 0
    for name, param in unwrap(model).named_parameters():
        if param.requires_grad:
            names.append(name)
            count += param.numel()
            top = name.split('.')[0]
            by_module[top] = by_module.get(top, 0) + param.numel()
        else:
            frozen += param.numel()
            frozen_tensors += 1
    return dict(num_tensors=len(names), num_params=count,
                frozen_tensors=frozen_tensors, frozen_params=frozen,
                params_by_module=by_module,
                names=names if len(names) <= list_up_to else None)


def changed_parameters(model: nn.Module,
                       state_dict: Mapping[str, torch.Tensor]
                       ) -> Dict[str, List[str]]:
    """Which parameters differ from ``state_dict`` (e.g. the checkpoint).

    Returns:
        dict: ``trainable_changed``, ``trainable_unchanged`` and
        ``frozen_changed`` parameter names (the last should be empty).
    """
    out = dict(trainable_changed=[], trainable_unchanged=[],
               frozen_changed=[])
    for name, param in unwrap(model).named_parameters():
        if name not in state_dict:
            continue
        same = torch.equal(param.detach().cpu(), state_dict[name].cpu())
        if param.requires_grad:
            out['trainable_unchanged' if same else
                'trainable_changed'].append(name)
        elif not same:
            out['frozen_changed'].append(name)
    return out
