"""The baselines' terms (quadratic penalties, DER's distillation, the
importance objective), mixed into the forgetting detectors.

The forget images' terms, GS-LoRA's and the baselines' alike, are in
:mod:`gslora_det.forget_terms`. The host class provides ``method_cfg``,
``forget_cfg``, ``bbox_head``, ``forward_heads()``, ``_head_loss()`` and
``data_preprocessor``.
"""
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.structures import SampleList
from mmengine.dist import get_world_size
from mmengine.structures import InstanceData
from torch import Tensor

from gslora_det.baselines.regularizers import (logit_distillation,
                                               quadratic_penalty)


class BaselineTermsMixin:
    """Quadratic penalties, DER distillation, and the head-loss helper."""

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

    # The forget images' terms (gslora_det/forget_terms.py) call this too.
    def _loss_on(self, cls_scores: Tensor, bbox_preds: Tensor,
                 index: List[int], gts: List[InstanceData],
                 samples: SampleList) -> Tuple[Tensor, Tensor, Tensor]:
        """The head's (cls, bbox, iou) losses of images ``index`` against
        the ground truth ``gts`` (one ``InstanceData`` per image)."""
        return self.bbox_head.loss_by_feat_single(
            cls_scores[index], bbox_preds[index], gts,
            [samples[i].metainfo for i in index])

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

