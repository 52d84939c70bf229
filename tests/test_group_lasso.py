"""Group lasso against hand computation; inactive-group detection; the
prox function; the settings; the detector's group-lasso terms in both
modes (tiny Deformable DETR)."""
import copy
import math

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from gslora_det.group_lasso import (PROX_BOUND_ATTR, group_lasso, group_norm,
                                    group_norms, inactive_groups)
from gslora_det.lora import lora_modules
from gslora_det.optim import ProximalGroupLassoOptimWrapper as Prox
from gslora_det.optim.proximal import ZERO_GROUPS_KEY


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


def test_soft_threshold_by_hand():
    from gslora_det.group_lasso import group_soft_threshold_
    g = [torch.tensor([[3.0, 0.0]]), torch.tensor([[-4.0]])]  # norm 5
    assert group_soft_threshold_(g, 2.0) is False  # scaled by 1 - 2/5
    assert torch.allclose(g[0], torch.tensor([[1.8, 0.0]]))
    assert torch.allclose(g[1], torch.tensor([[-2.4]]))
    small = [torch.tensor([0.6, -0.8])]  # norm 1 <= 2: exactly zero
    assert group_soft_threshold_(small, 2.0) is True
    assert torch.equal(small[0], torch.zeros(2))
    assert not torch.signbit(small[0]).any()  # +0.0, not -0.0
    assert group_soft_threshold_(small, 2.0) is True  # 0 stays 0


def test_lasso_weight_warmup_and_switch():
    from gslora_det.group_lasso import lasso_weight
    cfg = dict(alpha=3e-4, warmup_iters=5)
    assert lasso_weight(cfg, True, 4) == 0.0
    assert lasso_weight(cfg, True, 5) == 3e-4
    assert lasso_weight(cfg, False, 9) == 0.0


@pytest.mark.parametrize('key,value', [
    ('mode', 'prox'), ('shrink', 'A'), ('prox_step', 'sgd'),
    ('reset_momentum', 1)])
def test_bad_group_lasso_choices_are_refused(key, value):
    from gslora_det.detectors.settings import (DEFAULT_GROUP_LASSO_CFG,
                                               check_group_lasso_choices)
    check_group_lasso_choices(DEFAULT_GROUP_LASSO_CFG)  # defaults pass
    with pytest.raises(ValueError, match=f'group_lasso_cfg.{key}'):
        check_group_lasso_choices({**DEFAULT_GROUP_LASSO_CFG, key: value})


# -- the detector's group-lasso terms in both modes ---------------------
@pytest.fixture(scope='module')
def det():
    """The tiny GS-LoRA Deformable DETR (built once: ~10 s on 2 cores) and
    its initial state; each test sets its mode and reloads that state."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from conftest import TASK_CFGS
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(TASK_CFGS[0]).model)
    model.init_weights()
    return (model.train(), copy.deepcopy(model.state_dict()),
            dict(model.group_lasso_cfg))


def reset(det, mode):
    model, start, cfg = det
    model.load_state_dict(start)
    model.group_lasso_cfg.update(cfg, mode=mode)
    model.__dict__.pop(PROX_BOUND_ATTR, None)  # no wrapper bound yet
    MessageHub.get_current_instance().update_info('iter', 0)
    return model


def det_batch():
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    torch.manual_seed(1)
    shape = dict(img_shape=(64, 64), ori_shape=(64, 64),
                 batch_input_shape=(64, 64), scale_factor=(1., 1.))
    samples = [DetDataSample(metainfo=dict(forget_role=r, **shape),
                             gt_instances=InstanceData(
                                 bboxes=torch.tensor([[5., 6., 25., 30.]]),
                                 labels=torch.tensor([2])))
               for r in ('retain', 'forget')]
    return torch.rand(2, 3, 64, 64) * 2 - 1, samples


def det_step(model, wrapper, losses=None):
    """One training step as mmengine's ``train_step`` takes it."""
    losses = model.loss(*det_batch()) if losses is None else losses
    wrapper.update_params(model.parse_losses(losses)[0])
    return copy.deepcopy(model.state_dict())


def wrap(model, cls, **kwargs):
    """An AdamW wrapper bound to ``model`` as the Runner binds it."""
    optim = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-2)
    wrapper = cls(optimizer=optim, **kwargs)
    wrapper.initialize_count_status(model, 0, 10)
    return wrapper


def test_penalty_mode_keeps_todays_term_and_step(det):
    model = reset(det, 'penalty')
    start = copy.deepcopy(model.state_dict())
    losses = model.loss(*det_batch())
    alpha, groups = model.group_lasso_cfg['alpha'], model.lora_groups()
    term = losses['loss_group_lasso']
    assert torch.equal(term, alpha * group_lasso(groups))  # today's code
    norms = [torch.cat([p.flatten() for p in ps]).norm() for ps in
             groups.values()]
    assert term.item() == pytest.approx(alpha * sum(norms).item(), rel=1e-6)
    assert term.requires_grad and 'group_lasso' not in losses
    # the proximal wrapper on a penalty-mode model == a plain OptimWrapper
    clip = dict(max_norm=0.1)  # as the configs
    states = [det_step(model, wrap(model, OptimWrapper, clip_grad=clip),
                       losses)]
    model.load_state_dict(start)
    states.append(det_step(model, wrap(model, Prox, clip_grad=clip)))
    changed = [k for k in start if not torch.equal(start[k], states[0][k])]
    assert changed and all(torch.equal(states[0][k], states[1][k])
                           for k in start)


def test_proximal_mode_needs_the_wrapper_and_logs_the_term_unsummed(det):
    model = reset(det, 'proximal')
    with pytest.raises(RuntimeError,
                       match="optim_wrapper.type='ProximalGroupLasso"):
        model.loss(*det_batch())  # no proximal wrapper bound
    wrapper = wrap(model, Prox)
    losses = model.loss(*det_batch())
    assert 'loss_group_lasso' not in losses
    gn = [v for k, v in losses.items() if k.startswith('gn.')]
    assert not losses['group_lasso'].requires_grad
    assert losses['group_lasso'].item() == pytest.approx(
        model.group_lasso_cfg['alpha'] * sum(n.item() for n in gn),
        rel=1e-5)
    model.group_lasso_cfg['alpha'] = 1e3  # far above any gradient
    det_step(model, wrapper, losses)
    gz = MessageHub.get_current_instance().get_scalar(ZERO_GROUPS_KEY)
    assert gz.current() == len(gn) == 6  # every group exactly zero
    assert all(not m.lora_B.any() and m.lora_A.any()
               for _, m in lora_modules(model))
