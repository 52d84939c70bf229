"""ProximalGroupLassoOptimWrapper on toy modules with two LoRA groups.

The detector side (penalty numbers and step unchanged on the tiny
Deformable DETR; proximal mode refuses a plain OptimWrapper) is in
test_group_lasso.py."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper, build_optim_wrapper
from torch.nn.parallel import DistributedDataParallel

from gslora_det.detectors.settings import DEFAULT_GROUP_LASSO_CFG, merged_cfg
from gslora_det.group_lasso import PROX_BOUND_ATTR
from gslora_det.lora import LoRALinear
from gslora_det.optim import ProximalGroupLassoOptimWrapper as ProxWrapper
from gslora_det.optim.proximal import ZERO_GROUPS_KEY


class Toy(nn.Module):
    """Two LoRA groups and a trainable non-LoRA head."""

    def __init__(self, **group_lasso_cfg):
        super().__init__()
        torch.manual_seed(0)
        self.l0, self.l1 = LoRALinear(4, 3, rank=2), LoRALinear(4, 3, rank=2)
        self.head = nn.Linear(3, 1)
        for m in (self.l0, self.l1):
            m.weight.requires_grad_(False), m.bias.requires_grad_(False)
        self.group_lasso_cfg = merged_cfg(
            DEFAULT_GROUP_LASSO_CFG, {'mode': 'proximal', **group_lasso_cfg},
            'group_lasso_cfg')
        self.method_cfg = dict(group_lasso=True)

    def lora_groups(self):
        return {'g0': [self.l0.lora_A, self.l0.lora_B],
                'g1': [self.l1.lora_A, self.l1.lora_B]}

    def forward(self, x):
        return self.head(self.l0(x) + self.l1(x)).pow(2).mean()


class FakeDDP(DistributedDataParallel):
    """Passes mmengine's ``is_model_wrapper`` without a process group."""

    def __init__(self, module):
        nn.Module.__init__(self)
        self.module = module


def wrap(model, cls=ProxWrapper, opt='adamw', lr=1e-2, max_counts=100,
         **kwargs):
    params = [p for p in model.parameters() if p.requires_grad]
    optim = (torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
             if opt == 'adamw' else torch.optim.SGD(params, lr=lr))
    wrapper = cls(optimizer=optim, **kwargs)
    wrapper.initialize_count_status(model, 0, max_counts)  # as the Runner
    return wrapper


def set_iter(it):
    MessageHub.get_current_instance().update_info('iter', it)


@pytest.fixture(autouse=True)
def iteration_zero():
    """Every test starts (and leaves the shared message hub) at iter 0."""
    set_iter(0)
    yield
    set_iter(0)


def zero_grads(model):  # a zero gradient: the optimiser still steps
    for p in model.parameters():
        p.grad = torch.zeros_like(p)


def data(seed=1):
    torch.manual_seed(seed)
    return torch.randn(8, 4)


def test_prox_by_hand_and_only_b_shrinks():
    """η = lr = 1, α = 2 (η·α = 2): ||B0|| = 5 -> ×0.6; ||B1|| = 1 -> 0."""
    model = Toy(alpha=2.0, prox_step='lr', shrink='B')
    with torch.no_grad():
        model.l0.lora_B.copy_(torch.tensor([[3., 0.], [0., 4.], [0., 0.]]))
        model.l1.lora_B.copy_(torch.tensor([[0.6, 0.], [0., -0.8], [0, 0]]))
    before = copy.deepcopy(model.state_dict())
    wrapper = wrap(model, opt='sgd', lr=1.0)
    zero_grads(model)  # the SGD step is a no-op
    wrapper.step()
    after = model.state_dict()
    assert torch.allclose(after['l0.lora_B'], 0.6 * before['l0.lora_B'])
    assert torch.equal(after['l1.lora_B'], torch.zeros(3, 2))
    assert not torch.signbit(after['l1.lora_B']).any()
    for key in before:  # A, base weights and the head: bit for bit
        if not key.endswith('lora_B'):
            assert torch.equal(before[key], after[key]), key
    gz = MessageHub.get_current_instance().get_scalar(ZERO_GROUPS_KEY)
    assert gz.current() == 1  # logged: one exactly-zero group


def test_shrink_ab_is_the_prox_of_the_whole_group():
    model = Toy(prox_step='lr', shrink='AB')
    a0 = model.l0.lora_A.detach().clone()
    # B = 0 at init: the group's norm is ||A||; threshold = half of it
    model.group_lasso_cfg['alpha'] = a0.norm().item() / 2
    wrapper = wrap(model, opt='sgd', lr=1.0)
    zero_grads(model)
    wrapper.step()
    assert torch.allclose(model.l0.lora_A, 0.5 * a0)


def test_zero_stays_zero_without_gradient_and_revives_through_data():
    model = Toy(alpha=1e3)  # λ far above any gradient: every B dies
    wrapper = wrap(model)
    wrapper.update_params(model(data()))
    assert not model.l0.lora_B.any() and not model.l1.lora_B.any()
    assert not wrapper.optimizer.state[model.l0.lora_B]['exp_avg'].any()
    model.group_lasso_cfg['alpha'] = 1e-6
    zero = torch.zeros(3, 2)
    for _ in range(5):  # zero gradient: exactly +0.0, bit for bit
        zero_grads(model)
        wrapper.step()
        for b in (model.l0.lora_B, model.l1.lora_B):
            assert torch.equal(b, zero) and not torch.signbit(b).any()
    # A is not zero, so the data's gradient still reaches B: it can revive
    wrapper.update_params(model(data()))
    assert model.l0.lora_B.any()


def test_a_dead_group_revives_when_fresh_gradients_outweigh_alpha():
    """Momentum is reset once, at death, not at every step at zero."""
    alpha = 1e-2
    model = Toy(alpha=alpha)
    wrapper = wrap(model)
    pull = torch.ones(3, 2) * 3 * alpha / 6 ** 0.5  # ||pull|| = 3α

    def step_with(grad):
        zero_grads(model)
        model.l0.lora_B.grad = grad.clone()
        wrapper.step()
    for _ in range(30):  # alive; bias corrections near 1
        step_with(pull)
    model.group_lasso_cfg['alpha'] = 1e3  # one step of a huge λ kills it
    step_with(pull)
    assert not model.l0.lora_B.any()
    model.group_lasso_cfg['alpha'] = alpha
    revived = []
    for _ in range(10):
        step_with(pull)
        revived.append(bool(model.l0.lora_B.any()))
    # the first step back has 0.1·pull of momentum (< α): still zero; a
    # reset at every zero step would keep it there for ever
    assert not revived[0] and revived[-1]


def test_non_lora_parameters_and_a_match_a_plain_step():
    """One step from the same state: only B differs, by one factor per
    group (later steps differ everywhere, through the forward)."""
    plain, prox = Toy(), Toy(alpha=0.05)
    w_plain, w_prox = wrap(plain, OptimWrapper), wrap(prox)
    w_plain.update_params(plain(data()))
    w_prox.update_params(prox(data()))
    s_plain, s_prox = plain.state_dict(), prox.state_dict()
    for key in s_plain:
        if key.endswith('lora_B'):
            ratio = s_prox[key] / s_plain[key]  # one scalar per group
            assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio))
            assert 0 <= ratio.flatten()[0] < 1
        else:
            assert torch.equal(s_plain[key], s_prox[key]), key


@pytest.mark.parametrize('grad_over_alpha,factor', [(2.0, 0.5), (0.5, 0.0)])
def test_first_step_of_fresh_b_follows_the_lasso_condition(grad_over_alpha,
                                                           factor):
    """prox_step='adam' on a fresh B (= 0): Adam's first step is
    -lr·sign(g), and the prox scales it by max(0, 1 - α/||g||): the group
    dies at once only if its data gradient is no larger than α."""
    alpha = 1e-2
    plain, prox = Toy(), Toy(alpha=alpha)
    for model, cls in ((plain, OptimWrapper), (prox, ProxWrapper)):
        wrapper = wrap(model, cls)
        g = torch.ones(3, 2) * grad_over_alpha * alpha / 6 ** 0.5
        zero_grads(model)
        model.l0.lora_B.grad = g.clone()
        model.l1.lora_B.grad = g * 1e3  # ||g|| far above α: kept
        wrapper.step()
    assert torch.allclose(prox.l0.lora_B, factor * plain.l0.lora_B,
                          atol=1e-6)
    kept = 1 - 1 / (grad_over_alpha * 1e3)
    assert torch.allclose(prox.l1.lora_B, kept * plain.l1.lora_B, atol=1e-7)
    assert torch.equal(prox.l0.lora_A, plain.l0.lora_A)


def test_warmup_iters_hold_the_prox_back():
    plain, prox = Toy(), Toy(alpha=1e3, warmup_iters=3)
    w_plain, w_prox = wrap(plain, OptimWrapper), wrap(prox)
    for it in range(3):
        set_iter(it)
        w_plain.update_params(plain(data(it)))
        w_prox.update_params(prox(data(it)))
        assert torch.equal(plain.l0.lora_B, prox.l0.lora_B)
    set_iter(3)
    w_prox.update_params(prox(data(3)))
    assert not prox.l0.lora_B.any()


def test_prox_runs_once_per_accumulated_step(monkeypatch):
    model = Toy(alpha=1e-3)
    wrapper = wrap(model, accumulative_counts=2, max_counts=5)
    calls = []
    original = ProxWrapper._prox
    monkeypatch.setattr(ProxWrapper, '_prox',
                        lambda self: calls.append(1) or original(self))
    real_steps = (1, 3, 4)  # after micro-batches 2, 4 and 5 (the last)
    for i in range(5):
        b_before = model.l0.lora_B.detach().clone()
        wrapper.update_params(model(data(i)))
        assert len(calls) == sum(j <= i for j in real_steps)
        # a micro-batch that is not a real step changes nothing
        assert torch.equal(model.l0.lora_B, b_before) != (i in real_steps)


def test_ddp_wrapped_model_is_unwrapped():
    model = Toy(alpha=1e3)
    wrapper = wrap(FakeDDP(model))
    assert getattr(model, PROX_BOUND_ATTR) is True
    wrapper.update_params(model(data()))
    assert not model.l0.lora_B.any()


def test_bad_bindings_fail_clearly():
    unbound = ProxWrapper(optimizer=torch.optim.SGD(
        [nn.Parameter(torch.ones(2))], lr=0.1))
    with pytest.raises(RuntimeError, match='bind_model'):
        unbound.step()
    with pytest.raises(TypeError, match='GS-LoRA model'):
        unbound.bind_model(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="prox_step='lr'"):
        wrap(Toy(), opt='sgd')  # prox_step='adam' needs Adam's moments
    toy = Toy()
    adamax = ProxWrapper(optimizer=torch.optim.Adamax(toy.parameters()))
    adamax.bind_model(toy)  # has betas and eps, but no second moment
    toy(data()).backward()
    with pytest.raises(ValueError, match="no 'exp_avg_sq'"):
        adamax.step()
    with pytest.raises(ValueError, match='does not hold'):
        ProxWrapper(optimizer=torch.optim.AdamW([toy.head.weight])
                    ).bind_model(toy)


def test_registered_and_built_from_a_config():
    from mmengine.registry import DefaultScope
    model = Toy()
    cfg = dict(type='ProximalGroupLassoOptimWrapper',
               optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4),
               clip_grad=dict(max_norm=0.1, norm_type=2))
    with DefaultScope.overwrite_default_scope('mmdet'):
        assert isinstance(build_optim_wrapper(model, copy.deepcopy(cfg)),
                          ProxWrapper)
    assert isinstance(build_optim_wrapper(model, cfg), ProxWrapper)


def test_penalty_mode_step_is_a_plain_optim_wrapper_step():
    plain, prox = Toy(mode='penalty'), Toy(mode='penalty')
    w_plain = wrap(plain, OptimWrapper, clip_grad=dict(max_norm=0.1))
    w_prox = wrap(prox, clip_grad=dict(max_norm=0.1))
    for i in range(3):
        w_plain.update_params(plain(data(i)))
        w_prox.update_params(prox(data(i)))
    for key, value in plain.state_dict().items():
        assert torch.equal(value, prox.state_dict()[key]), key
