"""GS-LoRA on mmdet's DETR-family detectors: thin registered subclasses.

Every class is ``GSLoRAForgettingMixin`` in front of the stock mmdet class,
so the merged weights load strictly into the stock class. mmdet's DETR,
Conditional DETR, Deformable DETR and DINO all build their encoder and
decoder layers with mmcv's ``FFN``, so the default LoRA targets
(``{encoder,decoder}.layers.{i}.ffn.layers.{0.0,1}``) and groups (one per
transformer layer) hold for all of them; ``tools/list_lora_targets.py``
shows what a config selects.
"""
from mmdet.models.detectors import DETR, ConditionalDETR, DeformableDETR
from mmdet.registry import MODELS

from gslora_det.detectors.forgetting_mixin import GSLoRAForgettingMixin


@MODELS.register_module()
class GSLoRADeformableDETR(GSLoRAForgettingMixin, DeformableDETR):
    """Deformable DETR (single-stage, as in the reference) with GS-LoRA.

    See :class:`GSLoRAForgettingMixin` for the arguments.
    """

    def _check_architecture(self) -> None:
        if self.as_two_stage:
            raise NotImplementedError(
                'GS-LoRA forgetting is implemented for single-stage '
                'Deformable DETR (as_two_stage=False), as in the reference; '
                'for a two-stage model use GSLoRADINO')


@MODELS.register_module()
class GSLoRADETR(GSLoRAForgettingMixin, DETR):
    """DETR with GS-LoRA (single feature level, no references: the head is
    called as ``bbox_head(hidden_states)``).

    See :class:`GSLoRAForgettingMixin` for the arguments.
    """


@MODELS.register_module()
class GSLoRAConditionalDETR(GSLoRAForgettingMixin, ConditionalDETR):
    """Conditional DETR with GS-LoRA (the head also takes the decoder's
    reference points).

    See :class:`GSLoRAForgettingMixin` for the arguments.
    """
