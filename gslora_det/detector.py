"""GS-LoRA forgetting detectors (kept import path).

The forgetting logic lives in :mod:`gslora_det.detectors.forgetting_mixin`
(:class:`GSLoRAForgettingMixin`); :mod:`gslora_det.detectors` holds the
registered detectors: ``GSLoRADeformableDETR`` (the reference's base
model), ``GSLoRADINO``, ``GSLoRADETR`` and ``GSLoRAConditionalDETR``.
Importing this module registers them all.
"""
from gslora_det.detectors import (  # noqa: F401
    GSLoRAConditionalDETR, GSLoRADeformableDETR, GSLoRADETR, GSLoRADINO,
    GSLoRAForgettingMixin)
from gslora_det.detectors.settings import (  # noqa: F401
    DEFAULT_FORGET_CFG, DEFAULT_GROUP_LASSO_CFG, DEFAULT_LORA_CFG,
    DEFAULT_PROTOTYPE_CFG)

__all__ = [
    'GSLoRAForgettingMixin', 'GSLoRADeformableDETR', 'GSLoRADETR',
    'GSLoRAConditionalDETR', 'GSLoRADINO', 'DEFAULT_LORA_CFG',
    'DEFAULT_FORGET_CFG', 'DEFAULT_GROUP_LASSO_CFG', 'DEFAULT_PROTOTYPE_CFG'
]
