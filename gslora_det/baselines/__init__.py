"""Baselines of GS-LoRA: method presets, penalties and their state hook."""
from gslora_det.baselines.methods import (DEFAULT_METHOD_CFG, METHOD_PRESETS,
                                          resolve_method_cfg)

__all__ = ['DEFAULT_METHOD_CFG', 'METHOD_PRESETS', 'resolve_method_cfg']
