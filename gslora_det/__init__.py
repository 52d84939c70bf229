"""gslora_det: GS-LoRA continual forgetting for MMDetection 3.x detectors.

Importing the package registers its modules, datasets, metrics and hooks with
the OpenMMLab registries (configs load it with ``custom_imports``) and
allow-lists the types that mmengine checkpoints need under torch's
weights-only unpickler.
"""
from gslora_det import checkpoint  # noqa: F401  (allow-list on import)
from gslora_det import data  # noqa: F401
from gslora_det import detector  # noqa: F401
from gslora_det import evaluation  # noqa: F401
from gslora_det import hooks  # noqa: F401
from gslora_det import loops  # noqa: F401
from gslora_det import models  # noqa: F401
from gslora_det import optim  # noqa: F401

__version__ = '0.1.0'
