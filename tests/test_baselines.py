"""Baselines: presets, what each one trains, the penalties' importance
estimates against hand-computed values, and real training runs."""
import copy
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

import gslora_det  # noqa: F401
from conftest import TASK_CFGS, TINY_TASK, run_tool
from gslora_det.baselines.methods import METHOD_PRESETS, resolve_method_cfg
from gslora_det.baselines.regularizers import (estimate_importance,
                                               logit_distillation,
                                               quadratic_penalty)
from gslora_det.inject import is_lora_param
from test_detector import batch, model_cfg

register_all_modules()


# -- presets -------------------------------------------------------------
def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match='valid methods are .*ewc'):
        resolve_method_cfg('ewk')
    with pytest.raises(ValueError, match='unknown key.*lamda'):
        resolve_method_cfg('ewc', dict(lamda=1))
    with pytest.raises(ValueError, match='forget_loss must be one of'):
        resolve_method_cfg('gslora', dict(forget_loss='negate'))
    with pytest.raises(ValueError, match='needs use_lora'):
        resolve_method_cfg('rehearsal_ft', dict(group_lasso=True))


def test_reference_constants():
    assert resolve_method_cfg('l2')['reg_lambda'] == 0.01
    assert resolve_method_cfg('ewc')['reg_lambda'] == 10.0
    assert resolve_method_cfg('mas')['reg_lambda'] == 0.1
    der = resolve_method_cfg('derpp')
    assert (der['distill_weight'], der['retain_weight']) == (0.001, 0.1)
    # overrides win over the preset
    assert resolve_method_cfg('ewc', dict(reg_lambda=3))['reg_lambda'] == 3


# -- importance, penalty, distillation on a toy model ---------------------
def toy():
    layer = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0]]))
    return layer


XS = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]])]


def test_ewc_importance_is_mean_squared_gradient():
    # L(x) = (w·x)²  =>  dL/dw = 2 (w·x) x
    layer = toy()
    omega = estimate_importance(dict(weight=layer.weight), 'ewc', XS,
                                lambda x: layer(x).pow(2).sum())
    # x1: w·x = -1.5 -> grad (-3, -6); x2: w·x = 2.5 -> grad (15, -5)
    expected = torch.tensor([[(9 + 225) / 2, (36 + 25) / 2]])
    assert torch.allclose(omega['weight'], expected)


def test_mas_importance_is_mean_abs_gradient_of_squared_output():
    layer = toy()
    omega = estimate_importance(dict(weight=layer.weight), 'mas', XS,
                                lambda x: layer(x).pow(2).mean())
    expected = torch.tensor([[(3 + 15) / 2, (6 + 5) / 2]])
    assert torch.allclose(omega['weight'], expected)


def test_l2_importance_is_one_and_penalty_by_hand():
    layer = toy()
    omega = estimate_importance(dict(weight=layer.weight), 'l2', [], None)
    assert torch.equal(omega['weight'], torch.ones(1, 2))
    anchor = dict(weight=torch.tensor([[0.0, 0.0]]))
    omega = dict(weight=torch.tensor([[2.0, 3.0]]))
    # 2·0.25 + 3·1
    assert quadratic_penalty(dict(weight=layer.weight), anchor,
                             omega).item() == pytest.approx(3.5)
    s, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    assert logit_distillation(s, t).item() == pytest.approx(5.0)


def test_importance_needs_data():
    layer = toy()
    with pytest.raises(ValueError, match='at least one batch'):
        estimate_importance(dict(weight=layer.weight), 'ewc', [],
                            lambda x: layer(x).sum())


# -- what each method trains ---------------------------------------------
def build(method):
    torch.manual_seed(0)
    model = MODELS.build({**model_cfg(), 'method': method})
    model.init_weights()
    model.train()
    if model.method_cfg['regularizer']:
        params = model.trainable_parameters()
        model.reg_anchors = {n: p.detach().clone() for n, p in params.items()}
        model.reg_importance = {n: torch.ones_like(p)
                                for n, p in params.items()}
    if model.method_cfg['distill_weight']:
        model.set_teacher(copy.deepcopy(model).requires_grad_(False).eval())
    return model


def step(model, iters=2):
    opt = torch.optim.AdamW([p for p in model.parameters()
                             if p.requires_grad], lr=1e-3)
    for _ in range(iters):
        losses = model.loss(*batch())
        total = sum(v for k, v in losses.items() if 'loss' in k)
        opt.zero_grad()
        total.backward()
        opt.step()
    return losses


@pytest.mark.parametrize('method', sorted(METHOD_PRESETS))
def test_each_method_changes_only_what_it_should(method):
    model = build(method)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = step(model)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    mc = model.method_cfg
    assert changed, f'{method} changed nothing'
    # BatchNorm statistics are frozen for every method
    assert not any(k.endswith(('running_mean', 'running_var'))
                   for k in changed)
    if mc['use_lora']:
        assert changed == {k for k in before if is_lora_param(k)}
        assert 'loss_group_lasso' in losses
    else:
        assert not any(is_lora_param(k) for k in before)
        assert any(k.startswith('backbone.') for k in changed)
        assert any(k.startswith('encoder.') for k in changed)
        head_changed = any(k.startswith('bbox_head.') for k in changed)
        assert head_changed == (not mc['frozen'])
    expected = dict(bounded='f.loss_bound', ascent='f.loss_ascent',
                    relabel='f.loss_cls')
    if mc['forget_loss'] in expected:
        assert expected[mc['forget_loss']] in losses
    else:
        assert not any(k.startswith('f.') for k in losses)
    assert ('loss_reg' in losses) == bool(mc['regularizer'])
    assert ('loss_distill' in losses) == (mc['distill_weight'] > 0)


def test_rehearsal_ignores_forget_images():
    model = build('rehearsal_ft')
    x, samples = batch(('retain', 'forget'))
    full = model.loss(x, samples)
    only = model.loss(x[:1], samples[:1])
    for key in full:
        assert torch.allclose(full[key], only[key]), key


def test_penalty_needs_the_state_hook():
    torch.manual_seed(0)
    model = MODELS.build({**model_cfg(), 'method': 'ewc'})
    # Without init_weights some parameters hold uninitialised memory,
    # which can be NaN (the loss then stops earlier, on non-finite outputs).
    model.init_weights()
    with pytest.raises(RuntimeError, match='BaselineStateHook'):
        model.loss(*batch())


# -- real runs through tools/train.py --------------------------------------
@pytest.mark.parametrize('method', ['ewc'])
def test_baseline_task_runs_and_checkpoints_its_state(
        workspace, base_checkpoint, method):
    from gslora_det.checkpoint import load_checkpoint_safely
    work = osp.join(str(workspace), 'work_dirs', f'baseline_{method}')
    run_tool('train.py', TASK_CFGS[0], '--work-dir', work, '--cfg-options',
             *TINY_TASK, f'load_from={base_checkpoint}',
             f'model.method={method}',
             'model.method_cfg.importance_batches=2', cwd=workspace)
    with open(osp.join(work, 'forget_report.json')) as f:
        report = json.load(f)
    assert report['method'] == method
    assert report['trainable_params'] > 10**6  # full fine-tuning
    with open(osp.join(work, 'train_cost.json')) as f:
        cost = json.load(f)
    assert cost['activation_bytes'] > 0
    assert cost['grad_bytes'] == 4 * cost['trainable_params']
    # the input model's state travels with checkpoints, for resume
    ckpt = load_checkpoint_safely(osp.join(work, 'iter_4.pth'))
    state = ckpt['gslora_baseline_state']
    base = load_checkpoint_safely(base_checkpoint)['state_dict']
    key = 'encoder.layers.0.ffn.layers.1.weight'
    assert torch.equal(state['input_state'][key], base[key])
    assert ('importance' in state) == (method == 'ewc')
    merged = load_checkpoint_safely(osp.join(work, 'merged.pth'))
    assert not torch.equal(merged['state_dict'][key], base[key])
    assert not any(is_lora_param(k) for k in merged['state_dict'])
    # verify.py: hashes hold; the adapter check does not apply to full FT
    proc = run_tool('verify.py', osp.join(work, 'merged.pth'),
                    osp.join(work, 'manifest.json'), '--skip-eval',
                    cwd=workspace)
    assert 'trains the weights directly' in proc.stdout


def _forget_with_kept_object(x, samples, forget_labels=(2,)):
    """The batch's forget image (labels 2 and 5) with label 5 retained."""
    samples[1].set_metainfo(dict(forget_labels=forget_labels))
    return x, samples


def test_background_term_erases_the_queries_covering_forgotten_objects():
    from torchvision.ops import box_convert, box_iou
    torch.manual_seed(0)
    cfg = model_cfg()
    cfg['forget_cfg'] = {**cfg['forget_cfg'], 'background_weight': 2.0,
                         'background_iou': 0.1}
    model = MODELS.build(cfg)
    model.init_weights()
    x, samples = _forget_with_kept_object(*batch(('retain', 'forget')))
    losses = model.loss(x, samples)
    cls, box = [t[-1] for t in model.forward_heads(x, samples)[:2]]
    gt = samples[1].gt_instances
    gone = gt[gt.labels == 2]
    labels = model.bbox_head.get_targets(
        [cls[1]], [box[1]], [gone], [samples[1].metainfo])[0][0]
    matched = labels < model.bbox_head.num_classes
    assert int(matched.sum()) == 1  # one query per forgotten object
    pixels = box_convert(box[1].detach(), 'cxcywh', 'xyxy') * 128
    overlapping = box_iou(pixels, gone.bboxes)[:, 0] >= 0.1
    covers = matched | overlapping
    assert 1 < int(covers.sum()) < 50  # duplicates too, not every query
    # by hand: -log(1 - sigmoid(z)) over every class of those queries
    by_hand = torch.log1p(cls[1][covers].exp()).sum()
    assert losses['f.loss_bg'].item() == pytest.approx(
        2.0 * by_hand.item(), rel=1e-5)  # one forgotten object
    off = MODELS.build(model_cfg())
    off.init_weights()  # uninitialised parameters may hold NaN
    assert 'f.loss_bg' not in off.loss(x, samples)


def test_forget_images_keep_retained_objects_as_positives():
    torch.manual_seed(0)
    model = MODELS.build(model_cfg())
    model.init_weights()
    x, samples = _forget_with_kept_object(*batch(('retain', 'forget')))
    losses = model.loss(x, samples)
    cls, box = [t[-1] for t in model.forward_heads(x, samples)[:2]]
    gt = samples[1].gt_instances

    def head(gt_subset):
        return model.bbox_head.loss_by_feat_single(
            cls[[1]], box[[1]], [gt_subset], [samples[1].metainfo])

    gone, kept = head(gt[gt.labels == 2]), head(gt[gt.labels == 5])
    # the negated term sees the forgotten object only ...
    assert losses['f.cls'].item() == pytest.approx(gone[0].item(), rel=1e-5)
    # ... and the retained one is an ordinary positive
    assert losses['f.r.loss_cls'].item() == pytest.approx(kept[0].item(),
                                                          rel=1e-5)
    assert losses['f.r.loss_bbox'].item() == pytest.approx(
        kept[1].item(), rel=1e-5)
    # without forget_labels every object of a forget image is forgotten
    x, plain = batch(('retain', 'forget'))
    assert not any(k.startswith('f.r.') for k in model.loss(x, plain))


def test_relabel_keeps_retained_objects_on_forget_images():
    torch.manual_seed(0)
    model = build('l2')
    x, samples = _forget_with_kept_object(*batch(('retain', 'forget')))
    losses = model.loss(x, samples)
    cls, box = [t[-1] for t in model.forward_heads(x, samples)[:2]]
    gt = samples[1].gt_instances
    kept = model.bbox_head.loss_by_feat_single(
        cls[[1]], box[[1]], [gt[gt.labels == 5]], [samples[1].metainfo])
    weight = model.method_cfg['forget_weight']
    weight = model.forget_cfg['beta'] if weight is None else weight
    assert losses['f.r.loss_cls'].item() == pytest.approx(
        weight * kept[0].item(), rel=1e-5)
    assert 'f.loss_cls' not in losses


def test_explicit_terms_outrank_by_hand_and_baselines_keep_their_own():
    """`forget_cfg.terms` replaces GS-LoRA's bounded loss; `outrank` pushes
    the forgotten class's logits on the covering queries below the image's
    k-th largest logit (by hand here); a baseline keeps its own loss."""
    torch.manual_seed(0)
    cfg = model_cfg()
    cfg['forget_cfg'] = {**cfg['forget_cfg'], 'background_iou': 0.1,
                         'terms': ('kept', 'outrank'), 'outrank_margin': 0.5}
    model = MODELS.build(cfg)
    model.init_weights()
    x, samples = _forget_with_kept_object(*batch(('retain', 'forget')))
    losses = model.loss(x, samples)
    assert 'f.loss_bound' not in losses and 'f.loss_bg' not in losses
    assert 'f.r.loss_cls' in losses
    cls, box = [t[-1] for t in model.forward_heads(x, samples)[:2]]
    gt = samples[1].gt_instances
    gone = gt[gt.labels == 2]
    from torchvision.ops import box_convert, box_iou
    labels = model.bbox_head.get_targets(
        [cls[1]], [box[1]], [gone], [samples[1].metainfo])[0][0]
    pixels = box_convert(box[1].detach(), 'cxcywh', 'xyxy') * 128
    covers = (labels < model.bbox_head.num_classes) | (
        box_iou(pixels, gone.bboxes)[:, 0] >= 0.1)
    k = model.bbox_head.test_cfg.get('max_per_img', 100)
    kth = cls[1].flatten().topk(min(k, cls[1].numel())).values[-1]
    by_hand = torch.nn.functional.softplus(
        cls[1][covers][:, 2] - kth + 0.5).sum()
    assert losses['f.loss_outrank'].item() == pytest.approx(by_hand.item(),
                                                            rel=1e-5)
    model.forget_multiplier = 3.0  # the controller's λ scales it
    assert model.loss(x, samples)['f.loss_outrank'].item() == pytest.approx(
        3 * by_hand.item(), rel=1e-5)
    cfg = model_cfg()  # (mmdet's build edits bbox_head in place)
    cfg['forget_cfg'] = {**cfg['forget_cfg'], 'terms': ('kept', 'outrank')}
    ga = MODELS.build(dict(cfg, method='gradient_ascent'))
    ga.init_weights()
    assert 'f.loss_ascent' in ga.loss(x, samples)
