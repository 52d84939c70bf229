"""GS-LoRA on mmdet's DINO (two-stage, denoising queries in training).

What the forgetting loss uses, and why:

* **Matching queries only.** In training mmdet's DINO puts its denoising
  (dn) queries in front of the matching queries. The GS-LoRA terms (retain
  detection loss, bounded forget loss, prototypes, the baselines' logits)
  use the matching part only: ``hidden_states`` and the head outputs are
  split at ``dn_meta['num_denoising_queries']``. DINO's attention mask
  keeps matching queries from seeing dn queries, so their outputs are the
  same as in a run without dn queries.
* **No dn loss.** The dn queries are noised ground-truth boxes of *every*
  image of the batch, forget images included: their loss would train the
  model to reconstruct the objects it must forget, and it has no matching
  to negate. For retain images it is an auxiliary convergence aid (like the
  auxiliary decoder losses, which the reference turns off) and inference
  never uses it. So it is dropped.
* **Encoder proposal loss on retain images (``forget_cfg.retain_enc_loss``,
  default on).** DINO's encoder scores pick the top-k proposals that become
  the decoder's queries; that selection is not differentiable and the
  selected coordinates are detached, so no decoder loss keeps LoRA on the
  encoder FFNs from degrading retained-class proposals. The encoder's own
  Hungarian loss on retain images does (one extra matching, cheap). Forget
  images get no encoder term: the bounded decoder loss does the forgetting.
"""
from typing import Dict, List

from mmdet.models.detectors import DINO
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from torch import Tensor

from gslora_det.detectors.forgetting_mixin import GSLoRAForgettingMixin
from gslora_det.detectors.settings import DEFAULT_FORGET_CFG


@MODELS.register_module()
class GSLoRADINO(GSLoRAForgettingMixin, DINO):
    """DINO with GS-LoRA continual forgetting.

    ``forget_cfg`` takes one more key than the other detectors:
    ``retain_enc_loss`` (bool, default True), the encoder proposal loss on
    retain images, weighted by ``method_cfg.retain_weight``. See
    :class:`GSLoRAForgettingMixin` for the other arguments.
    """

    default_forget_cfg = dict(DEFAULT_FORGET_CFG, retain_enc_loss=True)

    def _forward_outputs(self, batch_inputs: Tensor, samples: SampleList):
        """As the mixin's, with the dn queries cut off.

        Returns:
            tuple: ``all_cls`` (L, bs, nq, C), ``all_box`` (L, bs, nq, 4),
            ``hidden`` (L, bs, nq, dim) over the ``nq = num_queries``
            matching queries, and the ``forward_transformer`` dict (in
            training it holds ``enc_outputs_class`` (bs, nq, C),
            ``enc_outputs_coord`` (bs, nq, 4) and ``dn_meta``).
        """
        all_cls, all_box, hidden, head_inputs = super()._forward_outputs(
            batch_inputs, samples)
        dn_meta = head_inputs.get('dn_meta')  # None in eval mode
        num_dn = dn_meta['num_denoising_queries'] if dn_meta else 0
        if num_dn:
            all_cls, all_box, hidden = (all_cls[:, :, num_dn:],
                                        all_box[:, :, num_dn:],
                                        hidden[:, :, num_dn:])
        return all_cls, all_box, hidden, head_inputs

    def _extra_losses(self, head_inputs: dict, retain: List[int],
                      forget: List[int], samples: SampleList
                      ) -> Dict[str, Tensor]:
        """``enc.r.loss_{cls,bbox,iou}``: the encoder proposal loss on the
        retain images (DINOHead computes it the same way)."""
        weight = self.method_cfg['retain_weight']
        enc_cls = head_inputs.get('enc_outputs_class')
        if (not retain or weight <= 0 or enc_cls is None
                or not self.forget_cfg['retain_enc_loss']):
            return {}
        cls, box, iou = self._head_loss(enc_cls,
                                        head_inputs['enc_outputs_coord'],
                                        retain, samples)
        return {'enc.r.loss_cls': weight * cls,
                'enc.r.loss_bbox': weight * box,
                'enc.r.loss_iou': weight * iou}
