"""Backbones and weight converters (registered with mmdet's MODELS)."""
from gslora_det.models.efficientnet_lite_weights import (  # noqa: F401
    LITE0_MEAN, LITE0_STD, convert_lite0_state_dict, lite0_weights_path,
    load_lite0_state_dict)
from gslora_det.models.timm_backbone import (  # noqa: F401
    TIMM_VIT_GROUP_PATTERN, TIMM_VIT_MLP_TARGETS, TimmBackbone)
