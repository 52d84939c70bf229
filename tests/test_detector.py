"""GSLoRADeformableDETR on the tiny built-in model: LoRA placement, what
trains, the loss, and merging into a stock DeformableDETR."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.structures import InstanceData

import gslora_det  # noqa: F401
from conftest import PRETRAIN_CFG, TASK_CFGS
from gslora_det.inject import merged_state_dict

register_all_modules()


def model_cfg(path=TASK_CFGS[0], **overrides):
    cfg = Config.fromfile(path).model
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


@pytest.fixture
def gs_model():
    torch.manual_seed(0)
    model = MODELS.build(model_cfg())
    model.init_weights()
    return model


def batch(roles=('retain', 'forget')):
    torch.manual_seed(1)
    samples = []
    for role in roles:
        s = DetDataSample(metainfo=dict(
            img_shape=(128, 128), ori_shape=(128, 128),
            batch_input_shape=(128, 128), scale_factor=(1.0, 1.0),
            forget_role=role))
        s.gt_instances = InstanceData(
            bboxes=torch.tensor([[10., 12., 50., 60.], [70., 70., 110.,
                                                        118.]]),
            labels=torch.tensor([2, 5]))
        samples.append(s)
    return torch.rand(len(roles), 3, 128, 128) * 2 - 1, samples


def test_lora_on_ffn_linears_only_and_noop_after_init_weights(gs_model):
    from gslora_det.lora import LoRALinear
    names = sorted(n for n, m in gs_model.named_modules()
                   if isinstance(m, LoRALinear))
    assert names == sorted(f'{p}.layers.{i}.ffn.layers.{j}'
                           for p in ('encoder', 'decoder') for i in range(3)
                           for j in ('0.0', '1'))
    assert gs_model.group_names == [f'encoder.layers.{i}' for i in range(3)
                                    ] + [f'decoder.layers.{i}'
                                         for i in range(3)]
    # DeformableDETR.init_weights xavier-inits everything under the
    # encoder/decoder; LoRA B must be back to zero afterwards.
    for _, module in gs_model.named_modules():
        if isinstance(module, LoRALinear):
            assert not module.lora_B.any()
    stock = MODELS.build(Config.fromfile(PRETRAIN_CFG).model)
    stock.load_state_dict(merged_state_dict(gs_model), strict=True)
    x, samples = batch()
    gs_model.eval(), stock.eval()
    with torch.no_grad():
        a = gs_model(x, copy.deepcopy(samples), mode='tensor')
        b = stock(x, copy.deepcopy(samples), mode='tensor')
    # Bit-exactness is tested on LoRALinear itself; here the two models run
    # different kernels' thread schedules, so allow float rounding only.
    for ta, tb in zip(a, b):
        assert torch.allclose(ta, tb, atol=1e-5, rtol=1e-5), (
            ta - tb).abs().max()


def test_only_lora_parameters_change_after_a_step(gs_model):
    before = {k: v.clone() for k, v in gs_model.state_dict().items()}
    gs_model.train()
    optim = torch.optim.AdamW(gs_model.parameters(), lr=1e-2,
                              weight_decay=1e-4)
    x, samples = batch()
    losses = gs_model.loss(x, samples)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    optim.step()
    after = gs_model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, 'nothing trained'
    assert all('lora_' in k for k in changed), sorted(
        k for k in changed if 'lora_' not in k)[:5]
    assert any(k.endswith('lora_B') for k in changed)
    # BatchNorm running statistics are frozen too
    assert not any('running_' in k for k in changed)


def test_loss_terms(gs_model):
    gs_model.train()
    x, samples = batch()
    losses = gs_model.loss(x, samples)
    for key in ('r.loss_cls', 'r.loss_bbox', 'r.loss_iou', 'f.loss_bound',
                'f.loss_bbox', 'f.loss_iou', 'loss_group_lasso', 'f.cls'):
        assert key in losses, key
    beta = gs_model.forget_cfg['beta']
    bound = gs_model.forget_cfg['bound']
    assert losses['f.loss_bound'].item() == pytest.approx(
        beta * max(0.0, bound - losses['f.cls'].item()), rel=1e-5)
    norms = [v for k, v in losses.items() if k.startswith('gn.')]
    assert len(norms) == 6
    alpha = gs_model.group_lasso_cfg['alpha']
    assert losses['loss_group_lasso'].item() == pytest.approx(
        alpha * sum(n.item() for n in norms), rel=1e-4)
    # no aux losses by default (reference), retain-only batch has no
    # forget terms
    assert not any(k.startswith('d0.') for k in losses)
    only_retain = gs_model.loss(*batch(('retain', 'retain')))
    assert not any(k.startswith('f.') for k in only_retain)


def test_prototype_term_when_enabled():
    torch.manual_seed(0)
    model = MODELS.build(model_cfg(prototype_cfg=dict(enable=True)))
    model.init_weights()
    model.train()
    losses = model.loss(*batch())
    assert 'loss_proto' in losses and losses['loss_proto'].item() > 0


def test_merged_model_matches_lora_model_outputs(gs_model):
    from gslora_det.lora import LoRALinear
    torch.manual_seed(3)
    for _, module in gs_model.named_modules():
        if isinstance(module, LoRALinear):
            with torch.no_grad():
                module.lora_B.normal_(std=0.05)
    stock = MODELS.build(Config.fromfile(PRETRAIN_CFG).model)
    stock.load_state_dict(merged_state_dict(gs_model), strict=True)
    gs_model.eval(), stock.eval()
    x, samples = batch()
    with torch.no_grad():
        a = gs_model(x, copy.deepcopy(samples), mode='tensor')
        b = stock(x, copy.deepcopy(samples), mode='tensor')
    for ta, tb in zip(a, b):
        assert torch.allclose(ta, tb, atol=1e-4)


@pytest.mark.parametrize('key,value,match', [
    ('forget_cfg', dict(beta=-0.1), 'beta'),
    ('group_lasso_cfg', dict(alpha=-1e-4), 'alpha'),
    ('lora_cfg', dict(rank=0), 'rank'),
    ('forget_cfg', dict(gamma=1.0), 'unknown key'),
    ('lora_cfg', dict(targets=['neck.nothing']), 'Linear layers are'),
])
def test_bad_settings_fail_at_build(key, value, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(model_cfg(**{key: value}))


def test_non_finite_loss_stops_before_the_update(gs_model):
    from gslora_det.lora import LoRALinear
    module = next(m for _, m in gs_model.named_modules()
                  if isinstance(m, LoRALinear))
    with torch.no_grad():
        module.lora_A.fill_(float('inf'))
        module.lora_B.fill_(1.0)
    gs_model.train()
    with pytest.raises(FloatingPointError, match='non-finite.*not applied'):
        gs_model.loss(*batch())
    # a finite model whose loss overflows is stopped too
    with pytest.raises(FloatingPointError, match='non-finite loss'):
        gs_model._check_finite({'loss_x': torch.tensor(float('nan')),
                                'gn.enc0': torch.tensor(1.0)}, 7)
