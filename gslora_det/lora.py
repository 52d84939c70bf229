"""LoRA for ``nn.Linear``: ``y = x W^T + b + s · x A^T B^T``.

Modelled on PEFT's ``tuners/lora`` with one deliberate difference: the
wrapper *is* an ``nn.Linear`` (a subclass that owns ``weight`` and
``bias``), not a module holding a ``base_layer``. The wrapped layer's
parameter names are therefore unchanged (``...ffn.layers.1.weight``), so
stock mmdet checkpoints load into a model with LoRA, and a merged model
saves as a stock checkpoint once the ``lora_`` entries are dropped.
"""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F

#: Prefix of every LoRA parameter name: decides what trains and what an
#: adapter file holds.
LORA_PREFIX = 'lora_'


@torch.no_grad()
def lora_update_is_zero(lora_A: torch.Tensor, lora_B: torch.Tensor) -> bool:
    """Whether the update ``s · B A`` is exactly zero.

    True when B or A is all zeros and the other factor is finite (a NaN or
    Inf there would make ``0 · NaN`` NaN, which the update then is). The
    proximal step zeroes B only by default, so a switched-off layer has a
    zero B and a non-zero A.

    Args:
        lora_A (Tensor): (r, in_features).
        lora_B (Tensor): (out_features, r).
    """
    return bool((not lora_B.any() and torch.isfinite(lora_A).all()) or
                (not lora_A.any() and torch.isfinite(lora_B).all()))


class LoRALinear(nn.Linear):
    """A linear layer with a low-rank update that can be merged into it.

    Args:
        in_features (int): Input width.
        out_features (int): Output width.
        rank (int): LoRA rank r. Defaults to 8.
        alpha (float): ``lora_alpha``; the update is scaled by alpha / r.
            Defaults to 1 (the GS-LoRA reference value, scaling 1/8).
        init_a_gain (float): ``a`` of the kaiming-uniform init of A; the
            reference uses sqrt(5) on the first task and sqrt(50) (smaller
            values) on later ones. Defaults to sqrt(5).
        bias (bool): Whether the layer has a bias. Defaults to True.

    Shapes:
        lora_A: (r, in_features); lora_B: (out_features, r).
        input: (..., in_features) -> output: (..., out_features).
    """

    def __init__(self, in_features: int, out_features: int, rank: int = 8,
                 alpha: float = 1.0, init_a_gain: float = math.sqrt(5),
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device,
                         dtype=dtype)
        if rank <= 0:
            raise ValueError(f'LoRA rank must be a positive integer, got '
                             f'{rank}')
        self.rank = rank
        self.lora_alpha = alpha
        self.scaling = alpha / rank
        self.init_a_gain = init_a_gain
        self.merged = False
        self.lora_A = nn.Parameter(
            torch.empty(rank, in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(
            torch.empty(out_features, rank, device=device, dtype=dtype))
        self.reset_lora_parameters()

    @classmethod
    def from_linear(cls, linear: nn.Linear, **lora_kwargs) -> 'LoRALinear':
        """Wrap an existing ``nn.Linear``, sharing its weight and bias."""
        layer = cls(linear.in_features, linear.out_features,
                    bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype,
                    **lora_kwargs)
        layer.weight = linear.weight
        layer.bias = linear.bias
        return layer

    def reset_lora_parameters(self) -> None:
        """A kaiming-uniform, B zeros: the layer is an exact no-op update."""
        nn.init.kaiming_uniform_(self.lora_A, a=self.init_a_gain)
        nn.init.zeros_(self.lora_B)

    def get_delta_weight(self) -> torch.Tensor:
        """The update ``s · B A`` of shape (out_features, in_features)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def update_is_zero(self) -> bool:
        """Whether the update is exactly zero (:func:`lora_update_is_zero`)."""
        return lora_update_is_zero(self.lora_A, self.lora_B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.merged:
            return out
        # x A^T B^T costs r·(in + out) per row instead of in·out for B A.
        return out + self.scaling * F.linear(F.linear(x, self.lora_A),
                                             self.lora_B)

    @torch.no_grad()
    def merge(self, safe_merge: bool = True) -> bool:
        """Add the update into ``weight``; an exactly zero update is
        skipped, so ``weight`` stays bit-identical (``W + 0`` would turn
        -0.0 into +0.0).

        Args:
            safe_merge (bool): Check the merged weight is finite before
                writing it. Defaults to True.

        Returns:
            bool: Whether ``weight`` changed (False: already merged, or
            the update is exactly zero).

        Raises:
            ValueError: the merged weight would hold NaN or Inf.
        """
        if self.merged:
            return False
        if self.update_is_zero():
            self.merged = True
            return False
        merged = self.weight + self.get_delta_weight()
        if safe_merge and not torch.isfinite(merged).all():
            raise ValueError('refusing to merge LoRA: the merged weight is '
                             'not finite (NaN/Inf in the adapter)')
        self.weight.data.copy_(merged)
        self.merged = True
        return True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update from ``weight`` again (an exactly zero one
        is skipped, as in :meth:`merge`)."""
        if not self.merged:
            return
        if not self.update_is_zero():
            self.weight.data.sub_(self.get_delta_weight())
        self.merged = False

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` holding the merged weight."""
        self.merge()
        linear = nn.Linear(self.in_features, self.out_features,
                           bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        linear.weight = self.weight
        linear.bias = self.bias
        return linear

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        # A checkpoint without LoRA (a stock mmdet one, or a merged one)
        # loads cleanly: absent LoRA entries keep their fresh no-op init
        # instead of being reported as missing keys.
        for name in ('lora_A', 'lora_B'):
            state_dict.setdefault(prefix + name, getattr(self, name).data)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, rank={self.rank}, '
                f'scaling={self.scaling:g}, merged={self.merged}')


def lora_modules(model: nn.Module):
    """Yield ``(name, LoRALinear)`` pairs of ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield name, module
