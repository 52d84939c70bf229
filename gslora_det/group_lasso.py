"""The group-sparse (group-lasso) penalty of GS-LoRA.

``L_structure = Σ_g sqrt(Σ_{P ∈ g} ||P||_F²)``, without size weighting, as in
the reference. Its gradient pushes whole groups (all LoRA matrices of one
transformer layer's FFN) to exactly zero, so that a forgetting task touches
as few layers as possible.
"""
from typing import Dict, Iterable, Mapping

import torch
import torch.nn as nn


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
