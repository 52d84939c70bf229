"""Optimiser wrappers registered with mmengine's ``OPTIM_WRAPPERS``."""
from gslora_det.optim.proximal import ProximalGroupLassoOptimWrapper

__all__ = ['ProximalGroupLassoOptimWrapper']
