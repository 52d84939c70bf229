"""LoRALinear: no-op at init, merge / unmerge, names, loading."""
import math

import pytest
import torch
import torch.nn as nn

from gslora_det.lora import LoRALinear


def make(rank=4, **kw):
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    return base, LoRALinear.from_linear(base, rank=rank, **kw)


def test_noop_at_init():
    base, lora = make()
    x = torch.randn(3, 6)
    assert torch.equal(lora.lora_B, torch.zeros_like(lora.lora_B))
    assert torch.allclose(lora(x), base(x), atol=0, rtol=0)


def test_shares_weight_and_keeps_names():
    base, lora = make()
    assert lora.weight is base.weight and lora.bias is base.bias
    assert set(lora.state_dict()) == {'weight', 'bias', 'lora_A', 'lora_B'}
    assert lora.lora_A.shape == (4, 6) and lora.lora_B.shape == (5, 4)


def test_scaling_is_alpha_over_rank():
    _, lora = make(rank=8, alpha=1.0)
    assert lora.scaling == pytest.approx(1 / 8)


def test_merge_equals_unmerged_forward_and_unmerge_restores():
    base, lora = make()
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(7, 6)
    w0 = lora.weight.detach().clone()
    y = lora(x)
    assert not torch.allclose(y, nn.functional.linear(x, w0, lora.bias))
    delta = lora.get_delta_weight()
    assert torch.allclose(delta, lora.scaling * lora.lora_B @ lora.lora_A)
    lora.merge()
    assert lora.merged
    assert torch.allclose(lora.weight, w0 + delta)
    assert torch.allclose(lora(x), y, atol=1e-6)
    lora.merge()  # idempotent
    assert torch.allclose(lora.weight, w0 + delta)
    lora.unmerge()
    assert torch.allclose(lora.weight, w0, atol=1e-6)
    assert torch.allclose(lora(x), y, atol=1e-6)


def test_merge_refuses_non_finite():
    _, lora = make()
    with torch.no_grad():
        lora.lora_B.fill_(float('nan'))
    w0 = lora.weight.detach().clone()
    with pytest.raises(ValueError, match='not finite'):
        lora.merge()
    assert torch.equal(lora.weight, w0) and not lora.merged


@pytest.mark.parametrize('rank', [0, -2])
def test_rank_must_be_positive(rank):
    with pytest.raises(ValueError, match='rank'):
        LoRALinear(4, 4, rank=rank)


def test_loads_a_checkpoint_without_lora_entries():
    base, lora = make()
    plain = {k: v + 1 for k, v in base.state_dict().items()}
    a0 = lora.lora_A.detach().clone()
    result = lora.load_state_dict(plain, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(lora.weight, plain['weight'])
    assert torch.equal(lora.lora_A, a0)
    assert not lora.lora_B.any()


def test_init_gain_changes_scale_of_a():
    torch.manual_seed(0)
    big = LoRALinear(256, 256, init_a_gain=math.sqrt(5))
    torch.manual_seed(0)
    small = LoRALinear(256, 256, init_a_gain=math.sqrt(50))
    assert small.lora_A.abs().max() < big.lora_A.abs().max()


def test_to_linear_holds_merged_weight():
    _, lora = make()
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(2, 6)
    y = lora(x)
    linear = lora.to_linear()
    assert type(linear) is nn.Linear
    assert torch.allclose(linear(x), y, atol=1e-6)
