"""GS-LoRA on mmdet's Deformable DETR: a thin subclass.

What changes against ``DeformableDETR``:

* at build time, LoRA is put on the FFN linears and everything else is
  frozen (the Runner wraps the model in DDP and builds the optimiser before
  any hook runs, so this cannot be a hook);
* ``loss()`` splits the batch by each sample's ``forget_role`` tag and
  returns ``L_det(retain) + β·L_forget(forget) + α·L_structure``
  (+ the optional GS-LoRA++ prototype term);
* ``init_weights()`` restores LoRA's no-op init after the parent's xavier
  pass over everything under encoder/decoder;
* ``train()`` keeps BatchNorm layers in eval mode, since frozen means
  frozen: running statistics would otherwise drift with the replay data.

Inference is the parent's; the merged weights are a plain
``DeformableDETR``'s.
"""
import copy
import math
from typing import Dict, List, Optional, Sequence

import torch
from mmdet.models.detectors import DeformableDETR
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmengine.logging import MessageHub
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from gslora_det.group_lasso import group_lasso, group_norms
from gslora_det.inject import (DEFAULT_GROUP_PATTERN, DEFAULT_TARGETS,
                               freeze_all_but_lora, inject_lora, lora_groups)
from gslora_det.lora import lora_modules
from gslora_det.losses import (bounded_forget_cls_loss, prototype_kl,
                               prototype_loss)

#: LoRA settings; the defaults are the GS-LoRA reference's.
DEFAULT_LORA_CFG = dict(
    targets=DEFAULT_TARGETS,
    group_pattern=DEFAULT_GROUP_PATTERN,
    rank=8,
    alpha=1.0,  # scaling = alpha / rank = 1/8
    init_a_gain=math.sqrt(5),  # kaiming-uniform `a` of A on task 1
    init_a_gain_later=math.sqrt(50),  # ... and on later tasks (smaller A)
)
#: Forgetting loss settings; the defaults are the reference's COCO values.
DEFAULT_FORGET_CFG = dict(
    beta=0.15,  # weight of the forget loss (reference: 0.015-0.6 per task)
    bound=15.0,  # BND: the negated classification loss stops at this value
    use_aux_loss=False,  # the reference turns auxiliary decoder losses off
)
#: Group-sparse penalty settings.
DEFAULT_GROUP_LASSO_CFG = dict(
    alpha=3e-4,  # weight of L_structure (reference, detection)
    warmup_iters=0,  # α is 0 before this iteration (face scripts: 20 ep.)
)
#: GS-LoRA++ prototype term (off by default, as in the CVPR method).
DEFAULT_PROTOTYPE_CFG = dict(
    enable=False,
    bound=18.0,  # BND_pro
    weight_forget=0.005,  # w_f
    weight_retain=0.0,  # w_r
)


def _merged(defaults: dict, override: Optional[dict], what: str) -> dict:
    cfg = copy.deepcopy(defaults)
    unknown = set(override or {}) - set(defaults)
    if unknown:
        raise ValueError(f'{what}: unknown key(s) {sorted(unknown)}; valid '
                         f'keys are {sorted(defaults)}')
    cfg.update(override or {})
    return cfg


def _short_group_name(name: str) -> str:
    """'encoder.layers.3' -> 'enc3' (keeps log lines short)."""
    return (name.replace('encoder.layers.', 'enc')
            .replace('decoder.layers.', 'dec'))


@MODELS.register_module()
class GSLoRADeformableDETR(DeformableDETR):
    """Deformable DETR with GS-LoRA continual forgetting.

    Args:
        lora_cfg (dict, optional): Overrides of :data:`DEFAULT_LORA_CFG`.
        forget_cfg (dict, optional): Overrides of :data:`DEFAULT_FORGET_CFG`.
        group_lasso_cfg (dict, optional): Overrides of
            :data:`DEFAULT_GROUP_LASSO_CFG`.
        prototype_cfg (dict, optional): Overrides of
            :data:`DEFAULT_PROTOTYPE_CFG`.
        task_index (int): 1-based index of the forgetting task; picks the
            init gain of A. Defaults to 1.
        *args, **kwargs: ``DeformableDETR``'s arguments.
    """

    def __init__(self,
                 *args,
                 lora_cfg: Optional[dict] = None,
                 forget_cfg: Optional[dict] = None,
                 group_lasso_cfg: Optional[dict] = None,
                 prototype_cfg: Optional[dict] = None,
                 task_index: int = 1,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.as_two_stage:
            raise NotImplementedError(
                'GS-LoRA forgetting is implemented for single-stage '
                'Deformable DETR (as_two_stage=False), as in the reference')
        self.lora_cfg = _merged(DEFAULT_LORA_CFG, lora_cfg, 'lora_cfg')
        self.forget_cfg = _merged(DEFAULT_FORGET_CFG, forget_cfg,
                                  'forget_cfg')
        self.group_lasso_cfg = _merged(DEFAULT_GROUP_LASSO_CFG,
                                       group_lasso_cfg, 'group_lasso_cfg')
        self.prototype_cfg = _merged(DEFAULT_PROTOTYPE_CFG, prototype_cfg,
                                     'prototype_cfg')
        self._check_constants()
        self.task_index = task_index
        gain = (self.lora_cfg['init_a_gain'] if task_index <= 1 else
                self.lora_cfg['init_a_gain_later'])
        self.lora_layer_names = inject_lora(
            self, self.lora_cfg['targets'], rank=self.lora_cfg['rank'],
            alpha=self.lora_cfg['alpha'], init_a_gain=gain)
        self.group_names = list(
            lora_groups(self, self.lora_cfg['group_pattern']))
        freeze_all_but_lora(self)

    def _check_constants(self) -> None:
        checks = [('forget_cfg.beta', self.forget_cfg['beta']),
                  ('forget_cfg.bound', self.forget_cfg['bound']),
                  ('group_lasso_cfg.alpha', self.group_lasso_cfg['alpha']),
                  ('group_lasso_cfg.warmup_iters',
                   self.group_lasso_cfg['warmup_iters'])]
        for name, value in checks:
            if value < 0:
                raise ValueError(f'{name} must be >= 0, got {value}')
        if self.lora_cfg['rank'] <= 0:
            raise ValueError('lora_cfg.rank must be a positive integer, got '
                             f'{self.lora_cfg["rank"]}')

    # -- weights ---------------------------------------------------------
    def init_weights(self) -> None:
        """Parent init, then LoRA back to its no-op state (the parent
        xavier-initialises every matrix under encoder/decoder, B included,
        which would make a fresh LoRA change the model)."""
        super().init_weights()
        for _, module in lora_modules(self):
            module.reset_lora_parameters()

    def train(self, mode: bool = True) -> 'GSLoRADeformableDETR':
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def lora_groups(self) -> Dict[str, List[torch.nn.Parameter]]:
        """Group name -> LoRA parameters (A and B of both FFN linears)."""
        return lora_groups(self, self.lora_cfg['group_pattern'])

    # -- loss ------------------------------------------------------------
    def _head_loss(self, cls_scores: Tensor, bbox_preds: Tensor,
                   index: Sequence[int], samples: SampleList):
        """The head's (cls, bbox, iou) losses of one decoder layer on the
        images ``index`` of the batch.

        Args:
            cls_scores (Tensor): (bs, num_queries, num_classes).
            bbox_preds (Tensor): (bs, num_queries, 4), normalised cxcywh.
        """
        return self.bbox_head.loss_by_feat_single(
            cls_scores[index], bbox_preds[index],
            [samples[i].gt_instances for i in index],
            [samples[i].metainfo for i in index])

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
        protos = self.bbox_head.cls_branches[-1].weight.detach()[labels[pos]]
        return prototype_kl(protos, feats[pos])

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """GS-LoRA loss on a batch of retain and forget images.

        Args:
            batch_inputs (Tensor): (bs, 3, H, W) images.
            batch_data_samples (list[DetDataSample]): their samples; each
                ``metainfo['forget_role']`` is ``'retain'`` or ``'forget'``
                (samples without the tag count as retain).

        Returns:
            dict[str, Tensor]: Loss terms (keys holding ``loss`` are summed
            by mmengine) and logged values (``f.cls``: the raw forget
            classification loss; ``gn.<group>``: LoRA group norms).
        """
        roles = [s.metainfo.get('forget_role', 'retain')
                 for s in batch_data_samples]
        retain = [i for i, r in enumerate(roles) if r == 'retain']
        forget = [i for i, r in enumerate(roles) if r == 'forget']
        img_feats = self.extract_feat(batch_inputs)
        head_inputs = self.forward_transformer(img_feats, batch_data_samples)
        hidden = head_inputs['hidden_states']  # (L, bs, nq, dim)
        # (L, bs, nq, num_classes), (L, bs, nq, 4)
        all_cls, all_box = self.bbox_head(hidden, head_inputs['references'])
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
        beta, bound = self.forget_cfg['beta'], self.forget_cfg['bound']
        losses: Dict[str, Tensor] = {}
        for layer in layers:
            tag = '' if layer == num_layers - 1 else f'd{layer}.'
            if retain:
                cls, box, iou = self._head_loss(all_cls[layer],
                                                all_box[layer], retain,
                                                batch_data_samples)
                losses[f'{tag}r.loss_cls'] = cls
                losses[f'{tag}r.loss_bbox'] = box
                losses[f'{tag}r.loss_iou'] = iou
            if forget:
                cls, box, iou = self._head_loss(all_cls[layer],
                                                all_box[layer], forget,
                                                batch_data_samples)
                losses[f'{tag}f.loss_bound'] = beta * bounded_forget_cls_loss(
                    cls, bound)
                losses[f'{tag}f.loss_bbox'] = beta * box
                losses[f'{tag}f.loss_iou'] = beta * iou
                losses[f'{tag}f.cls'] = cls.detach()

        if self.prototype_cfg['enable']:
            args = (all_cls[-1], all_box[-1], hidden[-1])
            losses['loss_proto'] = prototype_loss(
                self._prototype_kls(*args, forget, batch_data_samples),
                self._prototype_kls(*args, retain, batch_data_samples),
                self.prototype_cfg['bound'],
                self.prototype_cfg['weight_forget'],
                self.prototype_cfg['weight_retain'])

        groups = self.lora_groups()
        alpha = (self.group_lasso_cfg['alpha']
                 if it >= self.group_lasso_cfg['warmup_iters'] else 0.0)
        losses['loss_group_lasso'] = alpha * group_lasso(groups)
        for name, norm in group_norms(groups).items():
            losses[f'gn.{_short_group_name(name)}'] = norm.detach()
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
