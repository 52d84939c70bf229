"""Group lasso against hand computation; inactive-group detection."""
import math

import pytest
import torch
import torch.nn as nn

from gslora_det.group_lasso import (group_lasso, group_norm, group_norms,
                                    inactive_groups)


def test_group_lasso_matches_hand_computation():
    g1 = [nn.Parameter(torch.tensor([[3.0, 0.0]])),
          nn.Parameter(torch.tensor([[4.0]]))]  # sqrt(9 + 16) = 5
    g2 = [nn.Parameter(torch.tensor([1.0, 2.0, 2.0]))]  # 3
    g3 = [nn.Parameter(torch.zeros(2, 2))]  # 0
    groups = {'a': g1, 'b': g2, 'c': g3}
    norms = group_norms(groups)
    assert norms['a'].item() == pytest.approx(5.0)
    assert norms['b'].item() == pytest.approx(3.0)
    assert norms['c'].item() == pytest.approx(0.0, abs=1e-5)
    assert group_lasso(groups).item() == pytest.approx(8.0, abs=1e-5)


def test_gradient_is_finite_at_zero_and_unit_elsewhere():
    p = nn.Parameter(torch.tensor([3.0, 4.0]))
    group_norm([p]).backward()
    assert torch.allclose(p.grad, torch.tensor([0.6, 0.8]))
    z = nn.Parameter(torch.zeros(3))
    group_norm([z]).backward()
    assert torch.isfinite(z.grad).all()


def test_inactive_groups_relative_threshold():
    norms = {'enc0': 10.0, 'enc1': 0.05, 'dec0': 0.2, 'dec1': 3.0}
    assert inactive_groups(norms, 0.01) == ['enc1']
    assert inactive_groups(norms, 0.05) == ['enc1', 'dec0']
    assert inactive_groups({}, 0.01) == []
    assert math.isclose(sum(norms.values()), 13.25)
