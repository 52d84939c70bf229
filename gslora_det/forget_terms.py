"""GS-LoRA's forget terms: what the forget images of a batch contribute.

One table, as DETR's ``SetCriterion`` has one ``get_loss`` map: each term
is a function of one decoder layer's outputs on the batch's forget images
and returns its named, weighted losses. ``forget_cfg.terms`` lists the
terms a model uses; adding a term means adding one function and one row
of :data:`FORGET_TERMS` (and its weight key to ``DEFAULT_FORGET_CFG``).

=============  =========================================================
term           what it does (keys; weight)
=============  =========================================================
``kept``       the forget images' *retained* objects stay positives and
               every other query, the forgotten objects' included, is
               background: a model retrained without the class sees the
               same targets (``f.r.loss_*``; ``method_cfg.retain_weight``)
``background`` every class score of the queries that *cover* a forgotten
               object goes to 0 (BCE, per forgotten object): erases
               instead of relabelling (``f.loss_bg``;
               ``background_weight`` × multiplier)
``outrank``    the forgotten classes' logits on those queries fall below
               the image's k-th largest logit (k = the head's
               ``max_per_img``): the object leaves the output, so mAP, which
               ranks even low scores, drops too (``f.loss_outrank``;
               ``outrank_weight`` × multiplier)
``bounded``    the reference's ``ReLU(BND − L_cls) + L_bbox + L_iou`` on
               the forgotten objects (``f.loss_bound``, ``f.loss_bbox``,
               ``f.loss_iou``, logs ``f.cls``; ``beta`` × multiplier)
``ascent``     the negated, unbounded detection loss on the forgotten
               objects (``f.loss_ascent``; ``beta`` × multiplier)
``relabel``    the forgotten objects become background, the images are
               ordinary training data (``f.loss_cls`` or ``f.r.loss_*``;
               ``beta`` × multiplier)
=============  =========================================================

The *multiplier* is the forgetting controller's λ
(:mod:`gslora_det.controller`); it is 1 without one. The host detector
provides ``bbox_head``, ``forget_cfg``, ``method_cfg``, ``_loss_on()`` and
``forget_multiplier``.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from mmengine.structures import InstanceData
from torch import Tensor

from gslora_det.losses import bounded_forget_cls_loss


@dataclass
class ForgetBatch:
    """One decoder layer's outputs on a batch, and its forget images.

    Attributes:
        cls_scores (Tensor): (bs, num_queries, C) logits.
        bbox_preds (Tensor): (bs, num_queries, 4) normalised cxcywh.
        forget (list[int]): Indices of the batch's forget images.
        samples (list[DetDataSample]): The batch's samples.
        forgotten (list[InstanceData]): Per forget image, its forgotten
            objects.
        kept (list[InstanceData]): Per forget image, its other objects.
        tag (str): Prefix of the loss keys (decoder layer).
    """
    cls_scores: Tensor
    bbox_preds: Tensor
    forget: List[int]
    samples: SampleList
    forgotten: List[InstanceData]
    kept: List[InstanceData]
    tag: str


def split_forget_gt(forget: Sequence[int], samples: SampleList
                    ) -> Tuple[List[InstanceData], List[InstanceData]]:
    """Each forget image's objects split into (forgotten, kept).

    ``metainfo['forget_labels']`` names the forgotten labels when the split
    keeps retained objects (``forget_keeps_retained``); without it every
    object of a forget image is forgotten (the reference's split).
    """
    forgotten, kept = [], []
    for i in forget:
        gt = samples[i].gt_instances
        labels = samples[i].metainfo.get('forget_labels')
        if labels is None:
            mask = torch.ones_like(gt.labels, dtype=torch.bool)
        else:
            mask = torch.isin(gt.labels, gt.labels.new_tensor(list(labels)))
        forgotten.append(gt[mask])
        kept.append(gt[~mask])
    return forgotten, kept


def keeps_retained(forget: Sequence[int], samples: SampleList) -> bool:
    """Whether the split tagged the forget samples with ``forget_labels``.

    Raises:
        ValueError: only some are tagged (ranks could then disagree on
            which head losses, hence which collectives, run).
    """
    tagged = [samples[i].metainfo.get('forget_labels') is not None
              for i in forget]
    if any(tagged) and not all(tagged):
        raise ValueError('only some forget samples carry forget_labels; the '
                         'split sets it on all of them '
                         '(forget_keeps_retained) or on none')
    return any(tagged)


def covering_queries(model, fb: ForgetBatch) -> Tensor:
    """(n_forget, num_queries) bool: the queries covering a forgotten
    object, i.e. Hungarian-matched to it, or whose box overlaps it with
    IoU >= ``forget_cfg.background_iou`` (the duplicates: mAP ranks even
    low scores, and a duplicate still scoring the class keeps its AP)."""
    cls, box, index = fb.cls_scores, fb.bbox_preds, fb.forget
    with torch.no_grad():
        labels = model.bbox_head.get_targets(
            [cls[i] for i in index], [box[i] for i in index], fb.forgotten,
            [fb.samples[i].metainfo for i in index])[0]
        covers = torch.stack(labels) < model.bbox_head.num_classes
        for k, (i, gt) in enumerate(zip(index, fb.forgotten)):
            if not len(gt):
                continue
            h, w = fb.samples[i].metainfo['img_shape'][:2]
            boxes = bbox_cxcywh_to_xyxy(box[i]) * box.new_tensor(
                [w, h, w, h])
            iou = bbox_overlaps(boxes, gt.bboxes)  # (num_queries, n)
            covers[k] |= iou.max(dim=1).values >= \
                model.forget_cfg['background_iou']
    return covers


def _multiplier(model) -> float:
    return float(getattr(model, 'forget_multiplier', 1.0))


def _beta(model) -> float:
    weight = model.method_cfg['forget_weight']
    return model.forget_cfg['beta'] if weight is None else weight


def term_kept(model, fb: ForgetBatch) -> Dict[str, Tensor]:
    cls, box, iou = model._loss_on(fb.cls_scores, fb.bbox_preds, fb.forget,
                                   fb.kept, fb.samples)
    w = model.method_cfg['retain_weight']
    return {f'{fb.tag}f.r.loss_cls': w * cls,
            f'{fb.tag}f.r.loss_bbox': w * box,
            f'{fb.tag}f.r.loss_iou': w * iou}


def term_background(model, fb: ForgetBatch) -> Dict[str, Tensor]:
    """Plain BCE, not the head's focal loss: focal's ``p^γ`` factor
    vanishes as a score falls towards the residual-detection threshold,
    where this term must keep pushing. Only the covering queries: all
    queries to "no object" would also erase the retained objects a forget
    image shows, and lowering the class everywhere keeps its ranking,
    hence its AP."""
    count = sum(len(g) for g in fb.forgotten)
    if not count:
        return {f'{fb.tag}f.loss_bg': fb.cls_scores.sum() * 0}
    logits = fb.cls_scores[fb.forget][covering_queries(model, fb)]  # (m, C)
    loss = F.binary_cross_entropy_with_logits(
        logits, torch.zeros_like(logits), reduction='sum') / count
    w = model.forget_cfg['background_weight'] * _multiplier(model)
    return {f'{fb.tag}f.loss_bg': w * loss}


def _output_size(model) -> int:
    """How many (query, class) pairs the head outputs per image."""
    test_cfg = getattr(model.bbox_head, 'test_cfg', None) or {}
    return int(test_cfg.get('max_per_img', 100))


def term_outrank(model, fb: ForgetBatch) -> Dict[str, Tensor]:
    """mAP ranks even low scores: a forgotten object scored 0.01 as its
    class is still a true positive if nothing of that class scores higher.
    So the forgotten classes' logits on the queries covering a forgotten
    object are pushed below the image's k-th largest logit (k: the head's
    ``max_per_img``, the pairs it outputs) by ``outrank_margin``: the
    object then leaves the detector's output, as for a model that never
    learnt the class. ``softplus(z − z_k + margin)``, per forgotten object.
    """
    count = sum(len(g) for g in fb.forgotten)
    key = f'{fb.tag}f.loss_outrank'
    if not count:
        return {key: fb.cls_scores.sum() * 0}
    labels = fb.samples[fb.forget[0]].metainfo.get('forget_labels')
    labels = sorted({int(x) for g in fb.forgotten for x in g.labels} |
                    set(int(x) for x in (labels or ())))
    covers = covering_queries(model, fb)  # (n_forget, num_queries)
    k = _output_size(model)
    total = fb.cls_scores.sum() * 0
    for row, i in enumerate(fb.forget):
        logits = fb.cls_scores[i]  # (num_queries, C)
        if not covers[row].any():
            continue
        flat = logits.detach().flatten()
        kth = flat.topk(min(k, flat.numel())).values[-1]
        z = logits[covers[row]][:, labels]  # (m, n_labels)
        total = total + F.softplus(
            z - kth + model.forget_cfg['outrank_margin']).sum()
    w = model.forget_cfg['outrank_weight'] * _multiplier(model)
    return {key: w * total / count}


def term_bounded(model, fb: ForgetBatch) -> Dict[str, Tensor]:
    cls, box, iou = model._loss_on(fb.cls_scores, fb.bbox_preds, fb.forget,
                                   fb.forgotten, fb.samples)
    w = _beta(model) * _multiplier(model)
    return {f'{fb.tag}f.cls': cls.detach(),
            f'{fb.tag}f.loss_bound': w * bounded_forget_cls_loss(
                cls, model.forget_cfg['bound']),
            f'{fb.tag}f.loss_bbox': w * box,
            f'{fb.tag}f.loss_iou': w * iou}


def term_ascent(model, fb: ForgetBatch) -> Dict[str, Tensor]:
    cls, box, iou = model._loss_on(fb.cls_scores, fb.bbox_preds, fb.forget,
                                   fb.forgotten, fb.samples)
    w = _beta(model) * _multiplier(model)
    return {f'{fb.tag}f.cls': cls.detach(),
            f'{fb.tag}f.loss_ascent': -w * (cls + box + iou)}


def term_relabel(model, fb: ForgetBatch) -> Dict[str, Tensor]:
    w = _beta(model) * _multiplier(model)
    if keeps_retained(fb.forget, fb.samples):
        cls, box, iou = model._loss_on(fb.cls_scores, fb.bbox_preds,
                                       fb.forget, fb.kept, fb.samples)
        return {f'{fb.tag}f.r.loss_cls': w * cls,
                f'{fb.tag}f.r.loss_bbox': w * box,
                f'{fb.tag}f.r.loss_iou': w * iou}
    cls = model._loss_on(fb.cls_scores, fb.bbox_preds, fb.forget,
                         [g[:0] for g in fb.forgotten], fb.samples)[0]
    return {f'{fb.tag}f.loss_cls': w * cls}


#: name -> term; ``forget_cfg.terms`` picks from here.
FORGET_TERMS: Dict[str, Callable[..., Dict[str, Tensor]]] = dict(
    kept=term_kept,
    background=term_background,
    outrank=term_outrank,
    bounded=term_bounded,
    ascent=term_ascent,
    relabel=term_relabel,
)


def check_terms(terms: Optional[Sequence[str]]) -> None:
    """Refuse unknown term names and a term list that cannot be right.

    Raises:
        ValueError: naming the term and the valid ones.
    """
    if terms is None:
        return
    unknown = [t for t in terms if t not in FORGET_TERMS]
    if unknown:
        raise ValueError(f'forget_cfg.terms: unknown term(s) {unknown}; '
                         f'valid terms are {sorted(FORGET_TERMS)}')
    if 'kept' in terms and 'relabel' in terms:
        raise ValueError("forget_cfg.terms: 'kept' and 'relabel' both put "
                         'the retained objects of forget images in the '
                         'loss; use one')
    if len(set(terms)) != len(terms):
        raise ValueError(f'forget_cfg.terms lists a term twice: {terms}')


def resolve_terms(model, forget: Sequence[int],
                  samples: SampleList) -> List[str]:
    """The terms of this model: ``forget_cfg.terms`` if set and the method
    uses GS-LoRA's forget loss; else the ones ``method_cfg.forget_loss`` has
    always meant (the reference's bounded loss; a baseline's ascent,
    relabelling or nothing, which ``terms`` does not override, so that
    ``model.method=ewc`` on a default config is still EWC)."""
    terms = model.forget_cfg.get('terms')
    mode = model.method_cfg['forget_loss']
    if terms is not None and mode == 'bounded':
        return list(terms)
    if mode == 'none':
        return []
    if mode == 'relabel':
        return ['relabel']
    kept = ['kept'] if keeps_retained(forget, samples) else []
    if mode == 'ascent':
        return kept + ['ascent']
    bg = ['background'] if model.forget_cfg.get('background_weight') else []
    return kept + ['bounded'] + bg


def forget_losses(model, cls_scores: Tensor, bbox_preds: Tensor,
                  forget: List[int], samples: SampleList,
                  tag: str) -> Dict[str, Tensor]:
    """Every configured term on one decoder layer's outputs.

    Args:
        model: The host detector.
        cls_scores (Tensor): (bs, num_queries, C) of one decoder layer.
        bbox_preds (Tensor): (bs, num_queries, 4) normalised cxcywh.
        forget (list[int]): Indices of the batch's forget images.
        samples (list[DetDataSample]): The batch's samples.
        tag (str): Prefix of the loss keys (decoder layer).

    Returns:
        dict[str, Tensor]: The terms' losses (and logged values).
    """
    # Every head-loss call all-reduces (``reduce_mean`` in mmdet's
    # ``loss_by_feat_single``), so which terms run must not depend on a
    # rank's batch content: the list comes from the config (and from the
    # split's tags, which every forget sample carries or none does).
    keeps_retained(forget, samples)
    gone, kept = split_forget_gt(forget, samples)
    fb = ForgetBatch(cls_scores, bbox_preds, list(forget), samples, gone,
                     kept, tag)
    out: Dict[str, Tensor] = {}
    for name in resolve_terms(model, forget, samples):
        out.update(FORGET_TERMS[name](model, fb))
    return out
