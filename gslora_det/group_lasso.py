"""The group-sparse (group-lasso) penalty of GS-LoRA.

``L_structure = Σ_g sqrt(Σ_{P ∈ g} ||P||_F²)``, without size weighting, as in
the reference. Its gradient pushes whole groups (all LoRA matrices of one
transformer layer's FFN) to exactly zero, so that a forgetting task touches
as few layers as possible.

Two ways to apply it (``group_lasso_cfg.mode``): ``'penalty'`` adds
``α·L_structure`` to the loss (the reference); ``'proximal'`` leaves it out
of the loss and soft-thresholds every group after each optimiser step
(:func:`group_soft_threshold_`, run by
:class:`gslora_det.optim.ProximalGroupLassoOptimWrapper`), which makes
groups exactly zero.
"""
from typing import Callable, Dict, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

#: The optimiser wrapper that applies the proximal step (for messages).
PROX_WRAPPER = 'ProximalGroupLassoOptimWrapper'
#: Attribute that wrapper sets on the model it updates: a model in
#: proximal mode refuses to train without it (a plain OptimWrapper would
#: silently train with no group sparsity at all).
PROX_BOUND_ATTR = '_group_lasso_prox_bound'


def group_norm(params: Iterable[nn.Parameter]) -> torch.Tensor:
    """``sqrt(Σ ||P||_F²)`` over a group's parameters (a scalar tensor).

    A small epsilon inside the root keeps the gradient finite when a group
    is exactly zero (B = 0 at init makes A's part non-zero, but a group can
    reach zero later).
    """
    squares = sum(p.pow(2).sum() for p in params)
    return torch.sqrt(squares + 1e-12)


def group_norms(groups: Mapping[str, Iterable[nn.Parameter]]
                ) -> Dict[str, torch.Tensor]:
    """Per-group norms, keyed by group name."""
    return {name: group_norm(params) for name, params in groups.items()}


def group_lasso(groups: Mapping[str, Iterable[nn.Parameter]]
                ) -> torch.Tensor:
    """``Σ_g ||g||``: the structure loss before weighting by α."""
    return sum(group_norms(groups).values())


def inactive_groups(norms: Mapping[str, float],
                    rel_threshold: float = 0.01) -> list:
    """Groups whose norm is below ``rel_threshold`` × the largest norm."""
    if not norms:
        return []
    top = max(norms.values())
    return [k for k, v in norms.items() if v <= rel_threshold * top]


def lasso_weight(cfg: Mapping, enabled: bool, it: int) -> float:
    """α at iteration ``it``: 0 before ``warmup_iters`` or when disabled.

    Args:
        cfg (Mapping): A merged ``group_lasso_cfg``.
        enabled (bool): The method's ``group_lasso`` switch.
        it (int): The current (0-based) training iteration.
    """
    return cfg['alpha'] if enabled and it >= cfg['warmup_iters'] else 0.0


def lasso_enabled(model: nn.Module) -> bool:
    """The method's ``group_lasso`` switch (on for a model without a
    ``method_cfg``, e.g. a toy GS-LoRA model)."""
    return getattr(model, 'method_cfg', {}).get('group_lasso', True)


def earliest_stop(cfg: Mapping, enabled: bool) -> int:
    """The first step at which a forgetting task may stop early.

    ``warmup_iters + sparsify_iters`` when the group lasso is on (α > 0),
    else 0: the group lasso must have acted ``sparsify_iters`` steps.

    Args:
        cfg (Mapping): A merged ``group_lasso_cfg``.
        enabled (bool): The method's ``group_lasso`` switch.
    """
    if not enabled or cfg['alpha'] <= 0 or cfg['sparsify_iters'] <= 0:
        return 0
    return int(cfg['warmup_iters']) + int(cfg['sparsify_iters'])


@torch.no_grad()
def group_soft_threshold_(params: Sequence[torch.Tensor],
                          threshold: float) -> bool:
    """The group-lasso prox in place: ``g <- max(0, 1 - t/||g||)·g``.

    Args:
        params (Sequence[Tensor]): The group's tensors (shrunk together).
        threshold (float): ``t = η·λ``.

    Returns:
        bool: Whether the group is exactly zero afterwards.
    """
    norm = float(torch.stack([p.pow(2).sum() for p in params]).sum().sqrt())
    if norm == 0.0:
        return True
    if threshold >= norm:
        for p in params:
            p.zero_()  # not mul_(0): that would keep -0.0 where p < 0
        return True
    for p in params:
        p.mul_(1.0 - threshold / norm)
    return False


def group_lasso_terms(model: nn.Module, it: int, enabled: bool,
                      short_name: Callable[[str], str] = str
                      ) -> Dict[str, torch.Tensor]:
    """The group-lasso entries of a GS-LoRA model's loss dict.

    Penalty mode: ``loss_group_lasso = α·Σ_g ||g||`` (summed into the
    loss by mmengine). Proximal mode: the same value, detached, as
    ``group_lasso`` (no ``loss`` in the key: logged, not summed, since
    the prox already applies it). Both: ``gn.<group>``, each group's norm.

    Args:
        model (nn.Module): The unwrapped model (``lora_groups()``,
            ``group_lasso_cfg``).
        it (int): The current training iteration.
        enabled (bool): The method's ``group_lasso`` switch.
        short_name (Callable): Group name -> log key suffix.

    Raises:
        RuntimeError: proximal mode in training while no proximal
            optimiser wrapper serves the model.
    """
    cfg = model.group_lasso_cfg
    groups = model.lora_groups()
    alpha = lasso_weight(cfg, enabled, it)
    terms: Dict[str, torch.Tensor] = {}
    if cfg['mode'] == 'penalty':
        terms['loss_group_lasso'] = alpha * group_lasso(groups)
    else:
        if (enabled and model.training and torch.is_grad_enabled()
                and not getattr(model, PROX_BOUND_ATTR, False)):
            raise RuntimeError(
                "group_lasso_cfg.mode='proximal' applies the group lasso "
                'in the optimiser step, but no proximal optimiser wrapper '
                'serves this model (a plain OptimWrapper would train with '
                f"no group sparsity). Set optim_wrapper.type='{PROX_WRAPPER}'"
                " in the config, or group_lasso_cfg.mode='penalty'.")
        with torch.no_grad():
            terms['group_lasso'] = alpha * group_lasso(groups)
    for name, norm in group_norms(groups).items():
        terms[f'gn.{short_name(name)}'] = norm.detach()
    return terms
