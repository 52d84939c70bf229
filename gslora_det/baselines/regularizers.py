"""Quadratic penalties of the regularisation baselines: L2, EWC and MAS.

All three add ``λ · Σ_i Ω_i (θ_i − θ*_i)²`` to the loss, where θ* are the
weights the task started from and Ω is a per-weight importance:

* L2:  Ω = 1;
* EWC: Ω = E[(∂L_det/∂θ)²], the diagonal empirical Fisher, estimated on
  mini-batches of retained data (as the reference does);
* MAS: Ω = E[|∂ mean(logits²)/∂θ|], the sensitivity of the output's squared
  L2 norm, which needs no labels.

Written by hand because mmengine/mmdet have no continual-learning
regularisers; the estimators follow the reference's ``calculate_importance_*``.
"""
from typing import Callable, Dict, Iterable, Mapping

import torch
import torch.nn as nn

IMPORTANCE_KINDS = ('l2', 'ewc', 'mas')


@torch.enable_grad()
def estimate_importance(params: Mapping[str, nn.Parameter], kind: str,
                        batches: Iterable,
                        objective: Callable[[object], torch.Tensor]
                        ) -> Dict[str, torch.Tensor]:
    """Per-weight importance Ω of ``params``.

    Args:
        params (Mapping[str, nn.Parameter]): The trainable weights.
        kind (str): ``'l2'``, ``'ewc'`` or ``'mas'``.
        batches (Iterable): Mini-batches passed to ``objective`` (unused for
            L2).
        objective (Callable): batch -> scalar; the detection loss for EWC,
            ``mean(logits²)`` for MAS.

    Returns:
        dict[str, Tensor]: Ω per name, same shapes as the weights, detached.
    """
    if kind not in IMPORTANCE_KINDS:
        raise ValueError(f'importance kind must be one of {IMPORTANCE_KINDS}'
                         f', got {kind!r}')
    importance = {n: torch.zeros_like(p, memory_format=torch.preserve_format)
                  for n, p in params.items()}
    if kind == 'l2':
        return {n: torch.ones_like(v) for n, v in importance.items()}
    names = list(params)
    count = 0
    for batch in batches:
        value = objective(batch)
        grads = torch.autograd.grad(value, [params[n] for n in names],
                                    allow_unused=True)
        for name, grad in zip(names, grads):
            if grad is None:  # the weight does not reach this objective
                continue
            importance[name] += grad.pow(2) if kind == 'ewc' else grad.abs()
        count += 1
    if count == 0:
        raise ValueError(f'{kind.upper()} importance needs at least one '
                         'batch of retained data; the retain split is empty')
    return {n: (v / count).detach() for n, v in importance.items()}


def quadratic_penalty(params: Mapping[str, nn.Parameter],
                      anchors: Mapping[str, torch.Tensor],
                      importance: Mapping[str, torch.Tensor]
                      ) -> torch.Tensor:
    """``Σ_i Ω_i (θ_i − θ*_i)²`` over the weights named in ``importance``
    (without λ)."""
    total = None
    for name, omega in importance.items():
        term = (omega * (params[name] - anchors[name]).pow(2)).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError('quadratic penalty over no weights')
    return total


def logit_distillation(student: torch.Tensor,
                       teacher: torch.Tensor) -> torch.Tensor:
    """DER's ``‖logits_s − logits_t‖²``: the squared L2 norm of the
    difference, summed over every query and class (as the reference).

    Args:
        student (Tensor): (n, num_queries, num_classes) logits.
        teacher (Tensor): same shape, from the frozen input model.
    """
    return (student - teacher.detach()).pow(2).sum()
