"""GS-LoRA continual forgetting for any mmdet DETR-family detector.

:class:`GSLoRAForgettingMixin` is mixed in front of an mmdet detector class
(``class GSLoRADINO(GSLoRAForgettingMixin, DINO)``). What it changes:

* at build time, LoRA is put on the FFN linears and everything else is
  frozen (the Runner wraps the model in DDP and builds the optimiser before
  any hook runs, so this cannot be a hook);
* ``loss()`` splits the batch by each sample's ``forget_role`` tag and
  returns ``L_det(retain) + β·L_forget(forget) + α·L_structure``
  (+ the optional GS-LoRA++ prototype term); ``method`` switches the same
  model to a baseline (:mod:`gslora_det.baselines.methods`);
* ``init_weights()`` restores LoRA's no-op init after the parent's xavier
  pass over encoder/decoder; ``train()`` keeps BatchNorm in eval mode
  (frozen means frozen: running statistics would drift with the replay).

Inference is the parent's; the merged weights are the parent's. A host
class may override :meth:`_forward_outputs` (e.g. to drop DINO's denoising
queries) and :meth:`_extra_losses` (e.g. DINO's encoder proposal loss).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.structures import SampleList
from mmengine.logging import MessageHub
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from gslora_det.baselines.methods import resolve_method_cfg
from gslora_det.baselines.terms import BaselineTermsMixin
from gslora_det.detectors.settings import (DEFAULT_FORGET_CFG,
                                          DEFAULT_GROUP_LASSO_CFG,
                                          DEFAULT_LORA_CFG,
                                          DEFAULT_PROTOTYPE_CFG,
                                          check_constants, merged_cfg,
                                          short_group_name)
from gslora_det.forget_terms import forget_losses
from gslora_det.group_lasso import group_lasso_terms
from gslora_det.inject import (freeze_all_but_lora, freeze_matching,
                               inject_lora, lora_groups)
from gslora_det.lora import lora_modules
from gslora_det.losses import prototype_kl, prototype_loss


class GSLoRAForgettingMixin(BaselineTermsMixin):
    """GS-LoRA forgetting (and its baselines) for a DETR-family detector.

    Args:
        lora_cfg (dict, optional): Overrides of :data:`DEFAULT_LORA_CFG`.
        forget_cfg (dict, optional): Overrides of
            :attr:`default_forget_cfg`.
        group_lasso_cfg (dict, optional): Overrides of
            :data:`DEFAULT_GROUP_LASSO_CFG`.
        prototype_cfg (dict, optional): Overrides of
            :data:`DEFAULT_PROTOTYPE_CFG`.
        task_index (int): 1-based index of the forgetting task; picks the
            init gain of A. Defaults to 1.
        method (str): ``'gslora'`` or a baseline of
            :data:`gslora_det.baselines.methods.METHOD_PRESETS`.
        method_cfg (dict, optional): Overrides of the method's preset.
        *args, **kwargs: the host detector's arguments.
    """

    #: λ of the forgetting controller (gslora_det/controller.py): scales
    #: the erasing terms of gslora_det/forget_terms.py; 1 without one.
    forget_multiplier: float = 1.0

    #: Per-class defaults (a host may add keys, e.g. GSLoRADINO).
    default_lora_cfg: dict = DEFAULT_LORA_CFG
    default_forget_cfg: dict = DEFAULT_FORGET_CFG

    def __init__(self,
                 *args,
                 lora_cfg: Optional[dict] = None,
                 forget_cfg: Optional[dict] = None,
                 group_lasso_cfg: Optional[dict] = None,
                 prototype_cfg: Optional[dict] = None,
                 task_index: int = 1,
                 method: str = 'gslora',
                 method_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._check_architecture()
        self.lora_cfg = merged_cfg(self.default_lora_cfg, lora_cfg,
                                   'lora_cfg')
        self.forget_cfg = merged_cfg(self.default_forget_cfg, forget_cfg,
                                     'forget_cfg')
        self.group_lasso_cfg = merged_cfg(DEFAULT_GROUP_LASSO_CFG,
                                          group_lasso_cfg, 'group_lasso_cfg')
        self.prototype_cfg = merged_cfg(DEFAULT_PROTOTYPE_CFG, prototype_cfg,
                                        'prototype_cfg')
        check_constants(self.lora_cfg, self.forget_cfg,
                        self.group_lasso_cfg)
        self.method = method
        self.method_cfg = resolve_method_cfg(method, method_cfg)
        self.task_index = task_index
        self.lora_layer_names, self.group_names = [], []
        if self.method_cfg['use_lora']:
            gain = (self.lora_cfg['init_a_gain'] if task_index <= 1 else
                    self.lora_cfg['init_a_gain_later'])
            self.lora_layer_names = inject_lora(
                self, self.lora_cfg['targets'], rank=self.lora_cfg['rank'],
                alpha=self.lora_cfg['alpha'], init_a_gain=gain)
            self.group_names = list(
                lora_groups(self, self.lora_cfg['group_pattern']))
            freeze_all_but_lora(self)
        else:
            freeze_matching(self, self.method_cfg['frozen'])
        # Baselines' state (BaselineStateHook sets it): θ*, Ω, teacher.
        self.reg_anchors = self.reg_importance = None
        self.set_teacher(None)

    def set_task_index(self, task_index: int) -> None:
        """Set the task index and with it the init gain of every LoRA A
        (task 1: ``init_a_gain``; later tasks: ``init_a_gain_later``).
        Takes effect at the next ``init_weights()``, which the Runner calls
        after building its loops (:mod:`gslora_det.loops`)."""
        self.task_index = int(task_index)
        gain = (self.lora_cfg['init_a_gain'] if self.task_index <= 1 else
                self.lora_cfg['init_a_gain_later'])
        for _, module in lora_modules(self):
            module.init_a_gain = gain

    def _check_architecture(self) -> None:
        """Hook: a host refuses settings it does not support here."""

    # -- weights ---------------------------------------------------------
    def init_weights(self) -> None:
        """Parent init, then LoRA back to its no-op state (DETR-family
        parents xavier-initialise every matrix under encoder/decoder, B
        included, which would make a fresh LoRA change the model)."""
        super().init_weights()
        for _, module in lora_modules(self):
            module.reset_lora_parameters()

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def lora_groups(self) -> Dict[str, List[torch.nn.Parameter]]:
        """Group name -> LoRA parameters (A and B of both FFN linears)."""
        return lora_groups(self, self.lora_cfg['group_pattern'])

    # -- forward ---------------------------------------------------------
    def _forward_outputs(self, batch_inputs: Tensor, samples: SampleList
                         ) -> Tuple[Tensor, Tensor, Tensor, dict]:
        """Head outputs of every decoder layer plus the transformer's other
        head inputs (DINO: encoder proposals, ``dn_meta``).

        Returns:
            tuple: ``all_cls`` (L, bs, nq, C) logits, ``all_box``
            (L, bs, nq, 4) normalised cxcywh, ``hidden`` (L, bs, nq, dim)
            and the ``forward_transformer`` dict.
        """
        img_feats = self.extract_feat(batch_inputs)
        head_inputs = self.forward_transformer(img_feats, samples)
        hidden = head_inputs['hidden_states']
        refs = head_inputs.get('references')  # DETR has none
        all_cls, all_box = (self.bbox_head(hidden) if refs is None else
                            self.bbox_head(hidden, refs))
        return all_cls, all_box, hidden, head_inputs

    def forward_heads(self, batch_inputs: Tensor, samples: SampleList):
        """Detection outputs of every decoder layer (matching queries only).

        Returns:
            tuple: ``all_cls`` (L, bs, nq, C) logits, ``all_box``
            (L, bs, nq, 4) normalised cxcywh, ``hidden`` (L, bs, nq, dim).
        """
        return self._forward_outputs(batch_inputs, samples)[:3]

    # -- loss ------------------------------------------------------------
    def _head_loss(self, cls_scores: Tensor, bbox_preds: Tensor,
                   index: Sequence[int], samples: SampleList):
        """The head's (cls, bbox, iou) losses of one decoder layer on the
        images ``index`` of the batch (``DETRHead.loss_by_feat_single``,
        which every DETR-family head of mmdet 3.x inherits unchanged).

        Args:
            cls_scores (Tensor): (bs, num_queries, C).
            bbox_preds (Tensor): (bs, num_queries, 4), normalised cxcywh.
        """
        return self._loss_on(cls_scores, bbox_preds, list(index),
                             [samples[i].gt_instances for i in index],
                             samples)

    def _class_weight(self) -> Tensor:
        """(C, dim) weight of the final decoder layer's class head."""
        head = self.bbox_head
        if hasattr(head, 'cls_branches'):  # Deformable DETR, DINO
            # DINO appends the encoder's branch: index the decoder's last.
            return head.cls_branches[self.decoder.num_layers - 1].weight
        return head.fc_cls.weight  # DETR, Conditional DETR

    def _prototype_kls(self, cls_scores: Tensor, bbox_preds: Tensor,
                       queries: Tensor, index: Sequence[int],
                       samples: SampleList) -> Tensor:
        """KL to the class prototype of each Hungarian-matched query."""
        if not index:
            return queries.new_zeros(0)
        targets = self.bbox_head.get_targets(
            [cls_scores[i] for i in index], [bbox_preds[i] for i in index],
            [samples[i].gt_instances for i in index],
            [samples[i].metainfo for i in index])
        labels = torch.stack(targets[0])  # (n, num_queries)
        feats = queries[index]  # (n, num_queries, dim)
        pos = labels < self.bbox_head.num_classes
        # The class head is frozen, so its weight rows are the pretrained
        # class prototypes.
        protos = self._class_weight().detach()[labels[pos]]
        return prototype_kl(protos, feats[pos])

    def _extra_losses(self, head_inputs: dict, retain: List[int],
                      forget: List[int], samples: SampleList
                      ) -> Dict[str, Tensor]:
        """Host-specific terms (none by default)."""
        return {}

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """GS-LoRA (or baseline) loss on a batch of retain and forget images.

        Args:
            batch_inputs (Tensor): (bs, 3, H, W) images.
            batch_data_samples (list[DetDataSample]): their samples; each
                ``metainfo['forget_role']`` is ``'retain'`` or ``'forget'``
                (samples without the tag count as retain).

        Returns:
            dict[str, Tensor]: Loss terms (keys holding ``loss`` are summed
            by mmengine) and logged values (``f.cls``: the raw forget
            classification loss; ``gn.<group>``: LoRA group norms;
            ``group_lasso``: α·Σ‖g‖, unsummed, in proximal mode).
        """
        mc = self.method_cfg
        roles = [s.metainfo.get('forget_role', 'retain')
                 for s in batch_data_samples]
        if mc['forget_loss'] == 'none':  # rehearsal: skip forget images
            keep = [i for i, r in enumerate(roles) if r == 'retain']
            batch_inputs = batch_inputs[keep]
            batch_data_samples = [batch_data_samples[i] for i in keep]
            roles = ['retain'] * len(keep)
        retain = [i for i, r in enumerate(roles) if r == 'retain']
        forget = [i for i, r in enumerate(roles) if r == 'forget']
        self._check_roles(retain, forget, mc['retain_weight'] > 0,
                          mc['forget_loss'] != 'none')  # DDP collectives
        all_cls, all_box, hidden, head_inputs = self._forward_outputs(
            batch_inputs, batch_data_samples)
        it = MessageHub.get_current_instance().get_info('iter', 0)
        if not (torch.isfinite(all_cls).all() and
                torch.isfinite(all_box).all()):
            # Caught here: mmdet's Hungarian assigner would fail on NaN
            # costs with an unrelated-looking scipy error.
            raise FloatingPointError(
                f'non-finite predictions at iteration {it}: the weights '
                'hold NaN/Inf. The update was not applied. Lower the '
                'learning rate or beta, then resume.')

        num_layers = all_cls.shape[0]
        layers = (range(num_layers) if self.forget_cfg['use_aux_loss'] else
                  [num_layers - 1])
        losses: Dict[str, Tensor] = {}
        for layer in layers:
            tag = '' if layer == num_layers - 1 else f'd{layer}.'
            if retain and mc['retain_weight'] > 0:
                w = mc['retain_weight']
                cls, box, iou = self._head_loss(all_cls[layer],
                                                all_box[layer], retain,
                                                batch_data_samples)
                losses[f'{tag}r.loss_cls'] = w * cls
                losses[f'{tag}r.loss_bbox'] = w * box
                losses[f'{tag}r.loss_iou'] = w * iou
            if forget:
                losses.update(forget_losses(
                    self, all_cls[layer], all_box[layer], forget,
                    batch_data_samples, tag))
        losses.update(self._extra_losses(head_inputs, retain, forget,
                                         batch_data_samples))

        if self.prototype_cfg['enable']:
            args = (all_cls[-1], all_box[-1], hidden[-1])
            losses['loss_proto'] = prototype_loss(
                self._prototype_kls(*args, forget, batch_data_samples),
                self._prototype_kls(*args, retain, batch_data_samples),
                self.prototype_cfg['bound'],
                self.prototype_cfg['weight_forget'],
                self.prototype_cfg['weight_retain'])
        losses.update(self._baseline_terms(batch_inputs, batch_data_samples,
                                           all_cls[-1], retain))
        if mc['use_lora']:  # penalty term, or its value (proximal); gn.*
            losses.update(group_lasso_terms(self, it, mc['group_lasso'],
                                            short_group_name))
        self._check_finite(losses, it)
        return losses

    @staticmethod
    def _check_finite(losses: Dict[str, Tensor], it: int) -> None:
        """Stop before a NaN/Inf loss reaches the optimiser, so the weights
        in memory and on disk stay the last good ones."""
        bad = {k: float(v) for k, v in losses.items()
               if 'loss' in k and not torch.isfinite(v).all()}
        if bad:
            raise FloatingPointError(
                f'non-finite loss at iteration {it}: {bad}. The update was '
                'not applied. Lower the learning rate or beta, then resume.')
