"""The baselines' loss terms, mixed into the forgetting detectors.

Kept apart from the detector so that the GS-LoRA detector reads as the
method, and so that other DETR-family detectors can reuse the terms. The
host class provides ``method_cfg``, ``forget_cfg``, ``bbox_head``,
``forward_heads()``, ``_head_loss()`` and ``data_preprocessor``.
"""
from typing import Dict, List, Optional

import torch
from mmdet.structures import SampleList
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
        if not index:
            return inputs.new_zeros((), requires_grad=True)
        all_cls, all_box, _ = self.forward_heads(
            inputs[index], [samples[i] for i in index])
        if kind == 'mas':
            return all_cls[-1].pow(2).mean()
        return sum(self._head_loss(all_cls[-1], all_box[-1],
                                   list(range(len(index))),
                                   [samples[i] for i in index]))

    def _background_cls_loss(self, cls_scores: Tensor, bbox_preds: Tensor,
                             index: List[int],
                             samples: SampleList) -> Tensor:
        """Classification loss of images ``index`` with every query's
        target "no object" (the head sums it: no positives to average
        over)."""
        empty = [InstanceData(bboxes=bbox_preds.new_zeros((0, 4)),
                              labels=torch.zeros(0, dtype=torch.long,
                                                 device=bbox_preds.device))
                 for _ in index]
        return self.bbox_head.loss_by_feat_single(
            cls_scores[index], bbox_preds[index], empty,
            [samples[i].metainfo for i in index])[0]

    def _forget_losses(self, cls_scores: Tensor, bbox_preds: Tensor,
                       forget: List[int], samples: SampleList,
                       tag: str) -> Dict[str, Tensor]:
        """The forget images' term of ``method_cfg.forget_loss``."""
        mode = self.method_cfg['forget_loss']
        weight = self.method_cfg['forget_weight']
        weight = self.forget_cfg['beta'] if weight is None else weight
        if mode == 'relabel':  # forgotten objects become background
            return {f'{tag}f.loss_cls': weight * self._background_cls_loss(
                cls_scores, bbox_preds, forget, samples)}
        cls, box, iou = self._head_loss(cls_scores, bbox_preds, forget,
                                        samples)
        out = {f'{tag}f.cls': cls.detach()}
        bg_weight = self.forget_cfg.get('background_weight', 0.0)
        if bg_weight and mode == 'bounded':
            # Every query on forget images towards "no object": the negated
            # loss alone also rewards other classes' scores there, which
            # relabels forgotten objects instead of erasing them. Scaled
            # per forgotten object, like the head's own loss.
            count = sum(len(samples[i].gt_instances) for i in forget)
            out[f'{tag}f.loss_bg'] = bg_weight * self._background_cls_loss(
                cls_scores, bbox_preds, forget, samples) / max(count, 1)
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

