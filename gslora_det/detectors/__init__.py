"""GS-LoRA forgetting detectors (registered with mmdet's MODELS)."""
from gslora_det.detectors.detr_family import (GSLoRAConditionalDETR,
                                              GSLoRADeformableDETR,
                                              GSLoRADETR)
from gslora_det.detectors.dino import GSLoRADINO
from gslora_det.detectors.forgetting_mixin import GSLoRAForgettingMixin

__all__ = [
    'GSLoRAForgettingMixin', 'GSLoRADeformableDETR', 'GSLoRADETR',
    'GSLoRAConditionalDETR', 'GSLoRADINO'
]
