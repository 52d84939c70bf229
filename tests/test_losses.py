"""Signs and bounds of the forgetting losses; the detector's loss terms
(weights, signs, and the collectives ``loss()`` runs under DDP)."""
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

import gslora_det  # noqa: F401
from gslora_det.losses import (bounded_forget_cls_loss, prototype_kl,
                               prototype_loss)
from test_detector import batch, model_cfg

register_all_modules()


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


# -- collectives inside loss(): the same count whatever the batch holds ----
def _composed(kind, tagged):
    """A retain and a forget image, objects of labels 2 and 5 on each.
    ``tagged``: the split keeps retained objects, so every forget sample
    names its forgotten labels: 2 ('kept': label 5 stays a positive) or
    both ('none_kept'). 'sparse': one object on the forget image, none on
    the retain image."""
    x, samples = batch(('retain', 'forget'))
    if kind == 'sparse':
        samples[0].gt_instances = samples[0].gt_instances[:0]
        samples[1].gt_instances = samples[1].gt_instances[:1]
    if tagged:
        samples[1].set_metainfo(dict(
            forget_labels=(2, ) if kind == 'kept' else (2, 5)))
    return x, samples


@pytest.fixture(scope='module')
def gs():
    """One tiny GS-LoRA model; tests switch its ``method_cfg``."""
    torch.manual_seed(0)
    model = MODELS.build(model_cfg())
    model.init_weights()
    return model.train()


def _count_collectives(monkeypatch, model):
    """{(tagged, kind): reduce_mean calls of one ``loss()``}, counted with
    a wrapper around the reduce_mean DETRHead.loss_by_feat_single calls."""
    import mmdet.models.dense_heads.detr_head as detr_head
    calls = []

    def counting(tensor):
        calls.append(1)
        return tensor  # what reduce_mean does in a single process

    monkeypatch.setattr(detr_head, 'reduce_mean', counting)
    counts = {}
    for tagged, kind in ((True, 'kept'), (True, 'none_kept'),
                         (False, 'kept'), (False, 'sparse')):
        calls.clear()
        with torch.no_grad():
            model.loss(*_composed(kind, tagged))
        counts[tagged, kind] = len(calls)
    return counts


def _same_per_configuration(counts):
    for tagged in (True, False):
        per_kind = {k: n for (t, k), n in counts.items() if t == tagged}
        assert len(set(per_kind.values())) == 1, (tagged, per_kind)
        assert per_kind['kept'] > 0  # the wrapper sits where the head looks


@pytest.mark.parametrize('forget_loss', ['bounded', 'relabel', 'ascent'])
def test_loss_runs_the_same_collectives_whatever_the_batch_holds(
        monkeypatch, gs, forget_loss):
    """Every head-loss call all-reduces (``reduce_mean``); ranks whose
    batches differ in content (a forget image with or without retained
    objects, fewer objects) must run the same number, or DDP deadlocks.
    The forget loss (what the baselines change in ``loss()``) is switched
    on one model: building one per method would take seconds each."""
    monkeypatch.setattr(gs, 'method_cfg',
                        dict(gs.method_cfg, forget_loss=forget_loss))
    # the optional terms too (the background and prototype terms match)
    monkeypatch.setattr(gs, 'forget_cfg', dict(
        gs.forget_cfg, background_weight=1.0, use_aux_loss=True))
    monkeypatch.setattr(gs, 'prototype_cfg',
                        dict(gs.prototype_cfg, enable=True))
    _same_per_configuration(_count_collectives(monkeypatch, gs))


def test_dino_runs_the_same_collectives_whatever_the_batch_holds(
        monkeypatch):
    """DINO adds the encoder proposal loss on the retain images."""
    from mmengine.config import Config
    from conftest import CONFIGS
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(
        f'{CONFIGS}/shapes/gslora_dino_r18-tiny_task1_shapes.py').model)
    model.init_weights()
    counts = _count_collectives(monkeypatch, model.train())
    _same_per_configuration(counts)
    # 2 per head loss: retain, encoder on retain, kept and forgotten
    assert counts[True, 'kept'] == 2 * 4


def test_partly_tagged_forget_samples_are_refused(gs):
    x, samples = batch(('retain', 'forget', 'forget'))
    samples[1].set_metainfo(dict(forget_labels=(2, )))
    with pytest.raises(ValueError, match='only some forget samples'):
        with torch.no_grad():
            gs.loss(x, samples)


def test_ddp_batch_without_a_role_fails_instead_of_hanging(monkeypatch, gs):
    import gslora_det.baselines.terms as terms
    model = gs
    x, samples = batch(('retain', 'retain'))
    with torch.no_grad():
        model.loss(x, samples)  # one process: any composition is fine
    monkeypatch.setattr(terms, 'get_world_size', lambda: 2)
    with pytest.raises(RuntimeError, match='no forget image'):
        model.loss(x, samples)
    with pytest.raises(RuntimeError, match='no retain image'):
        model.loss(*batch(('forget', 'forget')))
    with pytest.raises(RuntimeError, match='no retain image'):
        model.importance_objective('ewc', dict(
            inputs=[torch.zeros(3, 128, 128)],
            data_samples=batch(('forget', ))[1]))


@pytest.mark.parametrize('forget_loss', ['relabel', 'ascent'])
def test_forget_weight_and_sign_of_the_baseline_terms(monkeypatch, gs,
                                                      forget_loss):
    """Relabel: ``w · L_cls`` with every query of the forget image as
    background; ascent: ``-w · (L_cls + L_bbox + L_iou)`` on its objects.
    ``w = 0.4``: a dropped weight or sign shows."""
    monkeypatch.setattr(gs, 'method_cfg', dict(
        gs.method_cfg, forget_loss=forget_loss, forget_weight=0.4))
    x, samples = batch(('retain', 'forget'))
    with torch.no_grad():
        losses = gs.loss(x, samples)
        cls, box = [t[-1] for t in gs.forward_heads(x, samples)[:2]]
        gt = samples[1].gt_instances
        head = gs.bbox_head.loss_by_feat_single(
            cls[[1]], box[[1]], [gt[:0] if forget_loss == 'relabel' else gt],
            [samples[1].metainfo])
    if forget_loss == 'relabel':
        key, expected = 'f.loss_cls', 0.4 * head[0].item()
    else:
        key, expected = 'f.loss_ascent', -0.4 * sum(t.item() for t in head)
    assert expected != 0
    assert losses[key].item() == pytest.approx(expected, rel=1e-5)
    assert not any(k.startswith('f.') and 'loss' in k and k != key
                   for k in losses)


# ---------------------------------------------------------------------------
# gslora_det.losses against the reference's formulas (GS-LoRA object-det
# branch: models/deformable_detr.py get_prototype_loss, engine.py
# train_one_epoch_forget_cls). Loss terms of the detector go above.
# ---------------------------------------------------------------------------
def test_prototype_kl_mean_is_the_reference_batchmean_kl_div():
    # reference: F.kl_div(log_softmax(f), log_softmax(p),
    #                     reduction='batchmean', log_target=True)
    gen = torch.Generator().manual_seed(0)
    p, f = torch.randn(5, 16, generator=gen), torch.randn(5, 16, generator=gen)
    ref = torch.nn.functional.kl_div(
        torch.log_softmax(f, 1), torch.log_softmax(p, 1),
        reduction='batchmean', log_target=True)
    assert prototype_kl(p, f).mean().item() == pytest.approx(ref.item())


def test_prototype_bound_applies_to_the_batch_mean_kl():
    # Hand computation where the two readings differ: KLs 2 and 30, BND 18.
    # Reference: ReLU(18 - (2 + 30) / 2) = ReLU(2) = 2, times w_f = 0.5 -> 1.
    # Mean of per-query ReLUs would be (16 + 0) / 2 = 8 -> 4.
    kl = torch.tensor([2.0, 30.0], requires_grad=True)
    loss = prototype_loss(kl, kl.new_zeros(0), bound=18.0,
                          weight_forget=0.5, weight_retain=0.0)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    # below the bound every query gets the same push, the far one too
    assert kl.grad.tolist() == pytest.approx([-0.25, -0.25])

    # batch mean past the bound: no gradient, though one query is close
    kl = torch.tensor([2.0, 40.0], requires_grad=True)
    loss = prototype_loss(kl, kl.new_zeros(0), 18.0, 0.5, 0.0)
    assert loss.item() == 0.0
    loss.backward()
    assert kl.grad.tolist() == [0.0, 0.0]


def test_prototype_loss_adds_the_weighted_retain_mean():
    kl_f, kl_r = torch.tensor([4.0, 8.0]), torch.tensor([1.0, 2.0, 6.0])
    loss = prototype_loss(kl_f, kl_r, bound=18.0, weight_forget=0.005,
                          weight_retain=0.1)
    assert loss.item() == pytest.approx(0.005 * (18 - 6) + 0.1 * 3)
    # no matched query at all: exactly 0
    empty = torch.zeros(0)
    assert prototype_loss(empty, empty, 18.0, 0.005, 0.1).item() == 0.0
