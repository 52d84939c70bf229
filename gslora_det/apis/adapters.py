"""Adapter folders on models and checkpoints: add, merge, unmerge.

As PEFT's ``PeftModel.from_pretrained`` / ``merge_and_unload``:
:func:`add_adapter` puts a task's LoRA onto a built model,
:func:`merge_adapter` adds it into a plain state dict (or subtracts it
again). ``tools/apply_adapter.py`` and ``tools/verify.py`` use the same
:func:`merge_weights` (itself :func:`gslora_det.inject.apply_adapter`).
A group whose update is exactly zero (not stored in the adapter, or stored
as zeros by an older writer) is skipped: its base weights stay
bit-identical, and the merged checkpoint's ``meta.gslora_adapter`` lists
it in ``skipped_zero_groups``.
"""
import re
import warnings
from typing import Dict, List, Union

import torch
import torch.nn as nn
from mmengine.model import is_model_wrapper

from gslora_det.adapter import (FORMAT_VERSION, AdapterConfig, AdapterError,
                                read_adapter)
from gslora_det.checkpoint import sha256_file
from gslora_det.inject import apply_adapter, inject_lora, is_lora_param
from gslora_det.lora import lora_modules
from gslora_det.zero_groups import split_groups


def check_fits(state: Dict[str, torch.Tensor],
               config: AdapterConfig) -> List[str]:
    """Why the adapter cannot go onto ``state`` (empty: it fits): every
    adapted layer's weight must exist with the recorded shape."""
    problems = []
    lora = [k for k in state if is_lora_param(k)]
    if lora:
        problems.append(f'the checkpoint holds LoRA tensors ({lora[0]}, ...'
                        '): it is a training checkpoint, not a plain one')
    for layer, shape in config.layers.items():
        weight = state.get(f'{layer}.weight')
        if weight is None:
            problems.append(f'{layer}.weight is missing')
        elif list(weight.shape) != list(shape):
            problems.append(f'{layer}.weight is {list(weight.shape)}, the '
                            f'adapter needs {list(shape)}')
    return problems


def merge_weights(state: Dict[str, torch.Tensor],
                  tensors: Dict[str, torch.Tensor], config: AdapterConfig,
                  unmerge: bool = False) -> Dict[str, torch.Tensor]:
    """``W + s·BA`` for each adapted layer (``W − s·BA`` with ``unmerge``),
    through :func:`gslora_det.inject.apply_adapter`; a layer whose update
    is exactly zero keeps its weight tensor as it is.

    Raises:
        AdapterError: no LoRA, no scaling, or the architecture differs.
    """
    if not config.layers:
        raise AdapterError(f'the adapter holds no LoRA layers (method '
                           f'{config.method!r} trains the weights directly):'
                           ' use its merged checkpoint instead')
    if config.scaling is None:
        raise AdapterError('the adapter records no "scaling"')
    problems = check_fits(state, config)
    if problems:
        raise AdapterError(
            f'the checkpoint does not have the adapter\'s architecture '
            f'({len(problems)} problem(s): {"; ".join(problems[:3])})')
    scaling = float(config.scaling)
    return apply_adapter(state, tensors, -scaling if unmerge else scaling)


def check_source_hash(config: AdapterConfig, path: str, unmerge: bool,
                      force: bool = False) -> None:
    """The checkpoint at ``path`` is the one the adapter goes onto: the
    task's input (merge) or its merged checkpoint (unmerge). Without a
    recorded hash it warns and checks nothing.

    Raises:
        AdapterError: another SHA-256 (a warning instead with ``force``).
    """
    what = 'merged' if unmerge else 'base (input)'
    expected = (config.merged_checkpoint_sha256 if unmerge
                else config.base_checkpoint_sha256)
    if not expected:
        warnings.warn(f'the adapter records no {what} checkpoint SHA-256: '
                      f'{path} is not checked')
        return
    found = sha256_file(path)
    if found != expected:
        message = (f'{path} is not the {what} checkpoint of this adapter '
                   f'(sha256 {found[:12]}..., the adapter expects '
                   f'{expected[:12]}...)')
        if not force:
            raise AdapterError(message + '; force it with --force / '
                               'force=True')
        warnings.warn(message + '; going on (forced)')


def merge_checkpoint(checkpoint: Union[str, Dict], adapter_dir: str,
                     unmerge: bool = False, force: bool = False) -> Dict:
    """A plain checkpoint ``dict(meta, state_dict)`` with the adapter merged
    in (or, with ``unmerge``, taken out again).

    Args:
        checkpoint (str | dict): A checkpoint path (loaded weights-only; its
            SHA-256 is checked against the adapter's record), a checkpoint
            dict or a bare state dict (not hash-checked).
        adapter_dir (str): Adapter folder (or an older single file).
        unmerge (bool): Subtract instead of add. Defaults to False.
        force (bool): Go on when the SHA-256 differs (the architecture is
            always checked: a layer of another shape cannot take the
            adapter). Defaults to False.

    Raises:
        AdapterError: see :func:`check_source_hash` and
            :func:`merge_weights`.
    """
    from gslora_det.checkpoint import load_checkpoint_safely, state_dict_of
    tensors, config = read_adapter(adapter_dir)
    if isinstance(checkpoint, str):
        check_source_hash(config, checkpoint, unmerge, force)
        checkpoint = load_checkpoint_safely(checkpoint)
    meta = dict(checkpoint.get('meta') or {}) if 'state_dict' in \
        checkpoint else {}
    state = merge_weights(state_dict_of(checkpoint), tensors, config,
                          unmerge)
    if unmerge:  # the task record describes the merge being undone
        meta.pop('gslora', None)
    merged, zero = split_groups(tensors, config.group_pattern,
                                config.group_names)
    meta['gslora_adapter'] = dict(
        action='unmerge' if unmerge else 'merge', format=FORMAT_VERSION,
        task_index=config.task_index, forget_classes=config.forget_classes,
        base_checkpoint_sha256=config.base_checkpoint_sha256,
        merged_groups=merged, skipped_zero_groups=zero)
    return dict(meta=meta, state_dict=state)


def merge_adapter(state_dict_or_checkpoint: Union[str, Dict],
                  adapter_dir: str, unmerge: bool = False,
                  force: bool = False) -> Dict[str, torch.Tensor]:
    """The state dict of a base with an adapter merged in.

    ``merge_adapter(base.pth, task_k/adapter)`` equals the sequence's
    ``task_k/merged.pth`` within float tolerance; with ``unmerge=True`` on
    ``merged.pth`` it gives the base back. See :func:`merge_checkpoint`
    for the arguments.

    Returns:
        dict[str, Tensor]: The merged (or unmerged) state dict.
    """
    return merge_checkpoint(state_dict_or_checkpoint, adapter_dir, unmerge,
                            force)['state_dict']


def add_adapter(model: nn.Module, adapter_dir: str) -> nn.Module:
    """Put an adapter onto a built model, unmerged (as PEFT's
    ``PeftModel.from_pretrained``).

    A GS-LoRA detector (LoRA already on its layers) gets the adapter's
    weights after its rank, scaling and adapted layers are checked against
    the adapter's; a model without LoRA (a stock mmdet detector) first gets
    LoRA on the adapter's target layers. Load the base weights before or
    after: LoRA weights and base weights are separate parameters.

    Args:
        model (nn.Module): The detector (a model wrapper is unwrapped).
        adapter_dir (str): Adapter folder (or an older single file).

    Returns:
        nn.Module: ``model``, whose output is now base + adapter.

    Raises:
        AdapterError: the adapter does not fit the model.
    """
    if is_model_wrapper(model):
        model = model.module
    tensors, config = read_adapter(adapter_dir)
    if not config.layers:
        raise AdapterError('the adapter holds no LoRA layers')
    if not any(True for _ in lora_modules(model)):
        targets = config.targets or [re.escape(n) for n in config.layers]
        inject_lora(model, targets, rank=config.rank, alpha=config.alpha)
    layers = dict(lora_modules(model))
    missing = sorted(set(config.layers) - set(layers))
    extra = sorted(set(layers) - set(config.layers))
    if missing or extra:
        raise AdapterError(
            f'the model\'s LoRA layers are not the adapter\'s: missing '
            f'{missing[:3]}, not in the adapter {extra[:3]} (targets '
            f'{config.targets})')
    for name, module in layers.items():
        shape = [module.out_features, module.in_features]
        if module.rank != config.rank or shape != list(config.layers[name]):
            raise AdapterError(
                f'{name}: rank {module.rank}, weight {shape}; the adapter '
                f'has rank {config.rank}, weight {config.layers[name]}')
        if config.scaling is not None and abs(
                module.scaling - config.scaling) > 1e-12:
            raise AdapterError(f'{name}: LoRA scaling {module.scaling:g}, '
                               f'the adapter {config.scaling:g}')
        if module.merged:
            raise AdapterError(f'{name} has its own LoRA merged in: unmerge '
                               'it first')
    with torch.no_grad():
        for name, module in layers.items():
            for part in ('lora_A', 'lora_B'):
                getattr(module, part).copy_(tensors[f'{name}.{part}'])
    return model
