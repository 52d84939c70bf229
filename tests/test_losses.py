"""Signs and bounds of the forgetting losses."""
import pytest
import torch

from gslora_det.losses import (bounded_forget_cls_loss, prototype_kl,
                               prototype_loss)


def test_bounded_loss_falls_as_cls_loss_rises_and_stops_at_bound():
    cls = torch.tensor(2.0, requires_grad=True)
    loss = bounded_forget_cls_loss(cls, bound=15.0)
    assert loss.item() == pytest.approx(13.0)
    loss.backward()
    # Minimising the loss *raises* the forget classification loss.
    assert cls.grad.item() == pytest.approx(-1.0)

    past = torch.tensor(20.0, requires_grad=True)
    loss = bounded_forget_cls_loss(past, bound=15.0)
    assert loss.item() == 0.0
    loss.backward()
    assert past.grad.item() == 0.0  # nothing left to push: bounded


def test_bounded_loss_is_never_negative():
    values = torch.linspace(0, 40, 41)
    assert (bounded_forget_cls_loss(values, 5.0) >= 0).all()


def test_prototype_kl_zero_iff_equal_and_positive_otherwise():
    p = torch.randn(4, 16)
    assert torch.allclose(prototype_kl(p, p), torch.zeros(4), atol=1e-6)
    assert (prototype_kl(p, torch.randn(4, 16)) > 0).all()


def test_prototype_loss_pushes_forget_pulls_retain():
    f = torch.zeros(3, 8, requires_grad=True)
    protos = torch.randn(3, 8) * 3
    kl_f = prototype_kl(protos, f)
    loss = prototype_loss(kl_f, kl_f.new_zeros(0), bound=18.0,
                          weight_forget=0.005, weight_retain=0.0)
    assert loss.item() == pytest.approx(0.005 * (18 - kl_f).mean().item())
    loss.backward()
    # a step against the gradient increases the KL of forget queries
    with torch.no_grad():
        stepped = f - 100 * f.grad
    assert (prototype_kl(protos, stepped) > kl_f.detach()).all()

    r = torch.zeros(2, 8, requires_grad=True)
    kl_r = prototype_kl(torch.randn(2, 8), r)
    loss = prototype_loss(kl_r.new_zeros(0), kl_r, 18.0, 0.005, 1.0)
    assert loss.item() == pytest.approx(kl_r.mean().item())
