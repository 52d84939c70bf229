"""The baselines' loss terms, mixed into the forgetting detectors.

Kept apart from the detector so that the GS-LoRA detector reads as the
method, and so that other DETR-family detectors can reuse the terms. The
host class provides ``method_cfg``, ``forget_cfg``, ``bbox_head``,
``forward_heads()``, ``_head_loss()`` and ``data_preprocessor``.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from mmengine.dist import get_world_size
from mmengine.structures import InstanceData
from torch import Tensor

from gslora_det.baselines.regularizers import (logit_distillation,
                                               quadratic_penalty)
from gslora_det.losses import bounded_forget_cls_loss


class BaselineTermsMixin:
    """Forget-loss variants, quadratic penalties and DER distillation."""

    # Set by BaselineStateHook; kept out of the state dict so that merged
    # checkpoints stay plain detector checkpoints.
    reg_anchors: Optional[Dict[str, Tensor]] = None
    reg_importance: Optional[Dict[str, Tensor]] = None

    def set_teacher(self, teacher: Optional[torch.nn.Module]) -> None:
        """Hold DER's frozen teacher without registering it as a submodule
        (it must not be trained, saved or wrapped by DDP)."""
        self.__dict__['teacher'] = teacher

    def trainable_parameters(self) -> Dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def importance_objective(self, kind: str, data: dict) -> Tensor:
        """EWC's detection loss or MAS's ``mean(logits²)`` on the retain
        images of a (raw) training batch."""
        data = self.data_preprocessor(data, True)
        inputs, samples = data['inputs'], data['data_samples']
        index = [i for i, s in enumerate(samples)
                 if s.metainfo.get('forget_role', 'retain') == 'retain']
        if kind != 'mas':  # EWC's head loss all-reduces
            self._check_roles(index, [], need_retain=True)
        if not index:
            return inputs.new_zeros((), requires_grad=True)
        all_cls, all_box, _ = self.forward_heads(
            inputs[index], [samples[i] for i in index])
        if kind == 'mas':
            return all_cls[-1].pow(2).mean()
        return sum(self._head_loss(all_cls[-1], all_box[-1],
                                   list(range(len(index))),
                                   [samples[i] for i in index]))

    def _split_forget_gt(self, forget: List[int], samples: SampleList
                         ) -> Tuple[List[InstanceData], List[InstanceData]]:
        """Each forget image's objects split into (forgotten, kept).

        A forget image's annotations hold only forgotten objects unless
        the split keeps retained objects too
        (``replay.forget_keeps_retained``); then ``metainfo['forget_labels']``
        names the forgotten labels and every other object is kept as a
        positive.
        """
        forgotten, kept = [], []
        for i in forget:
            gt = samples[i].gt_instances
            labels = samples[i].metainfo.get('forget_labels')
            if labels is None:  # the reference's split: all are forgotten
                mask = torch.ones_like(gt.labels, dtype=torch.bool)
            else:
                mask = torch.isin(gt.labels, gt.labels.new_tensor(
                    list(labels)))
            forgotten.append(gt[mask])
            kept.append(gt[~mask])
        return forgotten, kept

    def _check_roles(self, retain: List[int], forget: List[int],
                     need_retain: bool, need_forget: bool = False) -> None:
        """Under DDP, refuse a batch that lacks a role whose head loss the
        configuration computes.

        Each head-loss call all-reduces (mmdet's ``loss_by_feat_single``
        calls ``reduce_mean``); a rank skipping one would leave the others
        waiting for ever, so fail loudly instead. ``RetainForgetBatchSampler``
        puts both roles in every batch of every rank.

        Raises:
            RuntimeError: a needed role is missing in a multi-process run.
        """
        missing = [role for role, need, have in (
            ('retain', need_retain, retain), ('forget', need_forget, forget))
            if need and not have]
        if missing and get_world_size() > 1:
            raise RuntimeError(
                f'this batch has no {" or ".join(missing)} image: with '
                'several processes every batch needs both roles (use '
                'RetainForgetBatchSampler), or the ranks would run '
                'different numbers of collectives and hang')

    @staticmethod
    def _keeps_retained(forget: List[int], samples: SampleList) -> bool:
        """Whether the forget images keep retained objects as positives:
        the split then sets ``metainfo['forget_labels']`` on every forget
        sample (``replay.forget_keeps_retained``), on every rank alike.

        Raises:
            ValueError: only some forget samples carry ``forget_labels``
                (ranks could then disagree on the collectives).
        """
        tagged = [samples[i].metainfo.get('forget_labels') is not None
                  for i in forget]
        if any(tagged) and not all(tagged):
            raise ValueError(
                'only some forget samples carry forget_labels; the split '
                'sets it on all of them (replay.forget_keeps_retained) or '
                'on none')
        return any(tagged)

    def _loss_on(self, cls_scores: Tensor, bbox_preds: Tensor,
                 index: List[int], gts: List[InstanceData],
                 samples: SampleList) -> Tuple[Tensor, Tensor, Tensor]:
        """The head's (cls, bbox, iou) losses of images ``index`` against
        the ground truth ``gts`` (one ``InstanceData`` per image)."""
        return self.bbox_head.loss_by_feat_single(
            cls_scores[index], bbox_preds[index], gts,
            [samples[i].metainfo for i in index])

    def _background_loss(self, cls_scores: Tensor, bbox_preds: Tensor,
                         index: List[int], gts: List[InstanceData],
                         samples: SampleList) -> Tensor:
        """Erasing, not relabelling: on forget images ``index``, every class
        score of the queries that cover a forgotten object of ``gts`` goes
        to 0. Summed, per forgotten object.

        A query covers an object when it is Hungarian-matched to it or its
        box overlaps it with IoU >= ``forget_cfg.background_iou`` (the
        duplicates: mAP ranks even low scores, and a duplicate that still
        scores the forgotten class there keeps its AP). Only those queries:
        every query to "no object" would also erase the retained objects a
        forget image shows, and lowering the forgotten class everywhere
        keeps its ranking, hence its AP. Plain BCE, not the head's focal
        loss: focal's ``p^γ`` factor vanishes as a score falls towards the
        residual-detection threshold, where this term must keep pushing.
        """
        count = sum(len(g) for g in gts)
        if not count:
            return cls_scores.sum() * 0
        with torch.no_grad():
            labels = self.bbox_head.get_targets(
                [cls_scores[i] for i in index],
                [bbox_preds[i] for i in index], gts,
                [samples[i].metainfo for i in index])[0]
            covers = torch.stack(labels) < self.bbox_head.num_classes
            for k, (i, gt) in enumerate(zip(index, gts)):
                if not len(gt):
                    continue
                h, w = samples[i].metainfo['img_shape'][:2]
                boxes = bbox_cxcywh_to_xyxy(bbox_preds[i]) * \
                    bbox_preds.new_tensor([w, h, w, h])
                iou = bbox_overlaps(boxes, gt.bboxes)  # (num_queries, n)
                covers[k] |= iou.max(dim=1).values >= \
                    self.forget_cfg['background_iou']
        logits = cls_scores[index][covers]  # (m, C)
        return F.binary_cross_entropy_with_logits(
            logits, torch.zeros_like(logits), reduction='sum') / count

    def _forget_losses(self, cls_scores: Tensor, bbox_preds: Tensor,
                       forget: List[int], samples: SampleList,
                       tag: str) -> Dict[str, Tensor]:
        """The forget images' term of ``method_cfg.forget_loss``.

        Args:
            cls_scores (Tensor): (bs, num_queries, C) of one decoder layer.
            bbox_preds (Tensor): (bs, num_queries, 4) normalised cxcywh.
            forget (list[int]): Indices of the batch's forget images.
            samples (list[DetDataSample]): The batch's samples.
            tag (str): Prefix of the loss keys (decoder layer).
        """
        mode = self.method_cfg['forget_loss']
        weight = self.method_cfg['forget_weight']
        weight = self.forget_cfg['beta'] if weight is None else weight
        gone, kept = self._split_forget_gt(forget, samples)
        out = {}
        # Every head-loss call all-reduces (``reduce_mean`` in
        # ``loss_by_feat_single``), so whether it runs must not depend on
        # this rank's batch content: keep retained objects iff the split
        # is configured to (it tags every forget sample), not iff some
        # local image happens to show one.
        if self._keeps_retained(forget, samples):
            # Retained objects on forget images stay positives; every other
            # query is background, the forgotten objects' too (what
            # "relabel" means). A forget image without retained objects is
            # all background here: the same target its queries get in a
            # batch whose other forget images do show retained objects.
            cls, box, iou = self._loss_on(cls_scores, bbox_preds, forget,
                                          kept, samples)
            w = self.method_cfg['retain_weight'] if mode != 'relabel' else \
                weight
            out.update({f'{tag}f.r.loss_cls': w * cls,
                        f'{tag}f.r.loss_bbox': w * box,
                        f'{tag}f.r.loss_iou': w * iou})
            if mode == 'relabel':
                return out
        elif mode == 'relabel':  # all objects are forgotten: background
            out[f'{tag}f.loss_cls'] = weight * self._loss_on(
                cls_scores, bbox_preds, forget, [g[:0] for g in gone],
                samples)[0]
            return out
        cls, box, iou = self._loss_on(cls_scores, bbox_preds, forget, gone,
                                      samples)
        out[f'{tag}f.cls'] = cls.detach()
        bg_weight = self.forget_cfg.get('background_weight', 0.0)
        if bg_weight and mode == 'bounded':
            # The negated loss alone also rewards other classes' scores on
            # the forgotten objects (relabelling instead of erasing).
            out[f'{tag}f.loss_bg'] = bg_weight * self._background_loss(
                cls_scores, bbox_preds, forget, gone, samples)
        if mode == 'ascent':  # unbounded: nothing stops it
            out[f'{tag}f.loss_ascent'] = -weight * (cls + box + iou)
        else:
            out[f'{tag}f.loss_bound'] = weight * bounded_forget_cls_loss(
                cls, self.forget_cfg['bound'])
            out[f'{tag}f.loss_bbox'] = weight * box
            out[f'{tag}f.loss_iou'] = weight * iou
        return out

    def _baseline_terms(self, batch_inputs: Tensor, samples: SampleList,
                        cls_scores: Tensor,
                        retain: List[int]) -> Dict[str, Tensor]:
        """The quadratic penalty (L2/EWC/MAS) and DER's distillation."""
        mc, out = self.method_cfg, {}
        if mc['regularizer']:
            if self.reg_importance is None:
                raise RuntimeError(
                    f'method {self.method!r} needs the importance of the '
                    'weights before training: add '
                    "dict(type='BaselineStateHook') to custom_hooks")
            out['loss_reg'] = mc['reg_lambda'] * quadratic_penalty(
                self.trainable_parameters(), self.reg_anchors,
                self.reg_importance)
        if mc['distill_weight'] > 0 and retain:
            if self.teacher is None:
                raise RuntimeError(
                    f'method {self.method!r} distils from the input model: '
                    "add dict(type='BaselineStateHook') to custom_hooks")
            with torch.no_grad():
                teacher_cls = self.teacher.forward_heads(
                    batch_inputs[retain], [samples[i] for i in retain])[0]
            out['loss_distill'] = mc['distill_weight'] * logit_distillation(
                cls_scores[retain], teacher_cls[-1])
        return out

