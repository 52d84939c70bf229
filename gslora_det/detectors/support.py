"""Which detectors the GS-LoRA plug-in supports, and a clear error for others.

GS-LoRA forgetting here needs a DETR-family detector of mmdet 3.x: its loss
is a Hungarian-matched set loss (the bounded forget term negates the
classification loss of the queries matched to forgotten objects) and its
LoRA targets are the FFNs of a transformer encoder and decoder
(``{encoder,decoder}.layers.{i}.ffn``). A two-stage CNN detector (Faster
R-CNN), a one-stage dense detector (RTMDet, RetinaNet, YOLO) or any other
model has neither, so it is refused before anything is built, with a
message naming the type given, the supported ones and the fix.

This module imports nothing heavy: it can run on a config alone.
"""
from typing import Dict, Optional, Tuple

from gslora_det.config_checks import ConfigError

#: The registered GS-LoRA detectors and the stock mmdet type each wraps.
GSLORA_TYPES: Dict[str, str] = {
    'GSLoRADeformableDETR': 'DeformableDETR',
    'GSLoRADINO': 'DINO',
    'GSLoRADETR': 'DETR',
    'GSLoRAConditionalDETR': 'ConditionalDETR',
}
#: Stock mmdet type -> the GS-LoRA type that wraps it.
GSLORA_TYPE_OF: Dict[str, str] = {v: k for k, v in GSLORA_TYPES.items()}
#: Every ``model.type`` accepted: the GS-LoRA types and the stock types
#: they wrap (a stock config the caller turns into its GS-LoRA type).
SUPPORTED_DETECTORS: Tuple[str, ...] = tuple(GSLORA_TYPES) + tuple(
    GSLORA_TYPE_OF)

#: The mmdet config of the reference's base model (R50 Deformable DETR).
DEFORMABLE_DETR_BASE = ('mmdet::deformable_detr/'
                        'deformable-detr_r50_16xb2-50e_coco.py')


def _type_name(model_type) -> Optional[str]:
    """The registry name of ``model.type``: a string without a scope
    prefix (``'mmdet.DINO'`` -> ``'DINO'``), or a class's ``__name__``."""
    if model_type is None:
        return None
    if isinstance(model_type, str):
        return model_type.rsplit('.', 1)[-1]
    return getattr(model_type, '__name__', str(model_type))


def _is_registered_gslora_subclass(name: str) -> bool:
    """A user's own detector registered in mmdet's MODELS whose class is a
    GS-LoRA detector (``class Mine(GSLoRAForgettingMixin, DINO)``)."""
    try:
        from mmdet.registry import MODELS

        from gslora_det.detectors.forgetting_mixin import \
            GSLoRAForgettingMixin
        cls = MODELS.get(name)
    except Exception:  # no mmdet, or the name is not registered
        return False
    return isinstance(cls, type) and issubclass(cls, GSLoRAForgettingMixin)


def supported_type_message() -> str:
    """One line per GS-LoRA type and the stock type it wraps."""
    return '; '.join(f'{g} (wraps mmdet\'s {s})'
                     for g, s in GSLORA_TYPES.items())


def check_supported_detector(model_cfg: dict) -> None:
    """Refuse a ``model`` config the GS-LoRA plug-in cannot run.

    Accepted: the GS-LoRA types (:data:`GSLORA_TYPES`), the stock mmdet
    types they wrap (DeformableDETR, DINO, DETR, ConditionalDETR), with or
    without a scope prefix (``'mmdet.DINO'``), and a class registered in
    mmdet's ``MODELS`` that subclasses ``GSLoRAForgettingMixin``.

    Args:
        model_cfg (dict): The config's ``model`` section.

    Raises:
        ConfigError: No ``type``, or a type that is not DETR-family; the
            message names the given type, the supported ones and the fix.
    """
    if not isinstance(model_cfg, dict):
        raise ConfigError(
            f'the config has no `model` dict (got {type(model_cfg).__name__}'
            f'): GS-LoRA forgetting needs a DETR-family detector, one of '
            f'{supported_type_message()}')
    name = _type_name(model_cfg.get('type'))
    if name is None:
        raise ConfigError(
            'model.type is not set: GS-LoRA forgetting needs a DETR-family '
            f'detector, one of {supported_type_message()}. Set '
            "model.type='GSLoRADeformableDETR' and inherit a Deformable "
            f"DETR config (_base_ = '{DEFORMABLE_DETR_BASE}').")
    if name in SUPPORTED_DETECTORS or _is_registered_gslora_subclass(name):
        return
    raise ConfigError(
        f'model.type={name!r} is not supported by the GS-LoRA plug-in: it '
        'needs a DETR-family detector (a Hungarian-matched set loss to '
        'bound, and transformer encoder/decoder FFNs to put LoRA on), and '
        f'{name!r} is not one. Supported: {supported_type_message()}. Fix: '
        "set model.type='GSLoRADeformableDETR' and inherit a Deformable "
        f"DETR config (_base_ = '{DEFORMABLE_DETR_BASE}'), as "
        'configs/coco/gslora_deformable-detr_r50_task1_coco.py does; for '
        'DINO, DETR or Conditional DETR use GSLoRADINO, GSLoRADETR or '
        'GSLoRAConditionalDETR with that model\'s mmdet config.')
