"""GSLoRADeformableDETR on the tiny built-in model: LoRA placement, what
trains, the loss, and merging into a stock DeformableDETR."""
import copy
import math

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


def test_loss_terms_match_the_head_by_hand(gs_model):
    """Every weighted term against ``DETRHead.loss_by_feat_single`` on the
    retain and the forget image alone: a negated, unweighted or missing
    term changes a value asserted here."""
    gs_model.train()
    x, samples = batch(('retain', 'forget'))
    losses = gs_model.loss(x, samples)
    cls, box = [t[-1] for t in gs_model.forward_heads(x, samples)[:2]]

    def head(i):
        return [t.item() for t in gs_model.bbox_head.loss_by_feat_single(
            cls[[i]], box[[i]], [samples[i].gt_instances],
            [samples[i].metainfo])]

    (r_cls, r_box, r_iou), (f_cls, f_box, f_iou) = head(0), head(1)
    beta, bound = gs_model.forget_cfg['beta'], gs_model.forget_cfg['bound']
    # preconditions: a dropped weight or a flipped sign shows in the values
    assert 0 < beta < 1 and 0 < f_cls < bound and f_box > 0 and f_iou > 0
    expected = {'r.loss_cls': r_cls, 'r.loss_bbox': r_box,
                'r.loss_iou': r_iou, 'f.cls': f_cls,
                'f.loss_bound': beta * (bound - f_cls),
                'f.loss_bbox': beta * f_box, 'f.loss_iou': beta * f_iou}
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value, rel=1e-5), key
    # what mmengine sums: exactly these terms and the group lasso
    summed = {k for k in losses if 'loss' in k}
    assert summed == {k for k in expected if 'loss' in k} | {
        'loss_group_lasso'}


def _a_bound(module):
    """kaiming_uniform_(A, a): bound = sqrt(6 / ((1 + a²) · fan_in))."""
    return math.sqrt(6 / ((1 + module.init_a_gain ** 2) *
                          module.lora_A.shape[1]))


def _check_fresh_lora(model, a):
    from gslora_det.lora import LoRALinear
    modules = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert len(modules) == 12
    for m in modules:
        assert m.init_a_gain == pytest.approx(a)
        bound, lora_a = _a_bound(m), m.lora_A.detach()
        assert lora_a.abs().max() <= bound * (1 + 1e-6)
        assert lora_a.abs().max() >= 0.95 * bound  # >= 1024 draws
        assert lora_a.std().item() == pytest.approx(bound / math.sqrt(3),
                                                    rel=0.1)
        assert not m.lora_B.any()  # exactly 0: a fresh LoRA is a no-op


def test_task_1_lora_init_gain(gs_model):
    assert gs_model.task_index == 1
    _check_fresh_lora(gs_model, math.sqrt(5))


def test_later_task_gets_a_fresh_smaller_lora_on_a_merged_checkpoint(
        tmp_path):
    """Task 2 loads task 1's merged checkpoint (a stock state dict, no
    ``lora_`` keys), as ``load_from`` does after ``init_weights()``: its
    LoRA is fresh (A kaiming-uniform with a=√50, B = 0) and the model
    computes what the stock model with those weights does."""
    from mmengine.runner import load_checkpoint
    torch.manual_seed(4)
    stock = MODELS.build(Config.fromfile(PRETRAIN_CFG).model)
    stock.init_weights()
    merged = stock.state_dict()
    path = str(tmp_path / 'merged.pth')
    torch.save(dict(state_dict=merged), path)

    cfg = model_cfg(TASK_CFGS[1])
    cfg['task_index'] = 2
    torch.manual_seed(5)
    task2 = MODELS.build(cfg)
    task2.init_weights()
    _check_fresh_lora(task2, math.sqrt(50))
    lora_before = {k: v.clone() for k, v in task2.state_dict().items()
                   if 'lora_' in k}
    load_checkpoint(task2, path, strict=True)
    _check_fresh_lora(task2, math.sqrt(50))
    after = task2.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in lora_before.items())

    task2.eval(), stock.eval()
    x, samples = batch()
    with torch.no_grad():
        a = task2(x, copy.deepcopy(samples), mode='tensor')
        b = stock(x, copy.deepcopy(samples), mode='tensor')
    for ta, tb in zip(a, b):
        assert torch.allclose(ta, tb, atol=1e-5, rtol=1e-5), (
            ta - tb).abs().max()
