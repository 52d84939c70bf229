"""Recovery attacks: can a forgotten class come back?

Short fine-tuning attacks on a detector checkpoint (retain-only images,
k images per forgotten class, or k images and only the class head), each
evaluated on the config's validation set (forgotten / retained mAP,
residual detection, confusion rows), and the recovery gap against a model
retrained without the classes. See docs/attacks.md.

Importing this package registers ``AttackSubset`` and
``DropClassesDataset`` (mmdet ``DATASETS``), ``AttackMetric`` (``METRICS``)
and ``TrainOnlyHook`` / ``AttackProgressHook`` (``HOOKS``).
"""
from gslora_det.attacks.confusion import (MISSED, confusion_rows,
                                          plot_confusion_rows)
from gslora_det.attacks.datasets import AttackSubset, DropClassesDataset
from gslora_det.attacks.gap import recovered, recovery_gap, run_key
from gslora_det.attacks.hooks import AttackProgressHook, TrainOnlyHook
from gslora_det.attacks.metric import AttackMetric
from gslora_det.attacks.params import (class_head_prefix, restrict_trainable,
                                       trainable_summary)
from gslora_det.attacks.retrain import retrain_without
from gslora_det.attacks.run import run_attacks
from gslora_det.attacks.subsets import (AttackDataError, select_k_shot,
                                        select_retain_only)

__all__ = [
    'AttackDataError', 'AttackMetric', 'AttackProgressHook', 'AttackSubset',
    'DropClassesDataset', 'MISSED', 'TrainOnlyHook', 'class_head_prefix',
    'confusion_rows', 'plot_confusion_rows', 'recovered', 'recovery_gap',
    'restrict_trainable', 'retrain_without', 'run_attacks', 'run_key',
    'select_k_shot', 'select_retain_only', 'trainable_summary'
]
