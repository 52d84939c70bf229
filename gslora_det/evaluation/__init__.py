"""Evaluation for continual forgetting: the ``ForgettingMetric`` (registered
in mmdet's ``METRICS``), residual detection and the GS-LoRA H-mean."""
from gslora_det.evaluation.forgetting_metric import ForgettingMetric
from gslora_det.evaluation.hmean import h_mean
from gslora_det.evaluation.residual import box_iou, residual_detection

__all__ = ['ForgettingMetric', 'box_iou', 'h_mean', 'residual_detection']
